"""Model identity: the tag names the pack and the recogniser file's hash, is the
same across restarts, and changes when the recogniser file changes."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import onnx
import pytest

from face_recognition_service.engine import FaceEngine
from face_recognition_service.models import MODEL_PACKS, file_digest, model_tag
from tests.support.helpers import copy_pack


def test_tag_is_stable_across_loads(model_dir: Path) -> None:
    first = FaceEngine.load(model_dir / "buffalo_sc").model_tag
    second = FaceEngine.load(model_dir / "buffalo_sc").model_tag
    assert first == second
    assert re.fullmatch(r"buffalo_sc/w600k_mbf@[0-9a-f]{8}", first)


def test_tag_changes_with_the_recogniser_file(model_dir: Path, tmp_path: Path) -> None:
    pack = tmp_path / "buffalo_sc"
    shutil.copytree(model_dir / "buffalo_sc", pack)
    before = model_tag(pack, MODEL_PACKS["buffalo_sc"])
    # The same network with one more metadata entry: other bytes, still loadable.
    recogniser = pack / "w600k_mbf.onnx"
    proto = onnx.load(str(recogniser))
    proto.metadata_props.add(key="retrained", value="yes")
    onnx.save(proto, str(recogniser))
    after = FaceEngine.load(pack).model_tag
    assert after != before and after.startswith("buffalo_sc/w600k_mbf@")


def test_digest_cache_is_used_and_refreshed(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"one")
    first = file_digest(path)
    assert (tmp_path / ".model.onnx.sha256.json").is_file()
    assert file_digest(path) == first
    path.write_bytes(b"two, longer")
    assert file_digest(path) != first


def test_read_only_model_folder_still_gets_a_tag(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pack = copy_pack(model_dir, tmp_path)

    def refuse(self: Path, *args: object, **kwargs: object) -> int:
        raise PermissionError(f"read-only: {self}")  # as on a Lambda image (root ignores chmod here)

    monkeypatch.setattr(Path, "write_text", refuse)
    assert model_tag(pack, MODEL_PACKS["buffalo_sc"]) == model_tag(
        model_dir / "buffalo_sc", MODEL_PACKS["buffalo_sc"]
    )
    assert not (pack / ".w600k_mbf.onnx.sha256.json").exists()
