"""The plain server under faults and hostile clients, over real sockets: load
shedding, parser errors, large and slow bodies, nothing written outside /tmp."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

from tests.support.helpers import b64, read
from tests.support.server_support import call, running_server


def _raw(port: int, request: bytes, wait: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def _json_body(response: bytes) -> dict[str, Any]:
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"application/json" in head.lower(), head
    result: dict[str, Any] = json.loads(body)
    return result


def test_overload_is_shed_fast_and_health_answers(model_dir: Path, tmp_path: Path) -> None:
    body = {"image": b64(read("obama_3.jpg"))}  # the largest photo: slow enough to pile up
    with running_server(model_dir, tmp_path, MAX_IN_FLIGHT="1", MAX_QUEUED="1") as server:
        results: list[tuple[int, dict[str, Any], dict[str, str]]] = []
        lock = threading.Lock()

        def one() -> None:
            outcome = call(f"{server.base}/embed", body)
            with lock:
                results.append(outcome)

        threads = [threading.Thread(target=one) for _ in range(12)]
        for t in threads:
            t.start()
        health = [call(f"{server.base}/health", timeout=10) for _ in range(5)]
        for t in threads:
            t.join()
        statuses = sorted(status for status, _, _ in results)
        assert statuses.count(200) >= 2 and 503 in statuses, statuses
        for status, answer, headers in results:
            if status == 503:
                assert answer["error_code"] == "SERVICE_BUSY" and int(headers["retry-after"]) >= 1
        assert all(status == 200 for status, _, _ in health)


def test_parser_errors_answer_in_the_error_shape(model_dir: Path, tmp_path: Path) -> None:
    with running_server(model_dir, tmp_path) as server:
        for bad in (b"X-Bad: a\x00b", b"X-Bad: a\rb", b"Bad Header Without Colon"):
            response = _raw(server.port, b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n" + bad + b"\r\n\r\n")
            assert response.startswith(b"HTTP/1.1 400"), response[:80]
            assert _json_body(response)["error_code"] == "INVALID_REQUEST"


def test_large_bodies_refused_early_are_still_readable(model_dir: Path, tmp_path: Path) -> None:
    with running_server(model_dir, tmp_path) as server:
        status, body, _ = call(f"{server.base}/nothing-here", data=b"x" * (8 * 1024 * 1024))
        assert status == 404 and body["error_code"] == "NOT_FOUND"
        status, body, _ = call(f"{server.base}/compare", data=b"[" * (40 * 1024 * 1024))
        assert status == 413 and body["error_code"] == "PAYLOAD_TOO_LARGE"


def test_a_stalled_body_is_refused(model_dir: Path, tmp_path: Path) -> None:
    with running_server(model_dir, tmp_path, BODY_TIMEOUT_SECONDS="1") as server:
        head = (
            b"POST /api/v1/embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n"
        )
        started = time.monotonic()
        response = _raw(server.port, head + b'{"image": "', wait=20)
        assert response.startswith(b"HTTP/1.1 408"), response[:80]
        assert _json_body(response)["error_code"] == "INVALID_REQUEST"
        assert time.monotonic() - started < 15


def test_nothing_is_written_outside_tmp(model_dir: Path, tmp_path: Path) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    models_before = sorted(str(p) for p in model_dir.rglob("*"))
    with running_server(model_dir, work, HOME=str(home)) as server:
        status, body, _ = call(f"{server.base}/embed", {"image": b64(read("obama_small.jpg"))})
        assert status == 200 and len(body["embedding"]) == 512
    assert list(home.rglob("*")) == []  # no ~/.cache/Microsoft (ONNX Runtime telemetry), nothing else
    assert sorted(p.name for p in work.iterdir()) == ["server.log"]  # the test's own log
    assert sorted(str(p) for p in model_dir.rglob("*")) == models_before


def test_oversized_headers_are_refused_at_once_and_health_stays_fast(model_dir: Path, tmp_path: Path) -> None:
    """Reliability III, finding 8: httptools kept a 200 MB header whole before
    answering 200. Now the head is cut off at 16 KB with a JSON 431, while the
    sender is still sending, and other clients are not held up."""
    with running_server(model_dir, tmp_path) as server:
        latencies: list[float] = []
        stop = threading.Event()

        def health() -> None:
            while not stop.is_set():
                started = time.monotonic()
                status, _, _ = call(f"{server.base}/health", timeout=10)
                assert status == 200
                latencies.append(time.monotonic() - started)

        watcher = threading.Thread(target=health)
        watcher.start()
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
                sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Big: ")
                sent = 0
                try:
                    while sent < 100 * 1024 * 1024:  # up to 100 MB, unless refused first
                        sock.sendall(b"a" * 65536)
                        sent += 65536
                except (BrokenPipeError, ConnectionResetError):
                    pass
                answer = sock.recv(65536)
        finally:
            stop.set()
            watcher.join()
        assert answer.startswith(b"HTTP/1.1 431"), answer[:80]
        assert _json_body(answer)["error_code"] == "INVALID_REQUEST"
        assert sent < 10 * 1024 * 1024  # refused long before the whole header arrived
        assert latencies and max(latencies) < 1.0
        # An ordinary request with headers under the limit is served.
        status, _, _ = call(f"{server.base}/health", timeout=10, headers={"x-padding": "p" * 8000})
        assert status == 200


def test_over_the_connection_limit_the_answer_is_json(model_dir: Path, tmp_path: Path) -> None:
    """Reliability III, finding 10: uvicorn's own 503 was plain text."""
    with running_server(model_dir, tmp_path, MAX_CONNECTIONS="1") as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as held:
            held.sendall(b"POST /api/v1/embed HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{")
            time.sleep(0.3)
            response = _raw(server.port, b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n", wait=5)
        assert response.startswith(b"HTTP/1.1 503"), response[:80]
        body = _json_body(response)
        assert body["error_code"] == "SERVICE_BUSY" and b"retry-after: 1" in response.lower()
