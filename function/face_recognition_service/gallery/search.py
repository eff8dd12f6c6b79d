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
# mapping).
CANDIDATES = 256
# Rows kept by the Hamming scan per probe, for the asymmetric ranking that
# chooses the CANDIDATES: 4,096 codes of 64 bytes, ~0.5 ms.
SHORTLIST = 4096
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
        self.codes = blob[plane_bytes:].reshape(count, bits // 8)
        bounds = np.linspace(0, count, _shard_count() + 1).astype(np.int64)
        self.shards: list[tuple[int, Any]] = []
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            shard = faiss.IndexBinaryFlat(bits)
            shard.use_heap = False  # type: ignore[attr-defined]  # counting sort: a heap is slower for thousands kept
            shard.add(np.ascontiguousarray(self.codes[start:stop]))
            self.shards.append((int(start), shard))

    def candidates(self, probes: np.ndarray, count: int) -> list[np.ndarray]:
        """Per probe, ``count`` rows: the best of the SHORTLIST nearest codes
        (over all shards) by the asymmetric score."""
        queries = codes_of(probes, self.planes)
        kept = max(SHORTLIST, count)

        def scan(part: tuple[int, Any]) -> tuple[np.ndarray, np.ndarray]:
            start, shard = part
            distances, rows = shard.search(queries, min(kept, shard.ntotal))
            return distances, np.where(rows >= 0, rows + start, -1)

        found = list(_pool().map(scan, self.shards))
        distances = np.concatenate([d for d, _ in found], axis=1)
        rows = np.concatenate([r for _, r in found], axis=1)
        distances[rows < 0] = np.iinfo(distances.dtype).max
        out = []
        for probe, dist, row in zip(probes, distances, rows, strict=True):
            if kept < len(dist):
                row = row[np.argpartition(dist, kept - 1)[:kept]]
            row = row[row >= 0]
            if count < len(row):
                # sum of the probe's projections over each row's set bits: the
                # same order as its projections against the row's +-1 signs
                score = np.unpackbits(self.codes[row], axis=1) @ (probe @ self.planes)
                row = row[np.argpartition(score, len(row) - count)[-count:]]
            out.append(row)
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
