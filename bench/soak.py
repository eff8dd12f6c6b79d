"""Soak: mixed traffic against a real server at concurrency 1, 4, 16 and 64.

    .venv/bin/python -m bench.soak                     # 500 requests a level
    .venv/bin/python -m bench.soak --requests 2000 --levels 4 64

Clients are closed-loop and honour Retry-After after a 503. Per level:
throughput, p50/p95/p99 of answered requests, health p99 measured
by a separate prober during the load, the shed rate (503 SERVICE_BUSY) and
5xx other than shedding; the server's RSS is sampled every 500 requests.
Traffic: 70 % /embed of the labelled photos, 20 % /compare with 500
references, 10 % /verify of an embedding. Bounded in count and time, local only.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from face_recognition_service.provision import provision
from face_recognition_service.testing import embed_body, free_port

from .common import DEFAULT_PHOTOS, Client, load_photos, our_server


def _bodies() -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(0)
    refs = rng.normal(size=(500, 512))
    refs /= np.linalg.norm(refs, axis=1, keepdims=True)
    compare = json.dumps(
        {
            "query_embedding": refs[0].tolist(),
            "reference_embeddings": [{"id": f"u{i}", "embedding": r.tolist()} for i, r in enumerate(refs)],
        }
    ).encode()
    verify = json.dumps(
        {
            "embedding": refs[1].tolist(),
            "references": [{"id": f"u{i}", "embedding": r.tolist()} for i, r in enumerate(refs[:50])],
        }
    ).encode()
    embeds = [("/api/v1/embed", embed_body(p.data)) for p in load_photos(DEFAULT_PHOTOS)]
    return [
        *embeds * 7,
        *[("/api/v1/compare", compare)] * (2 * len(embeds)),
        *[("/api/v1/verify", verify)] * len(embeds),
    ]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _probe_health(port: int, stop: Any, results: Any) -> None:
    client = Client(port)
    latencies = []
    while not stop.is_set():
        start = time.perf_counter()
        status, _ = client.request("GET", "/api/v1/health")
        latencies.append(time.perf_counter() - start)
        assert status == 200
        time.sleep(0.05)
    client.close()
    results.put(latencies)


def run_level(
    port: int, pid: int, concurrency: int, total: int, mix: list[tuple[str, bytes]], max_seconds: float
) -> dict[str, Any]:
    lock = threading.Lock()
    issued = [0]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    rss: list[tuple[int, float]] = []
    stop = threading.Event()
    deadline = time.monotonic() + max_seconds

    def worker(seed: int) -> None:
        client = Client(port)
        order = random.Random(seed)
        while not stop.is_set():
            with lock:
                if issued[0] >= total or time.monotonic() > deadline:
                    break
                issued[0] += 1
                n = issued[0]
            path, body = order.choice(mix)
            start = time.perf_counter()
            retry_after = 0.0
            try:
                status, _, headers = client.request_with_headers("POST", path, body)
                if status == 503:
                    retry_after = float(headers.get("retry-after", "1"))
            except OSError:
                status = 0
                client.close()
                client = Client(port)
            elapsed = time.perf_counter() - start
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    latencies.append(elapsed)
                if n % 500 == 0:
                    rss.append((n, _rss_mb(pid)))
            if retry_after:
                time.sleep(retry_after)  # a well-behaved client honours Retry-After
        client.close()

    # The health prober is a process of its own: in this process its timings
    # would include waiting for the load threads' GIL, not only the server's.
    results: multiprocessing.Queue[list[float]] = multiprocessing.Queue()
    probe_stop = multiprocessing.Event()
    probe = multiprocessing.Process(target=_probe_health, args=(port, probe_stop, results))
    probe.start()
    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    stop.set()
    probe_stop.set()
    health = results.get(timeout=30)
    probe.join()
    answered = sum(statuses.values())
    ms = sorted(x * 1000 for x in latencies)

    def pct(p: float) -> float:
        return round(ms[min(len(ms) - 1, int(p * len(ms)))], 1) if ms else 0.0

    hs = sorted(x * 1000 for x in health)
    return {
        "concurrency": concurrency,
        "requests": answered,
        "ok_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "health_p99_ms": round(hs[min(len(hs) - 1, int(0.99 * len(hs)))], 1) if hs else None,
        "health_probes": len(hs),
        "shed_rate": round(statuses.get(503, 0) / max(answered, 1), 3),
        "server_errors_other": sum(v for k, v in statuses.items() if k >= 500 and k != 503)
        + statuses.get(0, 0),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "rss_mb_every_500": rss,
        "rss_mb_end": _rss_mb(pid),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=500, help="requests per level")
    parser.add_argument("--levels", type=int, nargs="*", default=[1, 4, 16, 64])
    parser.add_argument("--max-seconds", type=float, default=120.0, help="time cap per level")
    parser.add_argument("--env", nargs="*", default=[], help="server settings, NAME=VALUE")
    parser.add_argument("--out", default="soak_buffalo_sc.json", help="file under bench/results/")
    args = parser.parse_args(argv)
    mix = _bodies()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp)
        provision("buffalo_sc", model_dir)
        port = free_port()
        server = our_server(model_dir, "buffalo_sc", port, **dict(e.split("=", 1) for e in args.env))
        try:
            server.wait_ready()
            pid = server.proc.pid
            levels: list[dict[str, Any]] = []
            results: dict[str, Any] = {"idle_rss_mb": _rss_mb(pid), "levels": levels}
            print(json.dumps({"idle_rss_mb": results["idle_rss_mb"]}), flush=True)
            for level in args.levels:
                row = run_level(port, pid, level, args.requests, mix, args.max_seconds)
                levels.append(row)
                print(json.dumps(row), flush=True)
            results["peak_rss_mb"] = server.peak_rss_mb()
            print(json.dumps({"peak_rss_mb": results["peak_rss_mb"]}))
        finally:
            server.stop()
    out = Path(__file__).parent / "results" / args.out
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
