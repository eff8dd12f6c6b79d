"""The outermost layer of the app: request ids, the body-size guard, the last
line of defence against unexpected exceptions, and one record per request.

Pure ASGI rather than BaseHTTPMiddleware: it adds no task or stream copy to a
request that carries megabytes of base64.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

import orjson

from ..errors import ErrorCode, ServiceError
from .observe import RequestObserver, RequestRecord

logger = logging.getLogger(__name__)

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class _BodyTooLarge(Exception):
    pass


class RequestContextMiddleware:
    def __init__(self, app: Any, *, max_body_bytes: int, observer: RequestObserver) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.observer = observer

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        request_id = _request_id(scope, headers)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500
        response_started = False
        body_bytes = 0

        async def guarded_receive() -> dict[str, Any]:
            nonlocal body_bytes
            message: dict[str, Any] = await receive()
            body_bytes += len(message.get("body", b""))
            if body_bytes > self.max_body_bytes:
                raise _BodyTooLarge
            return message

        async def tagged_send(message: dict[str, Any]) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            declared = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            declared = 0
        try:
            if declared > self.max_body_bytes:
                raise _BodyTooLarge
            await self.app(scope, guarded_receive, tagged_send)
        except _BodyTooLarge:
            body_bytes = max(body_bytes, declared)
            error = ServiceError(
                ErrorCode.IMAGE_TOO_LARGE,
                "The request body is too large.",
                f"The limit is {self.max_body_bytes} bytes of JSON.",
            )
            state["error_code"] = error.code.value
            if not response_started:
                await _send_error(tagged_send, error)
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


async def _send_error(send: Any, error: ServiceError) -> None:
    body = orjson.dumps(error.to_dict())
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
