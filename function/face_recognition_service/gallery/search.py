"""Nearest rows of a snapshot for one or more probes.

Up to EXACT_LIMIT vectors the search is exact: one matrix product over the
memory-mapped vectors (a whole identify over 100,000 in 6.4-6.9 ms on 2 cores,
docs/benchmarks.md#identify). Above it the
snapshot carries a usearch HNSW index, which proposes candidates; every
candidate is then scored again from the exact float32 vectors, so a similarity
in an answer is always exact and the index only decides which rows are looked
at (bench/identify.py measures its recall against exact search).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .format import Snapshot, invalid

# Above this many vectors a snapshot is built with an approximate index.
EXACT_LIMIT = 200_000


# usearch settings. Measured at 1,000,000 random unit vectors (bench/identify.py,
# docs/benchmarks.md#identify) they are NOT good enough yet: recall@1 0.55 for
# genuine probes, 0.89 for near ones. Above EXACT_LIMIT, treat the index as
# work in progress (the 1M target is open).
@dataclass(frozen=True)
class IndexSettings:
    connectivity: int = 32
    expansion_add: int = 128
    expansion_search: int = 256
    dtype: str = "i8"


USEARCH = IndexSettings()


@dataclass(frozen=True)
class Hits:
    rows: np.ndarray  # (m,) row indices, best first
    similarities: np.ndarray  # (m,) exact cosine similarities, aligned with rows


class Searcher:
    """Candidates for a probe: exact, or from the snapshot's usearch index."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.index: Any = None
        if snapshot.index_bytes is not None:
            from usearch.index import Index

            try:
                view: Any = snapshot.index_bytes  # a numpy view of the mapping: no copy
                self.index = Index.restore(view, view=True)
            except Exception as exc:  # usearch raises RuntimeError/ValueError on a damaged blob
                raise invalid(f"The snapshot's index cannot be opened ({type(exc).__name__}).") from None
            if self.index is None or len(self.index) != snapshot.count:
                raise invalid("The snapshot's index does not cover its vectors.")
            self.index.expansion_search = int(snapshot.header["index"].get("expansion_search", 256))

    def nearest(self, probes: np.ndarray, count: int) -> list[Hits]:
        """The ``count`` most similar rows of each probe (unit float32 rows)."""
        vectors = self.snapshot.vectors
        count = min(count, len(vectors))
        if self.index is None:
            scores = probes @ vectors.T  # (p, n)
            out = []
            for row in scores:
                top = (
                    np.argpartition(row, len(row) - count)[-count:]
                    if count < len(row)
                    else np.arange(len(row))
                )
                top = top[np.argsort(-row[top], kind="stable")]
                out.append(Hits(top, row[top]))
            return out
        found = self.index.search(probes, count)
        keys = np.atleast_2d(found.keys)
        out = []
        for probe, rows in zip(probes, keys, strict=True):
            rows = rows[(rows >= 0) & (rows < len(vectors))].astype(np.int64)
            sims = vectors[rows] @ probe
            order = np.argsort(-sims, kind="stable")
            out.append(Hits(rows[order], sims[order]))
        return out
