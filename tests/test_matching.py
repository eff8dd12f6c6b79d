"""Compare maths against a direct numpy computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from face_recognition_service.errors import ErrorCode, ServiceError
from face_recognition_service.matching import DistanceMetric, rank, stack_references


@pytest.fixture()
def vectors() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    return rng.normal(size=512), rng.normal(size=(50, 512)) * rng.uniform(0.1, 10, size=(50, 1))


def test_cosine_matches_numpy(vectors: tuple[np.ndarray, np.ndarray]) -> None:
    q, refs = vectors
    result = rank(q, refs, DistanceMetric.COSINE)
    expected = 1 - refs @ q / (np.linalg.norm(refs, axis=1) * np.linalg.norm(q))
    np.testing.assert_allclose(result.distances, np.sort(expected), atol=1e-9)
    np.testing.assert_array_equal(result.order, np.argsort(expected, kind="stable"))
    np.testing.assert_allclose(result.similarities, 1 - result.distances, atol=1e-9)


def test_euclidean_matches_numpy_on_unit_vectors(vectors: tuple[np.ndarray, np.ndarray]) -> None:
    q, refs = vectors
    result = rank(q, refs, DistanceMetric.EUCLIDEAN)
    qn = q / np.linalg.norm(q)
    rn = refs / np.linalg.norm(refs, axis=1, keepdims=True)
    expected = np.linalg.norm(rn - qn, axis=1)
    np.testing.assert_allclose(result.distances, np.sort(expected), atol=1e-7)
    np.testing.assert_array_equal(result.order, np.argsort(expected, kind="stable"))
    # similarity is the same cosine for both metrics
    np.testing.assert_allclose(result.similarities, 1 - result.distances**2 / 2, atol=1e-7)


def test_identical_vector_is_best_with_zero_distance() -> None:
    q = np.array([0.3, -0.2, 0.9])
    refs = np.array([[1.0, 0.0, 0.0], q * 5, [0.0, 1.0, 0.0]])
    for metric in DistanceMetric:
        result = rank(q, refs, metric)
        assert result.order[0] == 1
        assert math.isclose(result.distances[0], 0.0, abs_tol=1e-7)
        assert math.isclose(result.similarities[0], 1.0, abs_tol=1e-9)


@pytest.mark.parametrize(
    ("query", "refs", "says"),
    [
        ([], [[]], "The query embedding is empty."),
        ([1.0, 2.0], [], "At least one reference embedding is required."),
        (
            [1.0, 2.0],
            [[1.0, 2.0], [1.0]],
            "Reference 1 has 1 values; the query has 2. All embeddings must have the same length.",
        ),
        ([float("nan"), 1.0], [[1.0, 2.0]], "The query embedding contains NaN or infinite values."),
        ([1.0, 2.0], [[float("inf"), 2.0]], "The reference embeddings contains NaN or infinite values."),
        ([0.0, 0.0], [[1.0, 2.0]], "The query embedding contains a zero vector, which has no direction."),
        (
            [1.0, 2.0],
            [[0.0, 0.0]],
            "The reference embeddings contains a zero vector, which has no direction.",
        ),
    ],
    ids=["empty-query", "no-references", "length-mismatch", "nan", "inf", "zero-query", "zero-reference"],
)
def test_bad_vectors_are_refused_saying_which(query: list[float], refs: list[list[float]], says: str) -> None:
    """Each refusal names the vector at fault (the caller's ``detail``)."""
    q = np.asarray(query, dtype=np.float64)
    with pytest.raises(ServiceError) as err:
        rank(q, stack_references(q, [np.asarray(r, dtype=np.float64) for r in refs]), DistanceMetric.COSINE)
    assert err.value.code is ErrorCode.INVALID_EMBEDDING
    assert err.value.message == says
