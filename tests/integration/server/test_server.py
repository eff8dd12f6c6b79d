"""The plain server, started the way the README starts it, answering real requests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from face_recognition_service.testing import free_port
from tests.support.helpers import b64, read


def call(url: str, payload: dict[str, object] | None = None) -> tuple[int, dict[str, object]]:
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "face_recognition_service.server"],
        [sys.executable, "-m", "uvicorn", "face_recognition_service.server.main:app", "--host", "127.0.0.1"],
        # The original contract's own entry points.
        [sys.executable, "-m", "face_recognition_service.main"],
        [sys.executable, "-m", "uvicorn", "face_recognition_service.main:app", "--host", "127.0.0.1"],
    ],
    ids=["python-m", "uvicorn", "seed-python-m", "seed-uvicorn"],
)
def test_server_serves_real_embeddings(command: list[str], model_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "MODEL_DIR": str(model_dir), "HOST": "127.0.0.1", "PORT": str(port)}
    if "uvicorn" in command[2]:
        command = [*command, "--port", str(port)]
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body = call(f"{base}/health")
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert status == 200 and body["model_loaded"] is True
        image = b64(read("obama_small.jpg"))
        status, body = call(f"{base}/embed", {"image": image})
        assert status == 200 and len(body["embedding"]) == 512  # type: ignore[arg-type]
        status, body = call(f"{base}/embed", {"image": b64(read("two_people.jpg"))})
        assert status == 422 and body["error_code"] == "MULTIPLE_FACES_DETECTED"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("message") == "request"]
    assert [r["status"] for r in requests] == [200, 200, 422]
    assert image[100:160] not in log.read_text()
