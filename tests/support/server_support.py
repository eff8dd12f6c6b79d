"""A real server process for the tests that need sockets: started the way the
README starts it, waited for, stopped, its log kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from face_recognition_service.testing import free_port


@dataclass
class RunningServer:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]


def call(
    url: str,
    payload: Any = None,
    *,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    method: str | None = None,
    timeout: float = 60,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    body = data if data is not None else (json.dumps(payload).encode() if payload is not None else None)
    req = urllib.request.Request(
        url, data=body, headers={"content-type": "application/json", **(headers or {})}, method=method
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else {}, dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)


@contextmanager
def running_server(model_dir: Path, workdir: Path, **env: str) -> Iterator[RunningServer]:
    port = free_port()
    full_env = {**os.environ, "MODEL_DIR": str(model_dir), "HOST": "127.0.0.1", "PORT": str(port), **env}
    log = workdir / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "face_recognition_service.server"],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    server = RunningServer(port, proc, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                call(f"{server.base}/health", timeout=5)
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
