"""Identification's decisions on small built galleries, by embedding (no
model needed): the snapshot's hash covers every field it names, the builder
stores unit rows whatever it is given, and ``top_k: 1`` still weighs the
runner-up for the margin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from face_recognition_service.engine import ModelState
from face_recognition_service.errors import ErrorCode, ServiceError
from face_recognition_service.gallery.build import build
from face_recognition_service.gallery.cache import GalleryCache
from face_recognition_service.gallery.format import open_snapshot
from face_recognition_service.matching import AMBIGUITY_MARGIN, encode_embedding
from face_recognition_service.usecases.identify import IdentifyInput, identify
from face_recognition_service.usecases.verify import Probe
from tests.support.galleries import write_jsonl
from tests.support.helpers import make_settings

TAG = "buffalo_sc/w600k_mbf@00000000"
NO_MODEL = ModelState(None, "not needed: probes are embeddings")


def _unit(v: np.ndarray) -> np.ndarray:
    out: np.ndarray = v / np.linalg.norm(v)
    return out


def _gallery(folder: Path, rows: dict[str, np.ndarray]) -> Path:
    lines = [{"id": i, "embedding": encode_embedding(v), "model": TAG} for i, v in rows.items()]
    folder.mkdir(exist_ok=True)
    build(write_jsonl(folder / "g.jsonl", lines), folder / "g.frg", check_hygiene=False)
    return folder / "g.frg"


def _ask(folder: Path, probe: np.ndarray, **request: Any) -> dict[str, Any]:
    settings = make_settings(folder, gallery_dir=folder)
    cache = GalleryCache(settings.galleries)
    asked = IdentifyInput(
        gallery="g.frg", probe=Probe(embedding=probe.astype(np.float64), model=TAG), **request
    )
    return identify(asked, NO_MODEL, settings, cache)


def test_top_k_one_still_weighs_the_runner_up(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    alice = _unit(rng.normal(size=512))
    twin = _unit(alice + 0.02 * _unit(rng.normal(size=512)))
    others = {f"p{i}": _unit(rng.normal(size=512)) for i in range(20)}
    _gallery(tmp_path, {"alice": alice, "twin": twin, **others})
    answer = _ask(tmp_path, alice, top_k=1)
    assert [c["id"] for c in answer["candidates"]] == ["alice"]
    assert answer["margin"] == pytest.approx(float(alice @ alice - alice @ twin), abs=2e-6)
    assert 0 < answer["margin"] < AMBIGUITY_MARGIN and answer["ambiguous"] is True


def test_the_builder_stores_unit_rows_whatever_length_it_is_given(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    alice = rng.normal(size=512) * 3.0  # length ~68
    path = _gallery(tmp_path, {"alice": alice, "bob": rng.normal(size=512) * 0.01})
    rows = open_snapshot(path).vectors
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-6)
    answer = _ask(tmp_path, _unit(alice))
    assert answer["identity"] == "alice" and answer["candidates"][0]["similarity"] == pytest.approx(
        1.0, abs=1e-5
    )


def test_the_snapshot_hash_covers_its_model_tag(tmp_path: Path) -> None:
    """A header whose model is rewritten (here to another pack's tag of the
    same length) no longer matches the hash: the file is refused, never read
    as another model's gallery."""
    path = _gallery(tmp_path, {"alice": _unit(np.arange(1.0, 513.0))})
    data = path.read_bytes()
    forged = TAG.replace("buffalo_sc/w600k_mbf", "buffalo_l/w600k_r500")
    assert len(forged) == len(TAG) and data.count(TAG.encode()) == 1
    path.write_bytes(data.replace(TAG.encode(), forged.encode()))
    with pytest.raises(ServiceError) as refused:
        open_snapshot(path)
    assert refused.value.code is ErrorCode.INVALID_GALLERY
    assert refused.value.detail == "The snapshot's content does not match its hash (a damaged file)."
    assert orjson.loads(data[16 : 16 + int.from_bytes(data[8:16], "little")])["model"] == TAG
