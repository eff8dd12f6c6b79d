"""Identification against a plain, obviously correct reference: every row
scored exactly, each person by their best template, excluded ids gone from the
snapshot but never from the inline references, the best ``top_k`` people, the
margin to the runner-up and the ambiguity. Hypothesis draws the galleries
(many people and few, several templates, the same vector under two ids) and
the requests; the exact search is built per example, the PQ one (1,100 rows,
indexed above 1,000) once, with requests drawn against it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from face_recognition_service.engine import ModelState
from face_recognition_service.gallery.build import build
from face_recognition_service.gallery.cache import GalleryCache
from face_recognition_service.matching import AMBIGUITY_MARGIN, encode_embedding
from face_recognition_service.usecases.identify import IdentifyInput, identify
from face_recognition_service.usecases.verify import Probe, Reference
from tests.support.galleries import write_jsonl
from tests.support.helpers import make_settings

TAG = "buffalo_sc/w600k_mbf@00000000"
NO_MODEL = ModelState(None, "not needed: probes are embeddings")
THRESHOLD = 0.3


def _unit(v: np.ndarray) -> np.ndarray:
    out: np.ndarray = v / np.linalg.norm(v)
    return out


def oracle(
    rows: list[tuple[str, np.ndarray]],
    probe: np.ndarray,
    inline: list[tuple[str, np.ndarray]],
    excluded: set[str],
    top_k: int,
) -> dict[str, Any]:
    best: dict[str, float] = {}
    for person, vector in rows:
        if person not in excluded:
            best[person] = max(best.get(person, -2.0), float(_unit(vector) @ probe))
    for person, vector in inline:
        best[person] = max(best.get(person, -2.0), float(_unit(vector) @ probe))
    order = sorted(best, key=lambda p: -best[p])
    top = best[order[0]] if order else None
    margin = top - best[order[1]] if len(order) > 1 and top is not None else None
    match = top is not None and top >= THRESHOLD
    return {
        "scores": best,
        "similarities": [best[p] for p in order[:top_k]],
        "match": match,
        "margin": margin,
        "ambiguous": bool(match and margin is not None and margin < AMBIGUITY_MARGIN),
    }


def _build(folder: Path, rows: list[tuple[str, np.ndarray]], exact_limit: int = 100_000) -> None:
    lines = [{"id": person, "embedding": encode_embedding(vector), "model": TAG} for person, vector in rows]
    folder.mkdir(parents=True, exist_ok=True)
    build(
        write_jsonl(folder / "g.jsonl", lines), folder / "g.frg", exact_limit=exact_limit, check_hygiene=False
    )


def _service(
    cache: GalleryCache,
    probe: np.ndarray,
    inline: list[tuple[str, np.ndarray]],
    excluded: set[str],
    top_k: int,
) -> dict[str, Any]:
    request = IdentifyInput(
        gallery="g.frg",
        probe=Probe(embedding=probe.astype(np.float64), model=TAG),
        references=[Reference(person, vector.astype(np.float64), TAG) for person, vector in inline],
        exclude_ids=frozenset(excluded),
        top_k=top_k,
        threshold=THRESHOLD,
    )
    return identify(request, NO_MODEL, make_settings(Path("/nonexistent")), cache)


def _agree(answer: dict[str, Any], expected: dict[str, Any]) -> None:
    got = [c["similarity"] for c in answer["candidates"]]
    assert got == pytest.approx(expected["similarities"], abs=2e-6)
    for candidate in answer["candidates"]:  # each id with its own best score (ties may swap ids)
        assert candidate["similarity"] == pytest.approx(expected["scores"][candidate["id"]], abs=2e-6)
    assert len({c["id"] for c in answer["candidates"]}) == len(answer["candidates"])
    assert answer["match"] is expected["match"]
    if expected["margin"] is None:
        assert answer["margin"] is None
    else:
        assert answer["margin"] == pytest.approx(expected["margin"], abs=4e-6)
    if expected["margin"] is None or abs(expected["margin"] - AMBIGUITY_MARGIN) > 1e-5:
        assert answer["ambiguous"] is expected["ambiguous"]
    assert (answer["identity"] is None) is (not expected["match"])


@st.composite
def galleries(draw: st.DrawFn) -> dict[str, Any]:
    """People with 1-3 templates each, some ids sharing another's exact vector,
    a probe near one template (or near nobody), exclusions and inline people."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    people = draw(st.integers(1, 25))
    rows: list[tuple[str, np.ndarray]] = []
    for p in range(people):
        centre = rng.normal(size=512)
        for _ in range(draw(st.integers(1, 3))):
            rows.append((f"p{p}", centre + 0.6 * rng.normal(size=512)))
    for d in range(draw(st.integers(0, 2))):  # the same vector enrolled under another id
        rows.append((f"twin{d}", rows[draw(st.integers(0, len(rows) - 1))][1].copy()))
    near = draw(st.one_of(st.none(), st.integers(0, len(rows) - 1)))
    probe = rng.normal(size=512) if near is None else rows[near][1] + 0.7 * rng.normal(size=512)
    ids = sorted({person for person, _ in rows})
    excluded = set(draw(st.lists(st.sampled_from([*ids, "nobody"]), max_size=4)))
    inline_ids = draw(st.lists(st.sampled_from([*ids[:3], "new0", "new1"]), max_size=3))
    if draw(st.booleans()):  # re-enrolment: the inline ids excluded from the snapshot
        excluded |= set(inline_ids)
    inline = [(person, _unit(probe) + 0.8 * rng.normal(size=512)) for person in inline_ids]
    return {
        "rows": rows,
        "probe": _unit(probe).astype(np.float32),
        "inline": inline,
        "excluded": excluded,
        "top_k": draw(st.integers(1, 12)),
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=galleries())
def test_exact_identification_agrees_with_the_reference(
    tmp_path_factory: pytest.TempPathFactory, case: Any
) -> None:
    folder = tmp_path_factory.mktemp("oracle")
    _build(folder, case["rows"])
    cache = GalleryCache(make_settings(folder, gallery_dir=folder).galleries)
    expected = oracle(case["rows"], case["probe"], case["inline"], case["excluded"], case["top_k"])
    if not expected["scores"]:
        return  # everyone excluded and nobody inline: no candidates at all (below)
    _agree(_service(cache, case["probe"], case["inline"], case["excluded"], case["top_k"]), expected)


@pytest.fixture(scope="module")
def pq_gallery(tmp_path_factory: pytest.TempPathFactory) -> tuple[GalleryCache, list[tuple[str, np.ndarray]]]:
    rng = np.random.default_rng(11)
    rows = [(f"p{i % 400}", rng.normal(size=512)) for i in range(1_100)]  # 400 people, 2-3 templates
    folder = tmp_path_factory.mktemp("oracle-pq")
    _build(folder, rows, exact_limit=1_000)  # the real rotation: this test is about what the index finds
    cache = GalleryCache(make_settings(folder, gallery_dir=folder, gallery_refresh_seconds=600).galleries)
    assert cache.get("g.frg").gallery.searcher.index is not None
    return cache, rows


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    near=st.integers(0, 1_099),
    noise=st.floats(0.3, 1.2),
    excluded=st.lists(st.integers(0, 399).map(lambda p: f"p{p}"), max_size=5),
    inline=st.lists(st.sampled_from(["p0", "p1", "new"]), max_size=2),
    top_k=st.integers(1, 10),
    seed=st.integers(0, 2**32 - 1),
)
def test_pq_identification_agrees_with_the_reference_for_probes_near_an_enrolled_person(
    pq_gallery: tuple[GalleryCache, list[tuple[str, np.ndarray]]],
    near: int,
    noise: float,
    excluded: list[str],
    inline: list[str],
    top_k: int,
    seed: int,
) -> None:
    """The index only proposes rows, so every similarity in the answer is the
    exact one, and for a probe of an enrolled person (the case its recall is
    measured on) the best is exact search's best. Among random strangers the
    rows behind it are near-ties that the codes may order otherwise: those
    candidates are a subset of the people, each with their exact score."""
    cache, rows = pq_gallery
    rng = np.random.default_rng(seed)
    probe = _unit(_unit(rows[near][1]) + noise / np.sqrt(512) * rng.normal(size=512)).astype(np.float32)
    refs = [(person, _unit(probe) + rng.normal(size=512) / np.sqrt(512)) for person in inline]
    expected = oracle(rows, probe, refs, set(excluded), top_k)
    answer = _service(cache, probe, refs, set(excluded), top_k)
    got = [c["similarity"] for c in answer["candidates"]]
    assert got == sorted(got, reverse=True) and len(got) == min(top_k, len(expected["scores"]))
    for candidate in answer["candidates"]:
        assert candidate["similarity"] == pytest.approx(expected["scores"][candidate["id"]], abs=2e-6)
    assert got[0] == pytest.approx(expected["similarities"][0], abs=2e-6)
    assert answer["match"] is expected["match"]
    if expected["margin"] is not None:  # a runner-up the codes missed can only widen the margin
        assert answer["margin"] >= expected["margin"] - 4e-6


def test_everyone_excluded_and_nobody_inline_is_no_match(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    rows = [("a", rng.normal(size=512)), ("b", rng.normal(size=512))]
    _build(tmp_path, rows)
    cache = GalleryCache(make_settings(tmp_path, gallery_dir=tmp_path).galleries)
    answer = _service(cache, _unit(rows[0][1]).astype(np.float32), [], {"a", "b"}, 5)
    assert answer["candidates"] == [] and answer["match"] is False and answer["identity"] is None
    assert answer["best_match"] is None and answer["margin"] is None
