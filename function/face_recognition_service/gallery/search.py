"""Nearest rows of a snapshot for one or more probes.

Up to EXACT_LIMIT vectors the search is exact: one matrix product over the
memory-mapped vectors (a whole identify over 100,000 in 6.4-10.4 ms on 2 cores,
docs/benchmarks.md#identify).

Above it the snapshot carries a **binary index**: each vector's signs against
CODE_BITS random hyperplanes (SimHash, 64 bytes a vector). Two vectors at angle
t disagree on each bit with probability t / pi, so a Hamming scan over the codes
ranks rows by angle, noisily: a new photo of an enrolled person (cosine 0.6)
differs on ~151 of 512 bits, a stranger on 256 +- 11 (+- 17 among real faces,
whose similarities spread wider). faiss scans the codes exhaustively (no graph
to get lost in), in shards on parallel threads, and keeps a SHORTLIST of the
nearest codes. Those are ranked again **asymmetrically**: the probe's own
projections (not its signs) against each row's bits, which halves the noise of
the probe's side. The best CANDIDATES of them are scored from the exact float32
vectors. So a similarity in an answer is always exact, and the codes only
decide which rows are looked at. A poor photo (cosine 0.45, about the strict
threshold at 1,000,000) of a face-like gallery: 93 % recall@1 with Hamming
alone and 256 rows re-scored, 99.3 % with the shortlist (bench/identify.py
measures recall against exact search: docs/benchmarks.md#identify).
"""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ..config import visible_cpus
from .format import Snapshot, invalid

logger = logging.getLogger(__name__)

# Above this many vectors a snapshot is built with a binary index.
EXACT_LIMIT = 100_000
CODE_BITS = 512
# Rows re-scored exactly per probe (at least top_k's worth): 256 rows of 2 KiB,
# read with pread in ~0.4 ms (1,024 cost ~4 ms of page faults through the
# mapping).
CANDIDATES = 256
# Rows kept by the Hamming scan per probe, for the asymmetric ranking that
# chooses the CANDIDATES: about 4,096 codes of 64 bytes, ~1 ms.
SHORTLIST = 4096
# Rows whose distances to a probe set its shortlist's radius.
SAMPLE = 4096
PROJECTION_SEED = 20261201


@dataclass(frozen=True)
class Hits:
    rows: np.ndarray  # (m,) row indices, best first
    similarities: np.ndarray  # (m,) exact cosine similarities, aligned with rows


def projection(dim: int, bits: int = CODE_BITS, seed: int = PROJECTION_SEED) -> np.ndarray:
    """The hyperplanes (dim, bits): stored in the snapshot, so reading never
    depends on a random generator's version."""
    return np.random.default_rng(seed).standard_normal((dim, bits)).astype("<f4")


def codes_of(vectors: np.ndarray, planes: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    """Packed sign bits of ``vectors`` against ``planes``: (n, bits / 8) uint8."""
    out = np.empty((len(vectors), planes.shape[1] // 8), np.uint8)
    for start in range(0, len(vectors), chunk):
        out[start : start + chunk] = np.packbits(vectors[start : start + chunk] @ planes > 0, axis=1)
    return out


def _product(rows: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``rows @ matrix`` for a search's small products, without BLAS. OpenBLAS
    runs a 512 x 512 product on every core and its threads then spin for a
    while: beside them the scan's threads took 8.9 ms instead of 3.2."""
    out: np.ndarray = np.einsum("ij,jk->ik", rows, matrix)
    return out


# A byte's eight bits, most significant first (np.packbits' order), as 0/1.
_BYTE_BITS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(np.float32)


class AsymmetricRanker:
    """Rows ranked by the probe's projections summed over each row's set bits
    (its projections against the row's +-1 signs, less a constant).

    That sum is a product quantizer's inner-product lookup (ADC): one
    sub-quantizer per byte of a code, whose 256 centroids are the byte values'
    bit patterns, so a code's bytes are already its centroid indexes. faiss's
    ProductQuantizer does the lookups and keeps the best, in C and without the
    GIL: ~0.1 ms for a shard's ~2,400 rows where numpy took ~0.45 ms (and held
    the GIL between its steps while the other shard's thread waited)."""

    def __init__(self, bits: int) -> None:
        import faiss

        self.pq = faiss.ProductQuantizer(bits, bits // 8, 8)
        faiss.copy_array_to_vector(np.tile(_BYTE_BITS, (bits // 8, 1)).ravel(), self.pq.centroids)

    def best(self, projection: np.ndarray, codes: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The indexes into ``codes`` of the ``count`` best rows, and their scores, best first."""
        import faiss

        count = min(count, len(codes))
        scores, found = np.empty((1, count), np.float32), np.empty((1, count), np.int64)
        if count == 0:
            return found[0], scores[0]
        heap = faiss.float_minheap_array_t()
        heap.nh, heap.k, heap.ids, heap.val = 1, count, faiss.swig_ptr(found), faiss.swig_ptr(scores)
        query = np.ascontiguousarray(projection, np.float32)[None]
        rows = np.ascontiguousarray(codes)
        self.pq.search_ip(faiss.swig_ptr(query), 1, faiss.swig_ptr(rows), len(rows), heap, True)
        return found[0], scores[0]


def binary_index(vectors: np.ndarray) -> tuple[bytes, dict[str, Any]]:
    """The index section: the hyperplanes (float32), then the codes."""
    planes = projection(vectors.shape[1])
    blob = planes.tobytes() + codes_of(vectors, planes).tobytes()
    return blob, {"kind": "binary", "bits": CODE_BITS, "sha256": hashlib.sha256(blob).hexdigest()}


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(_shard_count(), thread_name_prefix="gallery-scan")


def _shard_count() -> int:
    """One shard a CPU the process may run on, at most 8: not fewer under a CPU
    quota (``config.visible_cpus``, not ``available_cpus``). The shards split one scan, with no
    thread left spinning after it, so a search is a short burst that a quota
    does not stop. In a cgroup with a 2,048 MB function's 1.16 CPUs, a search at
    1,000,000 took 5.9-6.3 ms on two shards and 10.6-13.9 ms on one."""
    return max(1, min(visible_cpus(), 8))


def _within(queries: np.ndarray, codes: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """faiss's Hamming range scan of ``codes`` in place: per query ``i``, the
    rows ``rows[limits[i]:limits[i + 1]]`` whose codes differ from it on fewer
    than ``radius`` bits, and those distances."""
    import faiss

    result = faiss.RangeSearchResult(len(queries))
    faiss.hamming_range_search(  # type: ignore[attr-defined]  # in the module, not in its __init__.pyi
        faiss.swig_ptr(queries),
        faiss.swig_ptr(codes),
        len(queries),
        len(codes),
        radius,
        codes.shape[1],
        result,
    )
    limits = faiss.rev_swig_ptr(result.lims, len(queries) + 1).copy()
    distances = faiss.rev_swig_ptr(result.distances, int(limits[-1])).astype(np.int32)
    rows = faiss.rev_swig_ptr(result.labels, int(limits[-1])).copy()
    return limits, distances, rows


class BinaryIndex:
    """The snapshot's codes, scanned in shards (contiguous slices) on parallel threads."""

    def __init__(self, snapshot: Snapshot) -> None:
        import faiss

        faiss.omp_set_num_threads(1)  # the shards are the parallelism: one thread each
        dim, count = snapshot.vectors.shape[1], snapshot.count
        bits = int(snapshot.header["index"].get("bits", 0))
        blob = snapshot.index_bytes
        plane_bytes = dim * bits * 4
        if blob is None or bits % 8 or bits < 8 or len(blob) != plane_bytes + count * bits // 8:
            raise invalid("The snapshot's binary index does not cover its vectors.")
        self.planes = blob[:plane_bytes].view("<f4").reshape(dim, bits)
        # In process memory (64 MB at 1,000,000), not through the mapping:
        # numpy asks for transparent huge pages for an array this large, and
        # the scan over them ran ~18 % faster than over faiss's own copy in
        # 4 KiB pages; and the shortlist's rows are gathered from it on every
        # search (4,096 scattered first touches of the mapping cost ~8 ms of
        # page faults). faiss scans it in place: one copy of the codes.
        self.codes = blob[plane_bytes:].reshape(count, bits // 8).copy()
        bounds = np.linspace(0, count, _shard_count() + 1).astype(np.int64)
        self.shards = [(int(start), int(stop)) for start, stop in zip(bounds[:-1], bounds[1:], strict=True)]
        # Rows spread evenly over the gallery: their distances to a probe set
        # the radius that holds about SHORTLIST rows around it.
        self.sample = np.ascontiguousarray(self.codes[:: max(1, count // SAMPLE)][:SAMPLE])
        self.sample_rank = min(len(self.sample), len(self.sample) * SHORTLIST // count + 1)
        self.ranker = AsymmetricRanker(bits)

    def radii(self, queries: np.ndarray) -> np.ndarray:
        """Per query, the Hamming distance within which about SHORTLIST of the
        rows lie, estimated from the sample (+-25 % at 1,000,000)."""
        import faiss

        distances, _ = faiss.knn_hamming(queries, self.sample, self.sample_rank)
        radii: np.ndarray = distances.max(axis=1)
        return radii

    def candidates(self, probes: np.ndarray, count: int) -> list[np.ndarray]:
        """Per probe, ``count`` rows: the best by the asymmetric score of the
        shortlist, the rows whose codes lie within its radius (over all shards).

        A radius, not faiss's k nearest: keeping thousands costs faiss a heap
        (~6 ms a shard at 1,000,000) or 17 MB of counters a query; a range scan
        costs what a scan for 256 does. Each shard's thread also scores its
        part of the shortlist, so that work is split as the scan is."""
        projections = _product(probes, self.planes)
        queries = np.packbits(projections > 0, axis=1)
        radii = self.radii(queries)
        total = len(self.codes)

        def scan(shard: tuple[int, int]) -> list[tuple[np.ndarray, np.ndarray, int]]:
            start, stop = shard
            limits, distances, rows = _within(queries, self.codes[start:stop], int(radii.max()) + 1)
            share = (stop - start) / total
            out = []
            for i, (radius, projection) in enumerate(zip(radii, projections, strict=True)):
                dist, row = distances[limits[i] : limits[i + 1]], rows[limits[i] : limits[i + 1]] + start
                inside = dist <= radius
                dist, row = dist[inside], row[inside]
                within = len(row)
                if within > 4 * SHORTLIST * share:  # many rows alike (one face enrolled many times)
                    keep = max(1, int(SHORTLIST * share))
                    row = row[np.argpartition(dist, keep - 1)[:keep]]  # the nearest by faiss's distances
                best, score = self.ranker.best(projection, self.codes[row], count)
                out.append((row[best], score, within))
            return out

        found = list(_pool().map(scan, self.shards))
        out = []
        for i, query in enumerate(queries):
            parts = [shard_found[i] for shard_found in found]
            if sum(within for _, _, within in parts) < count:
                out.append(self._nearest(query, count))  # a sample that misjudged this probe
                continue
            row = np.concatenate([r for r, _, _ in parts])
            score = np.concatenate([sc for _, sc, _ in parts])
            if count < len(row):
                row = row[np.argpartition(score, len(row) - count)[-count:]]
            out.append(row)
        return out

    def _nearest(self, query: np.ndarray, count: int) -> np.ndarray:
        import faiss

        def scan(shard: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
            start, stop = shard
            distances, rows = faiss.knn_hamming(query[None], self.codes[start:stop], min(count, stop - start))
            return distances[0], np.where(rows[0] >= 0, rows[0] + start, -1)

        found = list(_pool().map(scan, self.shards))
        dist = np.concatenate([d for d, _ in found])
        row = np.concatenate([r for _, r in found])
        keep = np.argpartition(dist, count - 1)[:count] if count < len(dist) else np.arange(len(dist))
        return row[keep][row[keep] >= 0]


class Searcher:
    """Candidates for a probe: all rows (exact), or from the snapshot's binary index."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.index: BinaryIndex | None = None
        kind = snapshot.header["index"].get("kind")
        if kind == "binary":
            self.index = BinaryIndex(snapshot)
        elif kind == "usearch":
            # 0.3.0 built an HNSW index above 200,000 vectors: it missed too many
            # (docs/benchmarks.md#identify). Such a snapshot is searched exactly
            # (right, slower) until it is rebuilt.
            logger.warning("gallery snapshot has a usearch index: searched exactly; rebuild it")

    def nearest(self, probes: np.ndarray, count: int) -> list[Hits]:
        """The ``count`` most similar rows of each probe (unit float32 rows)."""
        vectors = self.snapshot.vectors
        count = min(count, len(vectors))
        if self.index is None:
            return [_top(row, np.arange(len(row)), count) for row in probes @ vectors.T]
        found = self.index.candidates(probes, max(CANDIDATES, count))
        out = []
        for probe, rows in zip(probes, found, strict=True):
            rows = np.sort(rows)  # in file order: the reads go forward
            scores = _product(self.snapshot.read_rows(rows), probe[:, None])[:, 0]
            out.append(_top(scores, rows, count))
        return out


def _top(scores: np.ndarray, rows: np.ndarray, count: int) -> Hits:
    """The ``count`` best of ``scores`` (aligned with ``rows``), best first; ties keep row order."""
    if count < len(scores):
        keep = np.sort(np.argpartition(scores, len(scores) - count)[-count:])
    else:
        keep = np.arange(len(scores))
    order = keep[np.argsort(-scores[keep], kind="stable")]
    return Hits(rows[order], scores[order])
