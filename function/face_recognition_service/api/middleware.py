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

from ..errors import ErrorCode, ServiceError
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
MODEL_ROUTES = frozenset(
    {"/api/v1/embed", "/api/v1/verify", "/api/v1/embed/batch", "/api/v1/compare", "/api/v1/identify"}
)
# A refused request's body is read (and dropped) up to this much before the
# answer, so that an ordinary client, still sending, reads the JSON error
# instead of a connection reset.
_DRAIN_BYTES = 64 * 1024 * 1024
_DRAIN_SECONDS = 5.0


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
        status = 500
        response_started = False
        body_bytes = 0
        body_done = scope.get("method") in ("GET", "HEAD", "OPTIONS") and b"content-length" not in headers
        limit = self.body_limit(scope.get("path", ""))

        async def guarded_receive() -> dict[str, Any]:
            nonlocal body_bytes, body_done
            try:
                message: dict[str, Any] = await asyncio.wait_for(receive(), self.body_timeout_s)
            except TimeoutError:
                raise _BodyTimeout from None
            body_bytes += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            if limit is not None and body_bytes > limit.bytes:
                raise _BodyTooLarge
            return message

        async def drain() -> None:
            # Read what the client is still sending, within bounds, and drop it.
            nonlocal body_done
            deadline = time.monotonic() + _DRAIN_SECONDS
            drained = 0
            while not body_done and drained < _DRAIN_BYTES:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                try:
                    message = await asyncio.wait_for(receive(), remaining)
                except TimeoutError:
                    return
                drained += len(message.get("body", b""))
                if message["type"] != "http.request" or not message.get("more_body", False):
                    body_done = True

        async def tagged_send(message: dict[str, Any]) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                if status >= 400 and not body_done:
                    await drain()
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            declared = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            declared = 0
        turn: float | None = None
        heavy = scope.get("path") in MODEL_ROUTES and scope.get("method") == "POST"
        try:
            if heavy and self.authorize is not None:
                await run_in_threadpool(self.authorize, headers)  # a key source may read SSM
                state["authorized"] = True
            if limit is not None and declared > limit.bytes:
                raise _BodyTooLarge
            if heavy and self.admission is not None:
                turn = await self.admission.acquire()
            await self.app(scope, guarded_receive, tagged_send)
        except _BodyTooLarge:
            body_bytes = max(body_bytes, declared)
            assert limit is not None
            error = ServiceError(
                limit.code,
                "The image exceeds the maximum size."
                if limit.code is ErrorCode.IMAGE_TOO_LARGE
                else "The request body is too large.",
                limit.detail or f"This route takes a body of at most {limit.bytes} bytes (README: Limits).",
            )
            state["error_code"] = error.code.value
            if not response_started:
                await _send_error(tagged_send, error)
        except _BodyTimeout:
            error = ServiceError(
                ErrorCode.INVALID_REQUEST,
                "The request body arrived too slowly.",
                f"The body must arrive within {self.body_timeout_s:g} s.",
                status=408,
            )
            state["error_code"] = error.code.value
            if not response_started:
                await _send_error(tagged_send, error, close=True)
        except ServiceError as refused:  # the API key, checked before the body
            state["error_code"] = refused.code.value
            body_done = True  # not drained: an unauthenticated sender gets no more of our time
            if not response_started:
                await _send_error(tagged_send, refused, close=True)
        except Busy as busy:
            error = ServiceError(
                ErrorCode.SERVICE_BUSY,
                "The service is busy.",
                f"Every worker is busy and the queue is full; retry after {busy.retry_after} s.",
            )
            state["error_code"] = error.code.value
            await _send_error(
                tagged_send, error, extra_headers=[(b"retry-after", str(busy.retry_after).encode())]
            )
        except Exception as exc:  # the last line: never a traceback to the caller
            logger.error(
                "unhandled exception", extra={"request_id": request_id, "exception_type": type(exc).__name__}
            )
            state["error_code"] = ErrorCode.PROCESSING_ERROR.value
            if not response_started:
                await _send_error(
                    tagged_send,
                    ServiceError(
                        ErrorCode.PROCESSING_ERROR,
                        "The request could not be processed.",
                        "An unexpected error occurred; it has been logged with the request id.",
                    ),
                )
        finally:
            if turn is not None and self.admission is not None:
                await self.admission.release(turn)
            route = scope.get("route")
            self.observer.record(
                RequestRecord(
                    request_id=request_id,
                    method=scope.get("method", ""),
                    route=getattr(route, "path", None) or scope.get("path", ""),
                    status=status,
                    error_code=state.get("error_code"),
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                    body_bytes=body_bytes,
                    faces=state.get("faces"),
                )
            )


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
