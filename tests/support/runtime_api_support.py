"""A minimal local Lambda Runtime API, for running the real awslambdaric runtime
client against the handler without Docker (tests/integration/aws_lambda/test_runtime_api.py,
tests/integration/aws_lambda/test_dry_build.py). The fixture ``runtime_api`` is registered in conftest."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

PREFIX = "/2018-06-01/runtime"


@dataclass
class RuntimeApi:
    """The subset of the Lambda Runtime API that a runtime client uses."""

    events: queue.Queue[tuple[str, dict[str, Any]]] = field(default_factory=queue.Queue)
    results: dict[str, tuple[str, Any]] = field(default_factory=dict)
    init_error: Any = None
    done: threading.Condition = field(default_factory=threading.Condition)

    def invoke(self, event: dict[str, Any], timeout: float = 60) -> tuple[str, Any]:
        request_id = str(uuid.uuid4())
        self.events.put((request_id, event))
        with self.done:
            assert self.done.wait_for(lambda: request_id in self.results, timeout), "no response"
        return self.results[request_id]

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path != f"{PREFIX}/invocation/next":
                    self._reply(404)
                    return
                request_id, event = api.events.get()
                self._reply(
                    200,
                    json.dumps(event).encode(),
                    {
                        "Lambda-Runtime-Aws-Request-Id": request_id,
                        "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 30_000),
                        "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:123456789012:function:face-recognition",
                        "Lambda-Runtime-Trace-Id": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
                        "Content-Type": "application/json",
                    },
                )

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = self.path[len(PREFIX) :].strip("/").split("/")
                with api.done:
                    if parts == ["init", "error"]:
                        api.init_error = json.loads(body or b"null")
                    elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                        api.results[parts[1]] = (parts[2], json.loads(body or b"null"))
                    else:
                        self._reply(404)
                        return
                    api.done.notify_all()
                self._reply(202, b"{}")

        return Handler


@pytest.fixture()
def runtime_api() -> Iterator[tuple[RuntimeApi, str]]:
    api = RuntimeApi()
    server = ThreadingHTTPServer(("127.0.0.1", 0), api.handler_class())
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api, f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
