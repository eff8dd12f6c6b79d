"""Nearest rows of a snapshot for one or more probes.

Up to EXACT_LIMIT vectors the search is exact: one matrix product over the
memory-mapped vectors (docs/benchmarks.md#identify).

Above it the snapshot carries a **product-quantized index** (PQ): each vector,
turned by a learnt rotation (OPQ), cut into SUBQUANTIZERS pieces of 8
dimensions, each piece stored as the number of the nearest of 16 centroids
learnt for that piece (4 bits), so 32 bytes a vector where the float32 row
takes 2 KiB. The rotation spreads the vectors' variance evenly over the
pieces, so 4 bits a piece lose less of it: among 1,000,000 face-like vectors,
a poor photo (cosine 0.45, about the strict threshold at that size) has exact
search's best among the 256 best codes 1,000 times in 1,000 with it, 996
without. faiss's fast scan (``IndexPQFastScan``: the probe's inner products
with every centroid in a small table that SIMD shuffles look up) scores every
row exhaustively (no graph to get lost in) and keeps the CANDIDATES best.
Those are scored from the exact float32 vectors, so a similarity in an answer
is always exact and the codes only decide which rows are looked at
(bench/identify.py measures recall against exact search).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import visible_cpus
from .format import Snapshot, invalid

logger = logging.getLogger(__name__)

# Above this many vectors a snapshot is built with a PQ index.
EXACT_LIMIT = 100_000
# Probes scored against every row in one matrix product, in an exact search.
EXACT_PROBES_AT_ONCE = 16
# 64 pieces of 8 dimensions, 16 centroids each: 32 bytes a 512-d vector.
SUBQUANTIZERS = 64
CENTROID_BITS = 4
# Rows re-scored exactly per probe (at least what the caller asks for): rows
# of 2 KiB read with pread, 0.5-0.9 ms for 256. Among 1,000,000 face-like
# vectors, exact search's best was among them for 1,000 of 1,000 poor photos
# (cosine 0.45), 999 at 0.42 and 994 at 0.40 (without the rotation: 989-996 at
# 0.45, and 1,024 rows were needed).
CANDIDATES = 256
# Vectors the rotation and the centroids are learnt from, and the rotation's
# iterations: 35-45 s on 2 cores, whatever the gallery's size (10 iterations of
# 16,384 vectors: 12 s, but 987 of 1,000 at 0.40).
TRAINING_SAMPLE = 32_768
ROTATION_ITERATIONS = 20
TRAINING_SEED = 20261201
# Fewer vectors are searched exactly whatever the builder's limit: faiss's OPQ
# training aborts the process (a double free) with fewer rows than dimensions
# (measured: 256-511 rows of 512-d crash, 512 and more do not), k-means learns
# poorly from few points, and an exact scan of them is instant. Twice the
# dimension, for a margin.
PQ_MIN_ROWS = 1_024


@dataclass(frozen=True)
class Hits:
    rows: np.ndarray  # (m,) row indices, best first
    similarities: np.ndarray  # (m,) exact cosine similarities, aligned with rows


def _product(rows: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``rows @ matrix`` for a search's small products, without BLAS. OpenBLAS
    runs a 512 x 512 product on every core and its threads then spin for a
    while, beside whatever runs next."""
    out: np.ndarray = np.einsum("ij,jk->ik", rows, matrix)
    return out


def pq_index(vectors: np.ndarray) -> tuple[bytes, dict[str, Any]]:
    """The index section: the rotation R (dim x dim float32; a row's code is of
    ``R @ row``), the centroids (SUBQUANTIZERS x 16 x piece float32), then each
    row's code (SUBQUANTIZERS x 4 bits, piece j's centroid number in byte
    j // 2, the low half first)."""
    import faiss

    count, dim = vectors.shape
    if not _indexable(count, dim) or dim % SUBQUANTIZERS:
        raise ValueError(f"a PQ index needs {PQ_MIN_ROWS} vectors of a multiple of {SUBQUANTIZERS} values")
    faiss.omp_set_num_threads(visible_cpus())  # a search on this thread set it to 1
    sample_rows = np.random.default_rng(TRAINING_SEED).choice(
        count, min(count, TRAINING_SAMPLE), replace=False
    )
    sample = np.ascontiguousarray(vectors[np.sort(sample_rows)], np.float32)
    opq = faiss.OPQMatrix(dim, SUBQUANTIZERS)
    opq.niter = ROTATION_ITERATIONS
    opq.train(sample)
    rotation = faiss.vector_to_array(opq.A).reshape(dim, dim).astype("<f4")
    pq = faiss.ProductQuantizer(dim, SUBQUANTIZERS, CENTROID_BITS)
    pq.train(np.ascontiguousarray(sample @ rotation.T))
    codes = np.concatenate(
        [
            pq.compute_codes(np.ascontiguousarray(vectors[start : start + 65_536] @ rotation.T, np.float32))
            for start in range(0, count, 65_536)
        ]
    )
    blob = rotation.tobytes() + faiss.vector_to_array(pq.centroids).astype("<f4").tobytes() + codes.tobytes()
    info = {
        "kind": "pq",
        "subquantizers": SUBQUANTIZERS,
        "bits": CENTROID_BITS,
        "sha256": hashlib.sha256(blob).hexdigest(),
    }
    return blob, info


def index_for(
    vectors: np.ndarray, exact_limit: int = EXACT_LIMIT
) -> tuple[bytes | None, dict[str, Any] | None]:
    """The index section a snapshot of ``vectors`` carries and its header
    entry: a PQ index above ``exact_limit`` (and PQ_MIN_ROWS), else none."""
    if len(vectors) > exact_limit and _indexable(*vectors.shape):
        return pq_index(vectors)
    return None, None


def _indexable(count: int, dim: int) -> bool:
    """Whether a PQ index can be learnt from ``count`` rows of ``dim`` values
    (PQ_MIN_ROWS, and twice the dimension: faiss aborts on fewer than ``dim``)."""
    return count >= max(PQ_MIN_ROWS, 2 * dim)


class PQIndex:
    """The snapshot's PQ codes in faiss's fast-scan layout, scanned in one thread."""

    def __init__(self, snapshot: Snapshot) -> None:
        import faiss

        dim, count = snapshot.vectors.shape[1], snapshot.count
        info, blob = snapshot.header["index"], snapshot.index_bytes
        pieces, bits = info.get("subquantizers"), info.get("bits")
        # Only the layout the builder writes: faiss aborts or fails on others (1, 2, 512 pieces).
        if (
            type(pieces) is not int
            or pieces != SUBQUANTIZERS
            or type(bits) is not int
            or bits != CENTROID_BITS
        ):
            raise invalid("The snapshot's PQ index has a layout this service does not read.")
        rotation_bytes, centroid_bytes = dim * dim * 4, (1 << bits) * dim * 4
        codes_at = rotation_bytes + centroid_bytes
        if blob is None or len(blob) != codes_at + count * (pieces * bits // 8):
            raise invalid("The snapshot's PQ index does not cover its vectors.")
        tables = blob[:codes_at].view("<f4")
        if not np.isfinite(tables).all():
            raise invalid("The snapshot's PQ index holds NaN or infinite values.")
        # A probe is turned as the rows were: probe @ R.T (R, dim x dim).
        self.turn = blob[:rotation_bytes].view("<f4").reshape(dim, dim).T.copy()
        flat = faiss.IndexPQ(dim, pieces, bits, faiss.METRIC_INNER_PRODUCT)
        faiss.copy_array_to_vector(blob[rotation_bytes:codes_at].view("<f4"), flat.pq.centroids)
        flat.is_trained = True
        flat.add_sa_codes(np.ascontiguousarray(blob[codes_at:]).reshape(count, -1))
        # The fast-scan index packs the codes in blocks of 32 rows for its
        # SIMD lookups (32 MB at 1,000,000: its own copy; ``flat``'s goes with it).
        self.index = faiss.IndexPQFastScan(flat)  # type: ignore[arg-type]  # the stub lists only (d, M, nbits)

    def candidates(self, probes: np.ndarray, count: int) -> list[np.ndarray]:
        """Per probe, the ``count`` rows with the best approximate inner product."""
        import faiss

        # One thread: a search is one short burst, and no OpenMP threads are
        # left spinning beside the next request. The setting is per thread in
        # OpenMP, so it is made on the thread that searches.
        faiss.omp_set_num_threads(1)
        count = min(count, int(self.index.ntotal))
        turned = np.ascontiguousarray(_product(np.asarray(probes, np.float32), self.turn))
        _, rows = self.index.search(turned, count)
        return [found[found >= 0] for found in rows]


class Searcher:
    """Candidates for a probe: all rows (exact), or from the snapshot's PQ index."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.index: PQIndex | None = None
        # The rows one search reads at least: an indexed search re-scores CANDIDATES.
        self.fewest_rows = 0
        kind = snapshot.header["index"].get("kind")
        if kind == "pq":
            self.index = PQIndex(snapshot)
            self.fewest_rows = CANDIDATES
        elif kind in ("usearch", "binary"):
            # Built by 0.3.0 (an HNSW graph, which missed too many) or by an
            # unreleased build (binary codes, twice the bytes to scan): searched
            # exactly (right, slower) until rebuilt (docs/benchmarks.md#identify).
            logger.warning("gallery snapshot has a %s index: searched exactly; rebuild it", kind)

    def nearest(self, probes: np.ndarray, count: int) -> list[Hits]:
        """The ``count`` most similar rows of each probe (unit float32 rows)."""
        vectors = self.snapshot.vectors
        count = min(count, len(vectors))
        if self.index is None:
            # A few probes at a time: 100 faces against 100,000 rows would be a
            # 40 MB score matrix at once, 6.4 MB in steps of 16.
            return [
                _top(row, np.arange(len(row)), count)
                for start in range(0, len(probes), EXACT_PROBES_AT_ONCE)
                for row in probes[start : start + EXACT_PROBES_AT_ONCE] @ vectors.T
            ]
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
