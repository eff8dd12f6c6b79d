"""Shared pieces of the benchmarks: photos, statistics, servers, HTTP."""

from __future__ import annotations

import http.client
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from face_recognition_service.testing import LabelledPhoto, free_port, labelled_photos

__all__ = ["Photo", "free_port", "load_photos"]

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PHOTOS = ROOT / "tests" / "data" / "faces"


Photo = LabelledPhoto


def load_photos(folder: Path) -> list[LabelledPhoto]:
    """Single-face photos: the labelled ones in the repo's folder, every image elsewhere."""
    return labelled_photos(folder, single_face=True)


def person_pairs(vectors: dict[str, tuple[str, Any]]) -> tuple[list[float], list[float]]:
    """Same-person and different-person similarities of ``vectors`` (name ->
    (person, unit embedding)), over pairs of photos made from different
    originals (a name's part before "@" names its original)."""
    same: list[float] = []
    different: list[float] = []
    names = list(vectors)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if a.split("@")[0] == b.split("@")[0]:
                continue
            (pa, va), (pb, vb) = vectors[a], vectors[b]
            (same if pa == pb else different).append(float(va @ vb))
    return same, different


def summary(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    p95 = ms[min(len(ms) - 1, max(0, round(0.95 * len(ms)) - 1))]
    return {"median_ms": round(statistics.median(ms), 2), "p95_ms": round(p95, 2), "n": len(ms)}


class Client:
    """One keep-alive HTTP/1.1 connection, as a backend would hold one."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        status, raw, _ = self.request_with_headers(method, path, body)
        return status, raw

    def request_with_headers(
        self, method: str, path: str, body: bytes | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        headers = {"content-type": "application/json"} if body is not None else {}
        try:
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The server closed an idle keep-alive connection (KEEP_ALIVE_SECONDS):
            # open another, as any HTTP client does, and send the request again.
            self.conn.close()
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
        return resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()}

    def close(self) -> None:
        self.conn.close()


class Server:
    """A server process started the way a user starts it; times its cold start."""

    def __init__(self, command: list[str], env: dict[str, str], port: int) -> None:
        self.port = port
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            command, env={**os.environ, **env}, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def wait_ready(self, timeout: float = 120) -> float:
        deadline = time.monotonic() + timeout
        while True:
            try:
                client = Client(self.port)
                status, _ = client.request("GET", "/api/v1/health")
                client.close()
                if status == 200:
                    return time.perf_counter() - self.started
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError("server did not become healthy")
            time.sleep(0.02)

    def peak_rss_mb(self) -> float:
        """Peak resident memory of the process and its children (uvicorn workers)."""
        pids = [self.proc.pid]
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
        total = 0.0
        for pid in pids:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
        return round(total, 1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def our_server(
    model_dir: Path, model_name: str, port: int, workers: int = 1, threads: int = 0, **extra: str
) -> Server:
    env = {
        **extra,
        "MODEL_DIR": str(model_dir),
        "MODEL_NAME": model_name,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "WORKERS": str(workers),
        "LOG_LEVEL": "warning",
        "ORT_THREADS": str(threads),
    }
    return Server([sys.executable, "-m", "face_recognition_service.server"], env, port)


def peer_server(model_dir: Path, model_name: str, port: int, workers: int = 1) -> Server:
    env = {"PEER_MODEL_DIR": str(model_dir / model_name)}
    return Server(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.peer_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        env,
        port,
    )


def first_embed_after_start(server: Server, body: bytes) -> float:
    """Seconds from process start to the first successful embed."""
    deadline = time.monotonic() + 120
    while True:
        try:
            client = Client(server.port)
            status, _ = client.request("POST", "/api/v1/embed", body)
            client.close()
            if status == 200:
                return time.perf_counter() - server.started
        except OSError:
            pass
        if server.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("no successful embed")
        time.sleep(0.01)


def machine() -> dict[str, Any]:
    import platform

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def peak_of_one_request(
    model_dir: Path, path: str, body: bytes, expect: int = 200, **extra: str
) -> dict[str, float]:
    """One POST to a fresh buffalo_sc server: the server's peak RSS (VmHWM)
    before and after it, and the answer's size. The answer must be ``expect``."""
    port = free_port()
    server = our_server(model_dir, "buffalo_sc", port, 1, 0, **extra)
    try:
        server.wait_ready()
        idle = server.peak_rss_mb()
        client = Client(port)
        status, raw = client.request("POST", path, body)
        assert status == expect, (path, raw[:300])
        client.close()
        return {"answer_mb": round(len(raw) / 1e6, 2), "idle_peak_mb": idle, "peak_mb": server.peak_rss_mb()}
    finally:
        server.stop()
