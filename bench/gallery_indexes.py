"""Which approximate index for large galleries: usearch, faiss-cpu and hnswlib
HNSW at the same graph settings, on the same random unit vectors (the hardest
case for a graph index), probes at cosine 0.6 to a gallery row (a new photo of
an enrolled person). Build time, search time for one probe, recall@1 against
exact search.

    .venv/bin/python -m bench.gallery_indexes 50000

faiss-cpu is the service's (its PQ index); usearch is in the dev extra;
hnswlib is not installed by either: `.venv/bin/pip install hnswlib` to run this.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np


def main() -> None:
    n, dim, probes_n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000, 512, 300
    rng = np.random.default_rng(0)
    gallery = rng.standard_normal((n, dim), dtype=np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    rows = rng.integers(0, n, probes_n)
    noise = rng.standard_normal((probes_n, dim), dtype=np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    probes = 0.6 * gallery[rows] + 0.8 * noise
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    truth = np.argmax(probes @ gallery.T, axis=1)

    def report(name: str, build_s: float, nearest: Callable[[np.ndarray], int]) -> None:
        times, hits = [], 0
        for probe, expected in zip(probes, truth, strict=True):
            started = time.perf_counter()
            hits += nearest(probe) == expected
            times.append((time.perf_counter() - started) * 1000)
        ms = np.array(times)
        print(
            f"{name}: build {build_s:.1f} s, median {np.median(ms):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms, "
            f"recall@1 {hits / probes_n:.3f}",
            flush=True,
        )

    report("exact float32", 0.0, lambda p: int(np.argmax(gallery @ p)))

    # The service's index: PQ codes scanned exhaustively (faiss fast scan), the
    # best CANDIDATES rows re-scored exactly from the snapshot file.
    import tempfile
    from pathlib import Path

    from face_recognition_service.gallery.format import open_snapshot, write_snapshot
    from face_recognition_service.gallery.search import CANDIDATES, Searcher, pq_index

    started = time.perf_counter()
    blob, info = pq_index(gallery)
    build_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "g.frg"
        ids = [str(i) for i in range(n)]
        write_snapshot(
            path,
            model="buffalo_sc/w600k_mbf@00000000",
            ids=ids,
            vectors=gallery,
            built_at="-",
            index_blob=blob,
            index_info=info,
        )
        searcher = Searcher(open_snapshot(path))
        report(
            f"the service's PQ index (faiss fast scan), {CANDIDATES} re-scored",
            build_s,
            lambda p: int(searcher.nearest(p[None], 1)[0].rows[0]),
        )
    from usearch.index import Index

    for dtype in ("f16", "i8"):
        started = time.perf_counter()
        index = Index(
            ndim=dim, metric="cos", dtype=dtype, connectivity=32, expansion_add=128, expansion_search=128
        )
        index.add(np.arange(n), gallery, threads=2)
        report(
            f"usearch {dtype} M32 ef_add128 ef128",
            time.perf_counter() - started,
            lambda p, index=index: int(index.search(p, 1).keys[0]),  # type: ignore[misc]
        )
    import faiss

    faiss.omp_set_num_threads(2)
    started = time.perf_counter()
    flat = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
    flat.hnsw.efConstruction = 128
    flat.add(gallery)
    flat.hnsw.efSearch = 128
    report(
        "faiss HNSWFlat M32 efc128 ef128",
        time.perf_counter() - started,
        lambda p: int(flat.search(p[None], 1)[1][0, 0]),
    )
    try:
        import hnswlib
    except ImportError:
        print("hnswlib: not installed (.venv/bin/pip install hnswlib), skipped", flush=True)
        return
    started = time.perf_counter()
    graph = hnswlib.Index(space="ip", dim=dim)
    graph.init_index(max_elements=n, M=32, ef_construction=128)
    graph.set_num_threads(2)
    graph.add_items(gallery)
    graph.set_ef(128)
    report(
        "hnswlib M32 efc128 ef128",
        time.perf_counter() - started,
        lambda p: int(graph.knn_query(p, k=1)[0][0, 0]),
    )


if __name__ == "__main__":
    main()
