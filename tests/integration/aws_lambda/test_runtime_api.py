"""The image's entry path end to end, without Docker: the real awslambdaric
runtime client, in its own process, against a minimal local Lambda Runtime API.

Cold init imports the handler (model load; an on-demand init, as Lambda names
it, skips the warm-up requests), then each queued event is served through the
real handler, and the responses are posted back to us.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.lambda_support import check_response, load_event
from tests.support.runtime_api_support import RuntimeApi


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
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/face-recognition",
        "AWS_LAMBDA_LOG_STREAM_NAME": "local",
        "AWS_REGION": "us-east-1",
        "LAMBDA_TASK_ROOT": str(Path(__file__).resolve().parents[3] / "function"),
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
    # The on-demand init left the warm-up requests to the scheduled ping.
    logged = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert [line["warm_up_requests"] for line in logged if line.get("message") == "init"] == [0.0]
    assert [line["warm_up_requests"] for line in logged if line.get("message") == "non-HTTP event"] == [3]
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
