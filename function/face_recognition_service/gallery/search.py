"""Nearest rows of a snapshot for one or more probes.

Up to EXACT_LIMIT vectors the search is exact: one matrix product over the
memory-mapped vectors (a whole identify over 100,000 in 6.4-10.4 ms on 2 cores,
docs/benchmarks.md#identify).

Above it the snapshot carries a **binary index**: each vector's signs against
CODE_BITS random hyperplanes (SimHash, 64 bytes a vector). Two vectors at angle
t disagree on each bit with probability t / pi, so a Hamming scan over the codes
ranks rows by angle, noisily: a new photo of an enrolled person (cosine 0.6)
differs on ~151 of 512 bits, a stranger on 256 +- 11. faiss scans the codes
exhaustively (no graph to get lost in: random vectors are no harder than real
ones), in shards on parallel threads, and the best CANDIDATES rows are scored
again from the exact float32 vectors. So a similarity in an answer is always
exact, and the codes only decide which rows are looked at (bench/identify.py
measures recall against exact search: docs/benchmarks.md#identify).
"""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from .format import Snapshot, invalid

logger = logging.getLogger(__name__)

# Above this many vectors a snapshot is built with a binary index.
EXACT_LIMIT = 100_000
CODE_BITS = 512
# Rows re-scored exactly per probe (at least top_k's worth): 256 rows of 2 KiB,
# read with pread in ~0.4 ms (1,024 cost ~4 ms of page faults through the
# mapping). A genuine probe's own row ranks far inside them.
CANDIDATES = 256
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


def binary_index(vectors: np.ndarray) -> tuple[bytes, dict[str, Any]]:
    """The index section: the hyperplanes (float32), then the codes."""
    planes = projection(vectors.shape[1])
    blob = planes.tobytes() + codes_of(vectors, planes).tobytes()
    return blob, {"kind": "binary", "bits": CODE_BITS, "sha256": hashlib.sha256(blob).hexdigest()}


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(_shard_count(), thread_name_prefix="gallery-scan")


def _shard_count() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


class BinaryIndex:
    """The snapshot's codes in faiss flat binary indexes, one per shard."""

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
        codes = blob[plane_bytes:].reshape(count, bits // 8)
        bounds = np.linspace(0, count, _shard_count() + 1).astype(np.int64)
        self.shards: list[tuple[int, Any]] = []
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            shard = faiss.IndexBinaryFlat(bits)
            shard.add(np.ascontiguousarray(codes[start:stop]))
            self.shards.append((int(start), shard))

    def candidates(self, probes: np.ndarray, count: int) -> list[np.ndarray]:
        """Per probe, the ``count`` rows whose codes are nearest (over all shards)."""
        queries = codes_of(probes, self.planes)

        def scan(part: tuple[int, Any]) -> tuple[np.ndarray, np.ndarray]:
            start, shard = part
            distances, rows = shard.search(queries, min(count, shard.ntotal))
            return distances, np.where(rows >= 0, rows + start, -1)

        found = list(_pool().map(scan, self.shards))
        distances = np.concatenate([d for d, _ in found], axis=1)
        rows = np.concatenate([r for _, r in found], axis=1)
        distances[rows < 0] = np.iinfo(distances.dtype).max
        out = []
        for dist, row in zip(distances, rows, strict=True):
            keep = np.argpartition(dist, count - 1)[:count] if count < len(dist) else np.arange(len(dist))
            out.append(row[keep][row[keep] >= 0])
        return out


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
            out.append(_top(self.snapshot.read_rows(rows) @ probe, rows, count))
        return out


def _top(scores: np.ndarray, rows: np.ndarray, count: int) -> Hits:
    """The ``count`` best of ``scores`` (aligned with ``rows``), best first; ties keep row order."""
    if count < len(scores):
        keep = np.sort(np.argpartition(scores, len(scores) - count)[-count:])
    else:
        keep = np.arange(len(scores))
    order = keep[np.argsort(-scores[keep], kind="stable")]
    return Hits(rows[order], scores[order])
