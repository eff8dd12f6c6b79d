"""The outermost layer of the app: request ids, the body-size guard, the last
line of defence against unexpected exceptions, and one record per request.

Pure ASGI rather than BaseHTTPMiddleware: it adds no task or stream copy to a
request that carries megabytes of base64.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from .. import paths
from ..errors import ErrorCode, ServiceError, image_too_large, service_busy
from ..timing import request_id as request_id_var
from .admission import Admission, Busy
from .observe import RequestObserver, RequestRecord

logger = logging.getLogger(__name__)

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class _BodyTooLarge(Exception):
    pass


@dataclass(frozen=True)
class BodyLimit:
    bytes: int
    code: ErrorCode
    detail: str = ""


class _BodyTimeout(Exception):
    pass


# Routes that do heavy work (the model, or parsing megabytes of embeddings):
# admitted through Admission. Health and model-info answer at once.
MODEL_ROUTES = paths.HEAVY
# A refused request's body is read (and dropped) up to this much before the
# answer, so that an ordinary client, still sending, reads the JSON error
# instead of a connection reset.
_DRAIN_BYTES = 64 * 1024 * 1024
_DRAIN_SECONDS = 5.0


class _Exchange:
    """One HTTP request as it passes the layer: its body guard (size, pace), the
    drain of a refused body, and what the response said, for the record."""

    def __init__(
        self,
        receive: Any,
        send: Any,
        request_id: str,
        limit: BodyLimit | None,
        timeout_s: float,
        body_done: bool,
    ) -> None:
        self._receive = receive
        self._send = send
        self.request_id = request_id
        self.limit = limit
        self.timeout_s = timeout_s
        self.status = 500
        self.response_started = False
        self.body_bytes = 0
        self.body_done = body_done
        self.declared = 0  # the Content-Length the client announced

    def _count(self, message: dict[str, Any]) -> int:
        size = len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.body_done = True
        return size

    async def receive(self) -> dict[str, Any]:
        try:
            message: dict[str, Any] = await asyncio.wait_for(self._receive(), self.timeout_s)
        except TimeoutError:
            raise _BodyTimeout from None
        self.body_bytes += self._count(message)
        if self.limit is not None and self.body_bytes > self.limit.bytes:
            raise _BodyTooLarge
        return message

    async def drain(self) -> None:
        """Read what the client is still sending, within bounds, and drop it."""
        deadline = time.monotonic() + _DRAIN_SECONDS
        drained = 0
        while not self.body_done and drained < _DRAIN_BYTES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                message = await asyncio.wait_for(self._receive(), remaining)
            except TimeoutError:
                return
            drained += self._count(message)

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.response_started = True
            if self.status >= 400 and not self.body_done:
                await self.drain()
            message.setdefault("headers", [])
            message["headers"] = [*message["headers"], (b"x-request-id", self.request_id.encode())]
        await self._send(message)

    async def refuse(
        self, error: ServiceError, *, close: bool = False, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        if not self.response_started:
            await _send_error(self.send, error, close=close, extra_headers=headers)


class RequestContextMiddleware:
    def __init__(
        self,
        app: Any,
        *,
        body_limit: Callable[[str], BodyLimit | None],
        observer: RequestObserver,
        admission: Admission | None = None,
        body_timeout_s: float = 15.0,
        authorize: Callable[[dict[bytes, bytes]], None] | None = None,
    ) -> None:
        self.app = app
        self.body_limit = body_limit
        self.observer = observer
        self.admission = admission
        self.body_timeout_s = body_timeout_s
        # The API-key check (raises UNAUTHORIZED), run on the headers alone
        # before a heavy request takes a turn or any of its body is read.
        self.authorize = authorize

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        request_id = _request_id(scope, headers)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        # For log lines written while this request runs (its worker thread too).
        request_id_var.set(request_id)
        body_done = scope.get("method") in ("GET", "HEAD", "OPTIONS") and b"content-length" not in headers
        exchange = _Exchange(
            receive, send, request_id, self.body_limit(scope.get("path", "")), self.body_timeout_s, body_done
        )
        exchange.declared = _declared_length(headers)
        turn: float | None = None
        try:
            turn = await self._admit(scope, headers, exchange)
            await self.app(scope, exchange.receive, exchange.send)
        except Exception as exc:  # each refusal in the service's error shape; never a traceback
            await self._refuse(exchange, exc, state)
        finally:
            if turn is not None and self.admission is not None:
                await self.admission.release(turn)
            self._record(scope, exchange, started)

    async def _admit(
        self, scope: dict[str, Any], headers: dict[bytes, bytes], exchange: _Exchange
    ) -> float | None:
        """The checks before the app sees the request, cheapest first: the key
        (headers only), the declared length, then a turn for heavy work."""
        heavy = scope.get("path") in MODEL_ROUTES and scope.get("method") == "POST"
        if heavy and self.authorize is not None:
            await run_in_threadpool(self.authorize, headers)  # a key source may read SSM
            scope["state"]["authorized"] = True
        if exchange.limit is not None and exchange.declared > exchange.limit.bytes:
            raise _BodyTooLarge
        if heavy and self.admission is not None:
            return await self.admission.acquire()
        return None

    async def _refuse(self, exchange: _Exchange, exc: Exception, state: dict[str, Any]) -> None:
        close = False
        headers: list[tuple[bytes, bytes]] = []
        if isinstance(exc, _BodyTooLarge):
            assert exchange.limit is not None
            exchange.body_bytes = max(exchange.body_bytes, exchange.declared)
            error = body_too_large(exchange.limit)
        elif isinstance(exc, _BodyTimeout):
            error = ServiceError(
                ErrorCode.INVALID_REQUEST,
                "The request body arrived too slowly.",
                f"The body must arrive within {self.body_timeout_s:g} s.",
                status=408,
            )
            close = True
        elif isinstance(exc, ServiceError):  # the API key, checked before the body
            error, close = exc, True
            exchange.body_done = True  # not drained: an unauthenticated sender gets no more of our time
        elif isinstance(exc, ClientDisconnect):
            # The client went away mid-body: nobody to answer, and not a server
            # error (recorded as 499, the status nginx gives it).
            logger.info("client disconnected", extra={"request_id": exchange.request_id})
            exchange.status = 499
            return
        elif isinstance(exc, Busy):
            error = service_busy(
                f"Every worker is busy and the queue is full; retry after {exc.retry_after} s."
            )
            headers = [(b"retry-after", str(exc.retry_after).encode())]
        else:
            logger.error(
                "unhandled exception",
                extra={"request_id": exchange.request_id, "exception_type": type(exc).__name__},
            )
            error = ServiceError(
                ErrorCode.PROCESSING_ERROR,
                "The request could not be processed.",
                "An unexpected error occurred; it has been logged with the request id.",
            )
        state["error_code"] = error.code.value
        await exchange.refuse(error, close=close, headers=headers)

    def _record(self, scope: dict[str, Any], exchange: _Exchange, started: float) -> None:
        route = scope.get("route")
        state = scope["state"]
        self.observer.record(
            RequestRecord(
                request_id=exchange.request_id,
                method=scope.get("method", ""),
                route=getattr(route, "path", None) or scope.get("path", ""),
                status=exchange.status,
                error_code=state.get("error_code"),
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                body_bytes=exchange.body_bytes,
                faces=state.get("faces"),
            )
        )


def body_too_large(limit: BodyLimit) -> ServiceError:
    detail = (
        limit.detail
        or f"This route takes a body of at most {limit.bytes} bytes (see the Limits in the API guide)."
    )
    if limit.code is ErrorCode.IMAGE_TOO_LARGE:
        return image_too_large(detail)
    return ServiceError(limit.code, "The request body is too large.", detail)


def _declared_length(headers: dict[bytes, bytes]) -> int:
    try:
        return int(headers.get(b"content-length", b"0") or 0)
    except ValueError:
        return 0


def _request_id(scope: dict[str, Any], headers: dict[bytes, bytes]) -> str:
    given = headers.get(b"x-request-id", b"").decode("latin-1")
    if _SAFE_ID.match(given):
        return given
    context = scope.get("aws.context")  # set by Mangum under Lambda
    aws_id = getattr(context, "aws_request_id", None)
    if isinstance(aws_id, str) and aws_id:
        return aws_id
    return uuid.uuid4().hex


async def _send_error(
    send: Any,
    error: ServiceError,
    *,
    close: bool = False,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = orjson.dumps(error.to_dict())
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send(
        {"type": "http.response.start", "status": error.status, "headers": headers + (extra_headers or [])}
    )
    await send({"type": "http.response.body", "body": body})
