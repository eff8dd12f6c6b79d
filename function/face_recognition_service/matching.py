"""Distances between one query embedding and many references (numpy only).

Both metrics work on L2-normalised vectors, because ArcFace embeddings are
compared on the unit sphere and a caller's rounding or scaling must not move a
match. That makes the two metrics agree on ranking, and lets ``similarity``
mean the same thing for both: the cosine of the angle between the faces.

    cosine:     distance = 1 - cos            in [0, 2]
    euclidean:  distance = ||a/|a| - b/|b|||  in [0, 2], and cos = 1 - distance**2 / 2
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from .errors import ErrorCode, ServiceError


class DistanceMetric(StrEnum):
    COSINE = "cosine"
    EUCLIDEAN = "euclidean"


@dataclass(frozen=True)
class Ranking:
    order: np.ndarray  # indices into the references, best first
    distances: np.ndarray  # (n,) aligned with ``order``
    similarities: np.ndarray  # (n,) aligned with ``order``


def _invalid(message: str) -> ServiceError:
    return ServiceError(ErrorCode.INVALID_EMBEDDING, message)


def as_unit_vectors(vectors: np.ndarray, what: str) -> np.ndarray:
    """Rows scaled to unit length, after checking they are finite and non-zero."""
    if not np.isfinite(vectors).all():
        raise _invalid(f"The {what} contains NaN or infinite values.")
    # Divide by the largest magnitude first so that huge but finite values
    # (1e308) cannot overflow the norm: only the direction matters.
    peak = np.abs(vectors).max(axis=-1, keepdims=True)
    if (peak == 0).any():
        raise _invalid(f"The {what} contains a zero vector, which has no direction.")
    scaled = vectors / peak
    unit: np.ndarray = scaled / np.linalg.norm(scaled, axis=-1, keepdims=True)
    return unit


def to_matrix(query: list[float], references: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    if not query:
        raise _invalid("The query embedding is empty.")
    if not references:
        raise _invalid("At least one reference embedding is required.")
    size = len(query)
    bad = next((i for i, ref in enumerate(references) if len(ref) != size), None)
    if bad is not None:
        raise _invalid(
            f"Reference {bad} has {len(references[bad])} values; the query has {size}. "
            "All embeddings must have the same length."
        )
    try:
        q = np.asarray(query, dtype=np.float64)
        refs = np.asarray(references, dtype=np.float64)
    except OverflowError:
        raise _invalid("An embedding value is out of range.") from None
    return q, refs


def rank(query: np.ndarray, references: np.ndarray, metric: DistanceMetric) -> Ranking:
    q = as_unit_vectors(query, "query embedding")
    refs = as_unit_vectors(references, "reference embeddings")
    cos = np.clip(refs @ q, -1.0, 1.0)
    distances = 1.0 - cos if metric is DistanceMetric.COSINE else np.sqrt(np.maximum(0.0, 2.0 - 2.0 * cos))
    order = np.argsort(distances, kind="stable")
    return Ranking(order=order, distances=distances[order], similarities=cos[order])


class OperatingPoint(StrEnum):
    """Named similarity thresholds; README "Thresholds" gives the evidence for each."""

    STRICT = "strict"
    BALANCED = "balanced"
    LENIENT = "lenient"


# Similarity thresholds by pack (a threshold belongs to the recogniser: buffalo_l
# and buffalo_m share w600k_r50, buffalo_s and buffalo_sc share w600k_mbf).
_R50 = {OperatingPoint.STRICT: 0.45, OperatingPoint.BALANCED: 0.36, OperatingPoint.LENIENT: 0.28}
_MBF = {OperatingPoint.STRICT: 0.45, OperatingPoint.BALANCED: 0.36, OperatingPoint.LENIENT: 0.28}
OPERATING_POINTS: dict[str, dict[OperatingPoint, float]] = {
    "buffalo_l": _R50,
    "buffalo_m": _R50,
    "buffalo_s": _MBF,
    "buffalo_sc": _MBF,
}


def operating_points_for(model_name: str) -> dict[str, float]:
    points = OPERATING_POINTS.get(model_name, _R50)
    return {point.value: value for point, value in points.items()}
