"""The simdjson fast path for /compare agrees with the pydantic path, and hands
anything irregular back to it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from face_recognition_service.api.compare_parser import compare_request_arrays, parse_compare
from face_recognition_service.api.schemas import CompareRequest
from face_recognition_service.matching import DistanceMetric


def body(**overrides: object) -> dict[str, object]:
    rng = np.random.default_rng(5)
    values: dict[str, object] = {
        "query_embedding": rng.normal(size=512).tolist(),
        "reference_embeddings": [
            {"id": f"u{i}", "embedding": rng.normal(size=512).tolist()} for i in range(4)
        ],
        "distance_metric": "euclidean",
    }
    values.update(overrides)
    return values


def test_agrees_with_pydantic_path() -> None:
    raw = json.dumps(body()).encode()
    fast = parse_compare(raw)
    assert fast is not None
    slow = CompareRequest.model_validate_json(raw)
    arrays = compare_request_arrays(slow)
    np.testing.assert_array_equal(fast.query, arrays.query)
    np.testing.assert_array_equal(fast.references, arrays.references)
    assert fast.ids == [r.id for r in slow.reference_embeddings]
    assert fast.metric is DistanceMetric.EUCLIDEAN


def test_integers_and_default_metric() -> None:
    query, ref = [1] + [0] * 511, [0, 2] + [0] * 510
    raw = json.dumps({"query_embedding": query, "reference_embeddings": [{"id": "a", "embedding": ref}]})
    fast = parse_compare(raw.encode())
    assert fast is not None and fast.metric is DistanceMetric.COSINE
    np.testing.assert_array_equal(fast.references, [np.array(ref, dtype=np.float64)])


@pytest.mark.parametrize(
    "raw",
    [
        b"[]",
        b'{"query_embedding": [NaN], "reference_embeddings": []}',
        json.dumps(body(distance_metric="manhattan")).encode(),
        json.dumps(body(query_embedding=[])).encode(),
        json.dumps(body(reference_embeddings=[])).encode(),
        json.dumps(body(reference_embeddings=[{"embedding": [1.0] * 512}])).encode(),
        json.dumps(body(reference_embeddings=[{"id": "", "embedding": [1.0] * 512}])).encode(),
        json.dumps(body(reference_embeddings=[{"id": 7, "embedding": [1.0] * 512}])).encode(),
        json.dumps(body(reference_embeddings=[{"id": "a", "embedding": [1.0] * 511}])).encode(),
        json.dumps(body(reference_embeddings=[{"id": "a", "embedding": ["x"] * 512}])).encode(),
        json.dumps(body(reference_embeddings=[{"id": "a", "embedding": [[1.0]] * 512}])).encode(),
        json.dumps(body(reference_embeddings=["a"])).encode(),
        b'{"query_embedding": [1e400], "reference_embeddings": [{"id": "a", "embedding": [1]}]}',
        json.dumps(
            {"query_embedding": [1.0] * 2, "reference_embeddings": [{"id": "a", "embedding": [1.0] * 2}]}
        ).encode(),
        json.dumps(
            {
                "query_embedding": [1.0] * 4096,
                "reference_embeddings": [{"id": "a", "embedding": [1.0] * 4096}],
            }
        ).encode(),
    ],
    ids=[
        "not-object",
        "nan",
        "metric",
        "empty-query",
        "no-refs",
        "no-id",
        "empty-id",
        "int-id",
        "length",
        "strings",
        "nested",
        "ref-not-object",
        "overflow",
        "short-vectors",
        "long-vectors",
    ],
)
def test_irregular_bodies_go_to_the_pydantic_path(raw: bytes) -> None:
    assert parse_compare(raw) is None


def test_base64_embeddings_take_the_fast_path_too() -> None:
    import base64

    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(4, 512)).astype("<f4")
    raw = json.dumps(
        {
            "query_embedding": vectors[0].tolist(),
            "reference_embeddings": [
                {"id": f"u{i}", "embedding": base64.b64encode(v.tobytes()).decode() if i % 2 else v.tolist()}
                for i, v in enumerate(vectors[1:])
            ],
        }
    ).encode()
    fast = parse_compare(raw)
    assert fast is not None
    slow = compare_request_arrays(CompareRequest.model_validate_json(raw))
    np.testing.assert_array_equal(fast.references, slow.references)
    np.testing.assert_allclose(fast.references, vectors[1:].astype(np.float64))
