"""uvicorn's HTTP protocol with the service's limits and error shape at the
transport: requests its parser refuses (CR/LF/NUL in a header, a malformed
request line) get a JSON 400 instead of uvicorn's text/plain "Invalid HTTP
request received."; a request line and headers over MAX_HEAD_BYTES get a JSON
431 as soon as that much has arrived (uvicorn's own 16 KB cap applies to h11
only, not to httptools); and a connection over MAX_CONNECTIONS gets a JSON
503 instead of uvicorn's plain text."""

from __future__ import annotations

from typing import Any

import orjson
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..errors import ErrorCode, ServiceError, service_busy

# The request line and headers of one request, at most (as uvicorn's h11 cap).
MAX_HEAD_BYTES = 16 * 1024


async def _busy(scope: Any, receive: Any, send: Any) -> None:
    """What uvicorn answers over its connection limit, in the service's shape."""
    error = service_busy("The server has as many connections as it takes (MAX_CONNECTIONS); retry after 1 s.")
    body = orjson.dumps(error.to_dict())
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# uvicorn looks its over-the-limit app up in this module at each request: the
# one place its plain-text 503 comes from.
setattr(httptools_impl, "service_unavailable", _busy)  # noqa: B010  (a module global, not a typed attribute)


class JSONErrorHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._headers_done = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._headers_done = False

    def on_headers_complete(self) -> None:
        self._headers_done = True
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Bytes that arrived while the head was still incomplete are all head:
        # the parser keeps a header value until it ends, so stop it early.
        if not self._headers_done and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                error = ServiceError(
                    ErrorCode.INVALID_REQUEST,
                    "The request's headers are too large.",
                    f"The request line and headers may be at most {MAX_HEAD_BYTES} bytes.",
                    status=431,
                )
                self._answer(b"431 Request Header Fields Too Large", error)

    def send_400_response(self, msg: str) -> None:
        error = ServiceError(ErrorCode.INVALID_REQUEST, "The HTTP request could not be parsed.", msg[:200])
        self._answer(b"400 Bad Request", error)

    def _answer(self, status: bytes, error: ServiceError) -> None:
        body = orjson.dumps(error.to_dict())
        head = [b"HTTP/1.1 " + status + b"\r\n"]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(head))
        self.transport.close()
