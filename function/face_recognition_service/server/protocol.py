"""uvicorn's HTTP protocol, answering requests its parser refuses (CR/LF/NUL in
a header, a malformed request line) in the service's JSON error shape instead
of uvicorn's text/plain "Invalid HTTP request received."."""

from __future__ import annotations

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..errors import ErrorCode, ServiceError


class JSONErrorHttpToolsProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        error = ServiceError(ErrorCode.INVALID_REQUEST, "The HTTP request could not be parsed.", msg[:200])
        body = orjson.dumps(error.to_dict())
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
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
