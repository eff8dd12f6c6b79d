"""/verify and /compare against a plain reference of the distance formulas:
cosine similarity of the two directions (inputs of any length), cosine
distance 1 - s, euclidean distance |a/|a| - b/|b||, each id by its best
template, ranked by distance; a zero vector anywhere among the references is
refused, never dropped. Hypothesis draws the references (several per id, any
lengths, zero vectors among them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from face_recognition_service.engine import ModelState
from face_recognition_service.errors import ErrorCode, ServiceError
from face_recognition_service.matching import AMBIGUITY_MARGIN, DistanceMetric
from face_recognition_service.usecases.compare import CompareArrays, compare
from face_recognition_service.usecases.verify import Probe, Reference, VerifyInput, verify
from tests.support.helpers import make_settings

THRESHOLD = 0.25
SETTINGS = make_settings(Path("/nonexistent"))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.clip(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)), -1.0, 1.0))


def _distance(a: np.ndarray, b: np.ndarray, metric: DistanceMetric) -> float:
    if metric is DistanceMetric.COSINE:
        return 1.0 - _cosine(a, b)
    return float(np.linalg.norm(a / np.linalg.norm(a) - b / np.linalg.norm(b)))


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    query = rng.normal(size=512) * draw(st.floats(0.01, 100.0))
    count = draw(st.integers(1, 8))
    ids = [draw(st.sampled_from(["a", "b", "c", "d"])) for _ in range(count)]
    refs = [
        (query + draw(st.floats(0.2, 3.0)) * rng.normal(size=512)) * draw(st.floats(0.01, 100.0))
        for _ in range(count)
    ]
    zero = draw(st.one_of(st.none(), st.integers(0, count - 1)))
    if zero is not None:
        refs[zero] = np.zeros(512)
    return {
        "query": query,
        "ids": ids,
        "refs": refs,
        "zero": zero,
        "metric": draw(st.sampled_from(list(DistanceMetric))),
        "group": draw(st.booleans()),
    }


@settings(max_examples=150, deadline=None)
@given(case=cases())
def test_compare_agrees_with_the_distance_formulas(case: dict[str, Any]) -> None:
    arrays = CompareArrays(
        case["query"], case["ids"], np.stack(case["refs"]), case["metric"], group_by_id=case["group"]
    )
    if case["zero"] is not None:
        with pytest.raises(ServiceError) as refused:
            compare(arrays)
        assert refused.value.code is ErrorCode.INVALID_EMBEDDING
        return
    answer = compare(arrays)
    expected = [
        (ref_id, _distance(case["query"], ref, case["metric"]))
        for ref_id, ref in zip(case["ids"], case["refs"], strict=True)
    ]
    if case["group"]:
        best: dict[str, float] = {}
        for ref_id, distance in expected:
            best[ref_id] = min(best.get(ref_id, 9.0), distance)
        expected = list(best.items())
        counts = {ref_id: case["ids"].count(ref_id) for ref_id in best}
        assert {m["id"]: m["templates"] for m in answer["matches"]} == counts
    got = [m["distance"] for m in answer["matches"]]
    assert got == pytest.approx(sorted(d for _, d in expected), abs=1e-9)
    for match in answer["matches"]:  # each similarity is the cosine behind its distance
        d = match["distance"]
        cosine = 1.0 - d if case["metric"] is DistanceMetric.COSINE else 1.0 - d * d / 2
        assert match["similarity"] == pytest.approx(cosine, abs=1e-9)
    assert answer["best_match"] == answer["matches"][0]


@settings(max_examples=150, deadline=None)
@given(case=cases())
def test_verify_agrees_with_the_best_template_per_person(case: dict[str, Any]) -> None:
    request = VerifyInput(
        references=[Reference(i, r) for i, r in zip(case["ids"], case["refs"], strict=True)],
        probe=Probe(embedding=case["query"]),
        threshold=THRESHOLD,
    )
    no_model = ModelState(None, "not needed: the probe is an embedding")
    if case["zero"] is not None:
        with pytest.raises(ServiceError) as refused:
            verify(request, no_model, SETTINGS)
        assert refused.value.code is ErrorCode.INVALID_EMBEDDING
        return
    answer = verify(request, no_model, SETTINGS)
    best: dict[str, float] = {}
    for ref_id, ref in zip(case["ids"], case["refs"], strict=True):
        best[ref_id] = max(best.get(ref_id, -2.0), _cosine(case["query"], ref))
    order = sorted(best.values(), reverse=True)
    assert answer["similarity"] == pytest.approx(order[0], abs=1e-6)
    assert best[answer["best_match"]["id"]] == pytest.approx(order[0], abs=1e-6)
    assert answer["match"] is (order[0] >= THRESHOLD)
    if len(order) == 1:
        assert answer["runner_up"] is None and answer["margin"] is None and answer["ambiguous"] is False
    else:
        assert answer["margin"] == pytest.approx(order[0] - order[1], abs=2e-6)
        if abs(order[0] - order[1] - AMBIGUITY_MARGIN) > 1e-5:
            assert answer["ambiguous"] is (answer["match"] and order[0] - order[1] < AMBIGUITY_MARGIN)
