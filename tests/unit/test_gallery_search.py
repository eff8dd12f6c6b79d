"""The binary index proposes the rows exact search would rank first; a damaged
index is refused; a 0.3.0 snapshot (usearch index) is still searched, exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from face_recognition_service.errors import ErrorCode, ServiceError
from face_recognition_service.gallery import search
from face_recognition_service.gallery.format import open_snapshot, write_snapshot
from face_recognition_service.gallery.search import (
    CANDIDATES,
    AsymmetricRanker,
    Searcher,
    binary_index,
)

COUNT = 20_000


def unit(rows: np.ndarray) -> np.ndarray:
    out: np.ndarray = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    return out


@pytest.fixture(scope="module")
def gallery() -> np.ndarray:
    return unit(np.random.default_rng(7).standard_normal((COUNT, 512)))


def probes_near(gallery: np.ndarray, similarity: float, n: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Probes at ``similarity`` to random rows: new photos of enrolled people."""
    rng = np.random.default_rng(int(similarity * 100))
    rows = rng.choice(len(gallery), n, replace=False)
    noise = rng.standard_normal((n, 512))
    noise -= (noise * gallery[rows]).sum(axis=1, keepdims=True) * gallery[rows]
    return rows, unit(similarity * gallery[rows] + np.sqrt(1 - similarity**2) * unit(noise))


def snapshot(path: Path, gallery: np.ndarray, blob: bytes | None, info: dict[str, object] | None) -> Path:
    ids = [f"p{i}" for i in range(len(gallery))]
    write_snapshot(path, model="m", ids=ids, vectors=gallery, built_at="t", index_blob=blob, index_info=info)
    return path


def test_binary_index_finds_the_exact_top_five(tmp_path: Path, gallery: np.ndarray) -> None:
    path = snapshot(tmp_path / "g.frg", gallery, *binary_index(gallery))
    searcher = Searcher(open_snapshot(path))
    assert searcher.index is not None
    for similarity in (0.95, 0.6, 0.45):
        rows, probes = probes_near(gallery, similarity)
        exact = unit(probes) @ gallery.T
        for probe, row, hits, scores in zip(probes, rows, searcher.nearest(probes, 5), exact, strict=True):
            assert hits.rows[0] == row == scores.argmax()  # the enrolled person's own row first
            # Past it, strangers (random rows at ~0.0 +- 0.044): codes rank those
            # only roughly, and no threshold is that low; a stranger in the
            # answer is never better than exact search's at its rank, and a
            # close stranger all the same.
            best = np.sort(scores)[::-1][:5]
            assert np.all(hits.similarities <= best + 1e-6) and np.all(hits.similarities > 0.05)
            np.testing.assert_allclose(hits.similarities, gallery[hits.rows] @ probe, rtol=0, atol=1e-6)


def test_more_results_than_candidates_are_all_exact(tmp_path: Path, gallery: np.ndarray) -> None:
    path = snapshot(tmp_path / "g.frg", gallery, *binary_index(gallery))
    _, probes = probes_near(gallery, 0.6, n=1)
    hits = Searcher(open_snapshot(path)).nearest(probes, CANDIDATES + 500)[0]
    assert len(hits.rows) == CANDIDATES + 500 == len(set(hits.rows.tolist()))
    assert np.all(np.diff(hits.similarities) <= 0)


def test_a_damaged_index_is_invalid_gallery(tmp_path: Path, gallery: np.ndarray) -> None:
    path = snapshot(tmp_path / "g.frg", gallery, *binary_index(gallery))
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # inside the codes, past the vectors and ids
    path.write_bytes(bytes(data))
    with pytest.raises(ServiceError) as raised:
        open_snapshot(path)
    assert raised.value.code is ErrorCode.INVALID_GALLERY and "index" in (raised.value.detail or "")


def test_a_snapshot_with_0_3_0_s_usearch_index_is_searched_exactly(
    tmp_path: Path, gallery: np.ndarray
) -> None:
    small = gallery[:3000]
    path = snapshot(tmp_path / "old.frg", small, b"\1" * 4096, {"kind": "usearch", "connectivity": 32})
    searcher = Searcher(open_snapshot(path))
    assert searcher.index is None
    rows, probes = probes_near(small, 0.3, n=20)
    for hits, scores in zip(searcher.nearest(probes, 3), probes @ small.T, strict=True):
        assert hits.rows.tolist() == np.argsort(-scores, kind="stable")[:3].tolist()


def test_an_unknown_index_kind_is_invalid_gallery(tmp_path: Path, gallery: np.ndarray) -> None:
    path = snapshot(tmp_path / "x.frg", gallery[:100], b"\0" * 64, {"kind": "ivf"})
    with pytest.raises(ServiceError) as raised:
        open_snapshot(path)
    assert raised.value.code is ErrorCode.INVALID_GALLERY


def test_the_asymmetric_ranking_finds_what_hamming_alone_misses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Face-like vectors (a 164-dimensional subspace: strangers spread as real
    people do) and poor photos at cosine 0.45, with the shortlist and the rows
    re-scored scaled down to this gallery (1,000,000 / 4,096 / 256 as 20,000 /
    512 / 8). Choosing the re-scored rows by Hamming distance alone misses some
    of the enrolled people; choosing them by the probe's projections finds all."""
    monkeypatch.setattr(search, "CANDIDATES", 8)
    monkeypatch.setattr(search, "SHORTLIST", 512)
    rng = np.random.default_rng(11)
    basis = np.linalg.qr(rng.standard_normal((512, 164)))[0].T
    faces = unit(rng.standard_normal((COUNT, 164)) @ basis)
    rows = rng.choice(COUNT, 200, replace=False)
    noise = rng.standard_normal((200, 164)) @ basis
    noise -= (noise * faces[rows]).sum(axis=1, keepdims=True) * faces[rows]
    probes = unit(0.45 * faces[rows] + np.sqrt(1 - 0.45**2) * unit(noise))
    assert np.array_equal((probes @ faces.T).argmax(axis=1), rows)  # exact search finds each one
    searcher = Searcher(open_snapshot(snapshot(tmp_path / "f.frg", faces, *binary_index(faces))))
    assert searcher.index is not None
    found = [hits.rows[0] for hits in searcher.nearest(probes, 1)]
    assert np.array_equal(found, rows)
    planes, codes = searcher.index.planes, searcher.index.codes
    missed = 0
    for row, code in zip(rows, search.codes_of(probes, planes), strict=True):
        hamming = np.bitwise_count(codes ^ code).sum(axis=1, dtype=np.int64)
        missed += row not in np.argsort(hamming, kind="stable")[:8]
    assert missed >= 4  # 2 % of them: the scaled-down case of 93 % recall at 1,000,000


def test_the_asymmetric_ranking_sums_the_projections_over_each_rows_set_bits() -> None:
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 256, (300, 64), dtype=np.uint8)
    projections = rng.standard_normal(512).astype(np.float32)
    bits = np.unpackbits(codes, axis=1).astype(np.float64)  # bit j of a row is element j of the vector
    expected = bits @ projections
    ranker = AsymmetricRanker(512)
    rows, scores = ranker.best(projections, codes, 40)
    np.testing.assert_array_equal(rows, np.argsort(-expected, kind="stable")[:40])
    np.testing.assert_allclose(scores, expected[rows], rtol=0, atol=1e-4)
    every, _ = ranker.best(projections, codes, 1000)  # more asked for than there are
    assert sorted(every.tolist()) == list(range(300))
    none, _ = ranker.best(projections, codes[:0], 5)
    assert len(none) == 0


def test_a_face_enrolled_thousands_of_times_keeps_the_shortlist_bounded(
    tmp_path: Path, gallery: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """3,000 identical rows: all of them lie within the radius (0), more than
    four shortlists; the nearest SHORTLIST are kept and the answer is exact."""
    monkeypatch.setattr(search, "SHORTLIST", 256)
    rows = gallery.copy()
    copies = np.random.default_rng(5).choice(COUNT, 3000, replace=False)
    rows[copies] = rows[0]
    searcher = Searcher(open_snapshot(snapshot(tmp_path / "d.frg", rows, *binary_index(rows))))
    hits = searcher.nearest(rows[:1], 5)[0]
    assert set(hits.rows.tolist()) <= set(copies.tolist()) | {0}
    np.testing.assert_allclose(hits.similarities, 1.0, atol=1e-5)
    _, probes = probes_near(rows, 0.6, n=20)
    for hits, scores in zip(searcher.nearest(probes, 1), probes @ rows.T, strict=True):
        assert hits.similarities[0] == pytest.approx(scores.max(), abs=1e-5)


def test_more_results_than_the_shortlist_come_from_the_nearest_codes(
    tmp_path: Path, gallery: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search, "SHORTLIST", 512)
    searcher = Searcher(open_snapshot(snapshot(tmp_path / "g.frg", gallery, *binary_index(gallery))))
    rows, probes = probes_near(gallery, 0.6, n=3)
    for row, hits in zip(rows, searcher.nearest(probes, 3000), strict=True):
        assert len(hits.rows) == 3000 == len(set(hits.rows.tolist()))
        assert hits.rows[0] == row and np.all(np.diff(hits.similarities) <= 0)
