"""The image's entry path end to end, without Docker: the real awslambdaric
runtime client, in its own process, against a minimal local Lambda Runtime API.

Cold init imports the handler (model load + warm-up), then each queued event is
served through the real handler, and the responses are posted back to us.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from .lambda_support import check_response, load_event

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


def start_runtime(
    address: str,
    handler: str,
    model_dir: Path,
    log: Path,
    extra_env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "AWS_LAMBDA_RUNTIME_API": address,
        "AWS_LAMBDA_FUNCTION_NAME": "face-recognition",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/face-recognition",
        "AWS_LAMBDA_LOG_STREAM_NAME": "local",
        "AWS_REGION": "us-east-1",
        "LAMBDA_TASK_ROOT": str(Path(__file__).resolve().parents[1] / "function"),
        "MODEL_DIR": str(model_dir),
        "MODEL_NAME": "buffalo_sc",
        "POWERTOOLS_TRACE_DISABLED": "true",
        **(extra_env or {}),
    }
    out = open(log, "wb")  # noqa: SIM115 - closed by the process's end
    return subprocess.Popen(
        [sys.executable, "-m", "awslambdaric", handler],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=cwd,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait(timeout=10)


@pytest.mark.skipif(shutil.which("true") is None, reason="needs a POSIX userland")
def test_awslambdaric_round_trip(
    runtime_api: tuple[RuntimeApi, str], model_dir: Path, tmp_path: Path
) -> None:
    api, address = runtime_api
    log = tmp_path / "runtime.log"
    started = time.perf_counter()
    proc = start_runtime(address, "face_recognition_service.aws_lambda.handler.handler", model_dir, log)
    try:
        kind, result = api.invoke(load_event("embed-face.json"))
        first_ms = (time.perf_counter() - started) * 1000
        assert kind == "response", result
        body = check_response("embed-face.json", result)
        assert len(body["embedding"]) == 512
        kind, result = api.invoke(load_event("embed-invalid-base64.json"))
        assert kind == "response"
        check_response("embed-invalid-base64.json", result)
        kind, result = api.invoke(load_event("scheduled-warmup.json"))
        check_response("scheduled-warmup.json", result)
        assert api.init_error is None
    finally:
        stop(proc)
    text = log.read_text()
    cold = [line for line in text.splitlines() if '"ColdStart"' in line]
    assert len(cold) == 1, "cold start is counted once per execution environment"
    assert '"message":"model loaded"' in text
    print(f"awslambdaric: process start to first embed response {first_ms:.0f} ms")


def test_init_error_is_reported(runtime_api: tuple[RuntimeApi, str], model_dir: Path, tmp_path: Path) -> None:
    api, address = runtime_api
    proc = start_runtime(
        address,
        "face_recognition_service.aws_lambda.handler.no_such_handler",
        model_dir,
        tmp_path / "runtime.log",
    )
    try:
        deadline = time.monotonic() + 60
        while api.init_error is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if api.init_error is None:
            # Some runtime client versions report a bad handler on the first invocation instead.
            kind, result = api.invoke(load_event("health.json"))
            assert kind == "error"
            error = result
        else:
            error = api.init_error
        assert "no_such_handler" in json.dumps(error)
    finally:
        stop(proc)


def test_tracing_spans_reach_the_xray_daemon(
    runtime_api: tuple[RuntimeApi, str], model_dir: Path, tmp_path: Path
) -> None:
    """With tracing on, the handler and the model calls are X-Ray subsegments,
    sent (UDP) to the daemon address: here a socket of ours on loopback."""
    import socket

    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    daemon.bind(("127.0.0.1", 0))
    daemon.settimeout(0.5)
    api, address = runtime_api
    env = {
        "POWERTOOLS_TRACE_DISABLED": "false",
        "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{daemon.getsockname()[1]}",
    }
    proc = start_runtime(
        address,
        "face_recognition_service.aws_lambda.handler.handler",
        model_dir,
        tmp_path / "runtime.log",
        env,
    )
    try:
        kind, result = api.invoke(load_event("embed-face.json"))
        assert kind == "response", result
        check_response("embed-face.json", result)
        received = b""
        deadline = time.monotonic() + 10
        while b"## embed" not in received and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                received += daemon.recv(65536)
    finally:
        stop(proc)
        daemon.close()
    text = received.decode(errors="replace")
    assert "## detect" in text and "## embed" in text, (tmp_path / "runtime.log").read_text()[-2000:]


def test_handler_writes_nothing_outside_tmp(
    runtime_api: tuple[RuntimeApi, str], model_dir: Path, tmp_path: Path
) -> None:
    """As on Lambda, where only /tmp is writable: a fresh HOME and working
    directory stay empty through init and an embed (no ONNX Runtime telemetry
    files, no caches), and the model folder is not touched."""
    api, address = runtime_api
    home, work = tmp_path / "home", tmp_path / "task"
    home.mkdir()
    work.mkdir()
    models_before = sorted(str(p) for p in model_dir.rglob("*"))
    proc = start_runtime(
        address,
        "face_recognition_service.aws_lambda.handler.handler",
        model_dir,
        tmp_path / "runtime.log",
        {"HOME": str(home)},
        cwd=work,
    )
    try:
        kind, result = api.invoke(load_event("embed-face.json"))
        assert kind == "response"
        check_response("embed-face.json", result)
    finally:
        stop(proc)
    assert list(home.rglob("*")) == [] and list(work.rglob("*")) == []
    assert sorted(str(p) for p in model_dir.rglob("*")) == models_before
