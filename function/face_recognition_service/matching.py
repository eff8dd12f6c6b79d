"""Distances between one query embedding and many references (numpy only).

Both metrics work on L2-normalised vectors, because ArcFace embeddings are
compared on the unit sphere and a caller's rounding or scaling must not move a
match. That makes the two metrics agree on ranking, and lets ``similarity``
mean the same thing for both: the cosine of the angle between the faces.

    cosine:     distance = 1 - cos            in [0, 2]
    euclidean:  distance = ||a/|a| - b/|b|||  in [0, 2], and cos = 1 - distance**2 / 2
"""

from __future__ import annotations

import binascii
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import pybase64

from .errors import ErrorCode, ServiceError

# The length of every supported recogniser's embedding (w600k_r50, w600k_mbf):
# a vector of any other length cannot come from this service.
EMBEDDING_SIZE = 512


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
    if vectors.size == 0:
        raise _invalid(f"The {what} is empty.")
    if not np.isfinite(vectors).all():
        raise _invalid(f"The {what} contains NaN or infinite values.")
    # The common case in one pass: norms that neither overflow nor underflow.
    norms = np.sqrt(np.einsum("...i,...i->...", vectors, vectors))[..., None]
    if np.isfinite(norms).all() and (norms > 1e-150).all():
        direct: np.ndarray = vectors / norms
        return direct
    # Divide by the largest magnitude first so that huge but finite values
    # (1e308) cannot overflow the norm: only the direction matters.
    peak = np.abs(vectors).max(axis=-1, keepdims=True)
    if (peak == 0).any():
        raise _invalid(f"The {what} contains a zero vector, which has no direction.")
    scaled = vectors / peak
    unit: np.ndarray = scaled / np.linalg.norm(scaled, axis=-1, keepdims=True)
    return unit


def distance_of(similarity: np.ndarray, metric: DistanceMetric) -> np.ndarray:
    """Each metric's distance from the cosine of unit vectors (the module's docstring)."""
    if metric is DistanceMetric.COSINE:
        cosine: np.ndarray = 1.0 - similarity
        return cosine
    euclidean: np.ndarray = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * similarity))
    return euclidean


def rank(query: np.ndarray, references: np.ndarray, metric: DistanceMetric) -> Ranking:
    q = as_unit_vectors(query, "query embedding")
    refs = as_unit_vectors(references, "reference embeddings")
    cos = np.clip(refs @ q, -1.0, 1.0)
    distances = distance_of(cos, metric)
    order = np.argsort(distances, kind="stable")
    return Ranking(order=order, distances=distances[order], similarities=cos[order])


class OperatingPoint(StrEnum):
    """Named similarity thresholds; docs/decisions.md#thresholds-and-why-the-old-example-is-replaced gives the evidence."""

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


# Identification (1:N). An impostor is accepted when *any* of N enrolled people
# scores above the threshold, so the false-positive identification rate is
# FPIR(t, N) = 1 - (1 - FMR(t))**N, about N x FMR(t). FMR(t) is the normal fit of
# the impostor similarities measured on the labelled photos (bench/thresholds.py:
# mean 0.0132, sd 0.0781 for buffalo_sc; buffalo_l's impostors centre on 0 as
# well): an extrapolation far below the 1e-3 that 829 pairs can measure, so
# read it as an order of magnitude. Each operating point names a target FPIR;
# the identification threshold is the lowest at which FPIR(t, N) stays within
# it, and never below the point's 1:1 threshold.
IMPOSTOR_FIT = (0.0132, 0.0781)
TARGET_FPIR = {OperatingPoint.STRICT: 1e-4, OperatingPoint.BALANCED: 1e-3, OperatingPoint.LENIENT: 1e-2}


def false_match_rate(threshold: float) -> float:
    """The normal fit's share of impostor pairs at or above ``threshold``."""
    mean, sd = IMPOSTOR_FIT
    return 0.5 * math.erfc((threshold - mean) / (sd * math.sqrt(2.0)))


def expected_fpir(threshold: float, persons: int) -> float:
    """The chance that a person not enrolled matches someone among ``persons``."""
    rate = false_match_rate(threshold)
    if rate >= 1.0:  # a threshold at the very bottom: everyone matches
        return 1.0
    return -math.expm1(persons * math.log1p(-rate))


def identification_threshold(model_name: str, point: OperatingPoint, persons: int) -> float:
    """The point's threshold for a gallery of ``persons`` (rounded up to 0.001)."""
    low = operating_points_for(model_name)[point.value]
    if expected_fpir(low, persons) <= TARGET_FPIR[point]:
        return low
    high = 1.0
    for _ in range(60):  # FPIR falls as the threshold rises: bisect
        middle = (low + high) / 2
        low, high = (middle, high) if expected_fpir(middle, persons) > TARGET_FPIR[point] else (low, middle)
    return math.ceil(high * 1000) / 1000


def identification_table(
    model_name: str, sizes: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000)
) -> dict[str, Any]:
    """For /model-info: each point's target FPIR and its threshold at a few gallery sizes."""
    return {
        point.value: {
            "target_fpir": TARGET_FPIR[point],
            "thresholds": {str(n): identification_threshold(model_name, point, n) for n in sizes},
        }
        for point in OperatingPoint
    }


# A match whose best other person is within this similarity of the best is
# flagged ambiguous: 0.1 is about 1.3 standard deviations of the impostor
# distribution measured on the labelled photos (bench/thresholds.py), so two
# enrolled people that close to one probe cannot both be told apart with confidence.
AMBIGUITY_MARGIN = 0.1


@dataclass(frozen=True)
class PersonScores:
    """References grouped by id: each person's best template, best first."""

    ids: list[str]
    similarities: np.ndarray  # (persons,) best template's cosine, descending
    templates: list[int]  # how many references each person had


def best_per_id(ids: list[str], similarities: np.ndarray) -> PersonScores:
    """A person's score is the best of their templates (several enrolment photos)."""
    best: dict[str, float] = {}
    counts: dict[str, int] = {}
    for ref_id, sim in zip(ids, similarities.tolist(), strict=True):
        counts[ref_id] = counts.get(ref_id, 0) + 1
        if sim > best.get(ref_id, -2.0):
            best[ref_id] = sim
    order = sorted(best, key=lambda k: -best[k])
    return PersonScores(order, np.array([best[k] for k in order]), [counts[k] for k in order])


def similarities(query: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Cosine of the query with each reference, after unit-normalising both."""
    q = as_unit_vectors(query, "query embedding")
    refs = as_unit_vectors(references, "reference embeddings")
    result: np.ndarray = np.clip(refs @ q, -1.0, 1.0)
    return result


@dataclass(frozen=True)
class Verification:
    match: bool
    similarity: float
    best_id: str
    runner_up_id: str | None
    runner_up_similarity: float | None
    margin: float | None
    ambiguous: bool


def decide(persons: PersonScores, threshold: float) -> Verification:
    """Match when the best person's similarity reaches the threshold; ambiguous
    when that match has another person within AMBIGUITY_MARGIN."""
    best = float(persons.similarities[0])
    match = best >= threshold
    runner_id = persons.ids[1] if len(persons.ids) > 1 else None
    runner = float(persons.similarities[1]) if runner_id is not None else None
    margin = best - runner if runner is not None else None
    ambiguous = bool(match and margin is not None and margin < AMBIGUITY_MARGIN)
    return Verification(match, best, persons.ids[0], runner_id, runner, margin, ambiguous)


def check_models(probe_model: str | None, reference_models: list[str | None]) -> None:
    """Refuse to compare embeddings of different models (MODEL_MISMATCH).

    Tags that are given must all agree with the probe's (or, without one, with
    each other); references without a tag are taken as the probe's model.
    """
    given = {m for m in reference_models if m}
    expected = probe_model or (next(iter(given)) if given else None)
    others = sorted(m for m in given if m != expected)
    if expected and others:
        count = sum(1 for m in reference_models if m and m != expected)
        raise ServiceError(
            ErrorCode.MODEL_MISMATCH,
            "The embeddings come from different models and cannot be compared.",
            f"The probe is {expected}; {count} reference(s) are {', '.join(others)}. "
            "Re-enrol those references with the current model.",
        )


def decode_embedding(value: np.ndarray | list[float] | str, what: str) -> np.ndarray:
    """A float list (or the numpy array a request's list was read into), or base64
    of EMBEDDING_SIZE little-endian float32 values (embedding_format=base64)."""
    if isinstance(value, str):
        try:
            raw = pybase64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise _invalid(f"The {what} is not valid base64.") from None
        if len(raw) != EMBEDDING_SIZE * 4:
            raise _invalid(
                f"The {what} must be base64 of {EMBEDDING_SIZE} little-endian float32 values "
                f"({EMBEDDING_SIZE * 4} bytes; got {len(raw)})."
            )
        return np.frombuffer(raw, dtype="<f4").astype(np.float64)
    return np.asarray(value, dtype=np.float64)


def encode_embedding(vector: np.ndarray) -> str:
    """Base64 of the vector as little-endian float32 (about a quarter of the JSON text)."""
    return pybase64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


def stack_references(query: np.ndarray, references: list[np.ndarray]) -> np.ndarray:
    """The references as one (n, d) matrix, each the query's length."""
    if not references:
        raise _invalid("At least one reference embedding is required.")
    size = query.shape[0]
    bad = next((i for i, ref in enumerate(references) if ref.shape[0] != size), None)
    if bad is not None:
        raise _invalid(
            f"Reference {bad} has {references[bad].shape[0]} values; the query has {size}. "
            "All embeddings must have the same length."
        )
    return np.stack(references)
