"""Reliability IV, measured against a real server (buffalo_sc, defaults but
GALLERY_REFRESH_SECONDS=1), each gallery in a fresh server:

- worst identify: a gallery of few people (10 ids among all its rows), the
  121-face grid with ``face_selection: "all"`` and ``top_k`` 100 (100 faces
  searched), on a 1,000,000-row PQ gallery and a 100,000-row exact one: its
  time and the server's peak RSS (VmHWM) before and after; then 20 identify
  requests by embedding with ``top_k`` 100 (median ms);
- replacement: identify requests by embedding, back to back, against the
  gallery being replaced and against another open one, while the 100,000-row
  file is (a) left alone, (b) rewritten in place (``cp``: truncate, then
  write), (c) replaced atomically (rename), (d) replaced with a copy with one
  flipped bit (named by the same name): per phase the latency (median, p99,
  max), the answers' hashes and stale flags, and any status but 200.

    .venv/bin/python -m bench.gallery_reliability [--sizes 100000 1000000]

The galleries are built once under bench/results/.cache (4.3 GB at
1,000,000) and reused; pass --fresh to build them again.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from face_recognition_service.provision import provision
from face_recognition_service.testing import free_port

from .common import Client, machine, our_server

CACHE = Path(__file__).resolve().parent / "results" / ".cache" / "reliability"
PEOPLE = 10
IDENTIFY = "/api/v1/identify"


def build_gallery(path: Path, count: int, tag: str, seed: int) -> None:
    """``count`` random unit rows of PEOPLE ids, with the index the builder
    gives that size (PQ above 100,000)."""
    from face_recognition_service.gallery.format import write_snapshot
    from face_recognition_service.gallery.search import index_for

    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, 512), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    blob, info = index_for(vectors)
    ids = [f"person-{i % PEOPLE}" for i in range(count)]
    write_snapshot(
        path, model=tag, ids=ids, vectors=vectors, built_at="bench", index_blob=blob, index_info=info
    )


def galleries(sizes: list[int], tag: str, fresh: bool) -> dict[int, Path]:
    CACHE.mkdir(parents=True, exist_ok=True)
    out = {}
    for size in sizes:
        path = CACHE / f"few-{size}.frg"
        if fresh or not path.exists():
            started = time.perf_counter()
            build_gallery(path, size, tag, seed=size)
            print(f"built {path.name} in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        out[size] = path
    rebuilt = CACHE / "few-100000-b.frg"  # the same size, other rows: the replacement
    if fresh or not rebuilt.exists():
        build_gallery(rebuilt, 100_000, tag, seed=7)
    out[-1] = rebuilt
    return out


def probe(tag: str) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    vector = rng.standard_normal(512).astype("<f4")
    vector /= np.linalg.norm(vector)
    return {"embedding": base64.b64encode(vector.tobytes()).decode(), "model": tag}


def worst(model_dir: Path, folder: Path, name: str, tag: str) -> dict[str, Any]:
    from tests.support.galleries import grid_jpeg

    port = free_port()
    server = our_server(
        model_dir, "buffalo_sc", port, 1, 0, GALLERY_DIR=str(folder), GALLERY_CACHE_DIR=str(folder / "cache")
    )
    try:
        server.wait_ready()
        client = Client(port)
        started = time.perf_counter()
        status, raw = client.request("POST", IDENTIFY, json.dumps({"gallery": name, **probe(tag)}).encode())
        assert status == 200, raw[:300]
        load_s = time.perf_counter() - started
        loaded = server.peak_rss_mb()
        grid = "data:image/jpeg;base64," + base64.b64encode(grid_jpeg()).decode()
        body = json.dumps({"gallery": name, "image": grid, "face_selection": "all", "top_k": 100}).encode()
        started = time.perf_counter()
        status, raw = client.request("POST", IDENTIFY, body)
        worst_s = time.perf_counter() - started
        answer = json.loads(raw)
        assert status == 200, raw[:300]
        times = []
        for _ in range(20):
            started = time.perf_counter()
            status, raw = client.request(
                "POST", IDENTIFY, json.dumps({"gallery": name, "top_k": 100, **probe(tag)}).encode()
            )
            assert status == 200, raw[:300]
            times.append((time.perf_counter() - started) * 1000)
        client.close()
        return {
            "first_request_with_load_s": round(load_s, 2),
            "peak_after_load_mb": loaded,
            "worst_identify_s": round(worst_s, 2),
            "worst_faces": answer["face_count"],
            "worst_faces_left_out": answer.get("faces_left_out", 0),
            "worst_candidates_per_face": max(len(f["candidates"]) for f in answer["faces"]),
            "peak_after_worst_mb": server.peak_rss_mb(),
            "embedding_top_k_100_median_ms": round(statistics.median(times), 2),
        }
    finally:
        server.stop()


def _latencies(
    port: int, body: bytes, stop: threading.Event, out: list[tuple[float, int, str, bool]]
) -> None:
    client = Client(port)
    while not stop.is_set():
        started = time.perf_counter()
        status, raw = client.request("POST", IDENTIFY, body)
        answer = json.loads(raw)
        gallery = answer.get("gallery", {})
        out.append(
            (
                (time.perf_counter() - started) * 1000,
                status,
                str(gallery.get("hash", answer.get("error_code")))[:19],
                bool(gallery.get("stale")),
            )
        )
    client.close()


def _summary(samples: list[tuple[float, int, str, bool]]) -> dict[str, Any]:
    ms = sorted(s[0] for s in samples)
    return {
        "requests": len(ms),
        "median_ms": round(statistics.median(ms), 2),
        "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 2),
        "max_ms": round(ms[-1], 2),
        "not_200": sum(1 for s in samples if s[1] != 200),
        "hashes": sorted({s[2] for s in samples}),
        "stale": sum(1 for s in samples if s[3]),
    }


def replacement(model_dir: Path, folder: Path, built: dict[int, Path], tag: str) -> dict[str, Any]:
    live = folder / "live.frg"
    shutil.copyfile(built[100_000], live)
    shutil.copyfile(built[100_000], folder / "other.frg")
    damaged = bytearray(built[-1].read_bytes())
    damaged[len(damaged) // 2] ^= 0x01  # a vector's bit
    port = free_port()
    env = {
        "GALLERY_DIR": str(folder),
        "GALLERY_CACHE_DIR": str(folder / "cache"),
        "GALLERY_REFRESH_SECONDS": "1",
    }
    server = our_server(model_dir, "buffalo_sc", port, 1, 0, **env)
    phases: dict[str, Any] = {}
    try:
        server.wait_ready()
        for name in ("live.frg", "other.frg"):
            Client(port).request("POST", IDENTIFY, json.dumps({"gallery": name, **probe(tag)}).encode())

        def phase(label: str, action: Any) -> None:
            samples: dict[str, list[tuple[float, int, str, bool]]] = {"live": [], "other": []}
            stop = threading.Event()
            threads = [
                threading.Thread(
                    target=_latencies,
                    args=(port, json.dumps({"gallery": f"{g}.frg", **probe(tag)}).encode(), stop, samples[g]),
                )
                for g in samples
            ]
            for thread in threads:
                thread.start()
            time.sleep(1.0)
            action()
            time.sleep(4.0)
            stop.set()
            for thread in threads:
                thread.join(30)
            phases[label] = {g: _summary(s) for g, s in samples.items()}
            print(label, json.dumps(phases[label]), file=sys.stderr, flush=True)

        phase("quiet", lambda: None)
        phase("in_place_cp", lambda: shutil.copyfile(built[-1], live))  # truncates, then writes
        phase("in_place_cp_back", lambda: shutil.copyfile(built[100_000], live))

        def atomic(data: bytes) -> None:
            (folder / ".live.tmp").write_bytes(data)
            os.replace(folder / ".live.tmp", live)

        phase("atomic_rename", lambda: atomic(built[-1].read_bytes()))
        phase("damaged_replacement", lambda: atomic(bytes(damaged)))
        phases["alive_after"] = server.proc.poll() is None
        phases["peak_mb"] = server.peak_rss_mb()
    finally:
        server.stop()
    return phases


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args()
    from face_recognition_service.models import get_pack, model_tag

    out: dict[str, Any] = {"machine": machine()}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "models"
        provision("buffalo_sc", model_dir)
        tag = model_tag(model_dir / "buffalo_sc", get_pack("buffalo_sc"))
        built = galleries(args.sizes, tag, args.fresh)
        for size in args.sizes:
            folder = Path(tmp) / f"worst-{size}"
            folder.mkdir()
            try:
                os.link(built[size], folder / "few.frg")  # the service copies it anyway
            except OSError:
                shutil.copyfile(built[size], folder / "few.frg")
            out[f"worst_{size}"] = worst(model_dir, folder, "few.frg", tag)
            print(size, json.dumps(out[f"worst_{size}"]), file=sys.stderr, flush=True)
            shutil.rmtree(folder)
        folder = Path(tmp) / "replace"
        folder.mkdir()
        out["replacement_100000"] = replacement(model_dir, folder, built, tag)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
