"""Compare maths against a direct numpy computation."""

from __future__ import annotations

import base64
import math

import numpy as np
import pytest

from face_recognition_service.errors import ErrorCode, ServiceError
from face_recognition_service.matching import (
    DistanceMetric,
    as_unit_vectors,
    best_per_id,
    decode_embedding,
    encode_embedding,
    rank,
    similarities,
    stack_references,
)


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


# --- exact edges of the arithmetic (what a caller sees when the floats round) -----------


def _unit_whose_self_product_rounds_past_one() -> np.ndarray:
    rng = np.random.default_rng(0)
    while True:
        v = rng.normal(size=512)
        u = v / np.linalg.norm(v)
        if float(u @ u) > 1.0:
            return u


def test_a_vector_against_itself_is_exactly_one_and_zero_apart() -> None:
    """u @ u rounds to 1.0000000000000002 for this vector: the similarity is
    still at most 1 and the distance at least 0 (never -2e-16)."""
    u = _unit_whose_self_product_rounds_past_one()
    assert float(u @ u) > 1.0
    for metric in DistanceMetric:
        result = rank(u, np.stack([u]), metric)
        assert result.similarities[0] == 1.0 and result.distances[0] == 0.0
    assert similarities(u, np.stack([u]))[0] == 1.0


def test_a_vector_against_its_opposite_is_exactly_minus_one() -> None:
    u = _unit_whose_self_product_rounds_past_one()
    result = rank(u, np.stack([-u]), DistanceMetric.COSINE)
    assert result.similarities[0] == -1.0 and result.distances[0] == 2.0
    assert similarities(u, np.stack([-u]))[0] == -1.0


def test_equal_distances_keep_the_references_order() -> None:
    """80 references, two distinct vectors alternating: ties stay in the order sent."""
    near, far = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    refs = np.stack([far, near] * 40)
    order = rank(near, refs, DistanceMetric.COSINE).order.tolist()
    assert order == list(range(1, 80, 2)) + list(range(0, 80, 2))


def test_a_persons_score_is_their_best_template_counted_once() -> None:
    persons = best_per_id(["a", "b", "a", "a"], np.array([0.2, 0.5, 0.7, -1.0]))
    assert persons.ids == ["a", "b"] and persons.templates == [3, 1]
    assert persons.similarities.tolist() == [0.7, 0.5]
    lowest = best_per_id(["z"], np.array([-1.0]))
    assert lowest.similarities.tolist() == [-1.0]


def test_base64_with_a_character_outside_the_alphabet_is_refused() -> None:
    good = encode_embedding(np.linspace(-1, 1, 512))
    # Replaced, and inserted: a lenient decoder would drop "!!!!" and read the rest.
    for bad in (good[:100] + "!" + good[101:], good[:100] + "!!!!" + good[100:]):
        with pytest.raises(ServiceError) as refused:
            decode_embedding(bad, "reference 'u1'")
        assert refused.value.code is ErrorCode.INVALID_EMBEDDING
        assert refused.value.message == "The reference 'u1' is not valid base64."


def test_base64_of_the_wrong_length_says_what_is_expected() -> None:
    half = encode_embedding(np.ones(256))
    with pytest.raises(ServiceError) as refused:
        decode_embedding(half, "embedding")
    assert refused.value.message == (
        "The embedding must be base64 of 512 little-endian float32 values (2048 bytes; got 1024)."
    )


def test_base64_round_trip_is_float32_little_endian() -> None:
    vector = np.linspace(-1, 1, 512)  # float64 in: stored as float32
    text = encode_embedding(vector)
    assert len(text) == 2732
    raw = base64.b64decode(text)
    np.testing.assert_array_equal(np.frombuffer(raw, "<f4"), vector.astype("<f4"))
    decoded = decode_embedding(text, "embedding")
    assert decoded.dtype == np.float64
    np.testing.assert_array_equal(decoded, vector.astype("<f4").astype(np.float64))
    assert decode_embedding([1, 2, 3], "embedding").dtype == np.float64


def test_huge_and_tiny_references_keep_their_own_directions() -> None:
    """One reference near float64's top (its norm overflows) and one near its
    bottom, together: each is scaled by its own largest value, so neither
    becomes a zero vector."""
    query = np.zeros(512)
    query[0] = 1.0
    huge, tiny = np.zeros(512), np.zeros(512)
    huge[:2] = 1e308
    tiny[0] = 1e-300
    result = rank(query, np.stack([huge, tiny]), DistanceMetric.COSINE)
    assert result.order.tolist() == [1, 0]
    assert result.similarities.tolist() == pytest.approx([1.0, 2**-0.5])


def test_a_huge_query_keeps_its_direction() -> None:
    """A query whose norm overflows (values near 1e308) goes through the
    divide-by-the-peak path as a single vector."""
    query = np.zeros(512)
    query[:2] = 1e308
    refs = np.zeros((1, 512))
    refs[0, 0] = 1.0
    result = rank(query, refs, DistanceMetric.COSINE)
    assert result.similarities.tolist() == pytest.approx([2**-0.5])


def test_the_identification_table_is_the_published_one() -> None:
    """docs/identify.md's table, written out (not read from the code under test)."""
    from face_recognition_service.matching import identification_table

    assert identification_table("buffalo_sc") == {
        "strict": {
            "target_fpir": 1e-4,
            "thresholds": {"1000": 0.45, "10000": 0.452, "100000": 0.482, "1000000": 0.511},
        },
        "balanced": {
            "target_fpir": 1e-3,
            "thresholds": {"1000": 0.385, "10000": 0.42, "100000": 0.452, "1000000": 0.482},
        },
        "lenient": {
            "target_fpir": 1e-2,
            "thresholds": {"1000": 0.347, "10000": 0.385, "100000": 0.42, "1000000": 0.452},
        },
    }


def test_a_threshold_of_minus_one_accepts_every_stranger() -> None:
    from face_recognition_service.matching import expected_fpir

    assert expected_fpir(-1.0, 1) == 1.0 == expected_fpir(-1.0, 1_000_000)
    assert 0.0 < expected_fpir(0.5, 1) < expected_fpir(0.5, 1_000_000) < 1.0


def test_a_zero_vector_among_several_references_is_refused_not_dropped() -> None:
    """Only one zero row among good ones: the whole batch is refused, naming it."""
    good = np.random.default_rng(3).normal(size=(3, 512))
    refs = np.vstack([good[:2], np.zeros((1, 512)), good[2:]])
    with pytest.raises(ServiceError) as err:
        as_unit_vectors(refs, "reference embeddings")
    assert err.value.message == "The reference embeddings contains a zero vector, which has no direction."
    with pytest.raises(ServiceError):
        rank(good[0], refs, DistanceMetric.COSINE)
