"""Provisioning installs exactly the two files and checks them."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from face_recognition_service.provision import ProvisionError, main, provision, verify


def test_buffalo_sc_offline_from_the_package(tmp_path: Path) -> None:
    target = provision("buffalo_sc", tmp_path)
    assert sorted(p.name for p in target.iterdir() if not p.name.startswith(".")) == [
        "det_500m.onnx",
        "w600k_mbf.onnx",
    ]
    assert verify(target)["embedding_size"] == 512
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging left behind"


def test_idempotent(tmp_path: Path) -> None:
    first = provision("buffalo_sc", tmp_path)
    mtime = (first / "w600k_mbf.onnx").stat().st_mtime_ns
    assert provision("buffalo_sc", tmp_path) == first
    assert (first / "w600k_mbf.onnx").stat().st_mtime_ns == mtime


def test_broken_install_is_repaired(tmp_path: Path) -> None:
    target = provision("buffalo_sc", tmp_path)
    good = hashlib.sha256((target / "det_500m.onnx").read_bytes()).hexdigest()
    (target / "det_500m.onnx").write_bytes(b"truncated")
    with pytest.raises(Exception, match="det_500m"):
        verify(target)  # the damage is seen ...
    provision("buffalo_sc", tmp_path)
    verify(target)  # ... and repaired: the same file as before
    assert hashlib.sha256((target / "det_500m.onnx").read_bytes()).hexdigest() == good


def test_from_a_zip_like_the_model_zoo(tmp_path: Path, model_dir: Path) -> None:
    archive = tmp_path / "buffalo_sc.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # the zoo's zips hold extra models; they are skipped
        zf.write(model_dir / "buffalo_sc" / "det_500m.onnx", "buffalo_sc/det_500m.onnx")
        zf.write(model_dir / "buffalo_sc" / "w600k_mbf.onnx", "buffalo_sc/w600k_mbf.onnx")
        zf.writestr("buffalo_sc/1k3d68.onnx", b"landmarks we never load")
    target = provision("buffalo_sc", tmp_path / "models", source=str(archive))
    assert sorted(p.name for p in target.iterdir() if not p.name.startswith(".")) == [
        "det_500m.onnx",
        "w600k_mbf.onnx",
    ]


def test_wrong_model_fails_verification_and_leaves_nothing(tmp_path: Path, model_dir: Path) -> None:
    fake = tmp_path / "src"
    fake.mkdir()
    # Swap the roles: the recogniser where the detector should be.
    (fake / "det_500m.onnx").write_bytes((model_dir / "buffalo_sc" / "w600k_mbf.onnx").read_bytes())
    (fake / "w600k_mbf.onnx").write_bytes((model_dir / "buffalo_sc" / "w600k_mbf.onnx").read_bytes())
    with pytest.raises(ProvisionError, match="detector has 1 outputs"):
        provision("buffalo_sc", tmp_path / "models", source=str(fake))
    assert not (tmp_path / "models" / "buffalo_sc").exists()


def test_unknown_pack_and_source(tmp_path: Path) -> None:
    with pytest.raises(ProvisionError, match="unknown model pack"):
        provision("buffalo_xxl", tmp_path)
    with pytest.raises(ProvisionError, match="neither"):
        provision("buffalo_l", tmp_path, source=str(tmp_path / "missing.zip"))


def test_zoo_download_failure_is_clear(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("face_recognition_service.models.sources.ZOO_URL", "http://127.0.0.1:9/{name}.zip")
    assert main(["buffalo_l", "--model-dir", str(tmp_path), "--timeout", "2"]) == 1
    err = capsys.readouterr().err
    assert "could not download" in err and "--source" in err


def test_buffalo_l_layout_from_a_zoo_shaped_zip(tmp_path: Path, model_dir: Path) -> None:
    """buffalo_l cannot be downloaded on this machine, so this checks its *layout*
    only: buffalo_sc's networks under buffalo_l's file names, in a zip shaped like
    the model zoo's (files at the root, three models the service must skip).
    Provisioning, loading and serving then take the same path buffalo_l takes."""
    from face_recognition_service.engine import load_model
    from face_recognition_service.imaging import decode_image
    from tests.support.helpers import make_settings, read

    archive = tmp_path / "buffalo_l.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(model_dir / "buffalo_sc" / "det_500m.onnx", "det_10g.onnx")
        zf.write(model_dir / "buffalo_sc" / "w600k_mbf.onnx", "w600k_r50.onnx")
        for extra in ("1k3d68.onnx", "2d106det.onnx", "genderage.onnx"):
            zf.writestr(extra, b"landmark and attribute models are never installed")
    target = provision("buffalo_l", tmp_path / "models", source=str(archive))
    assert sorted(p.name for p in target.iterdir() if not p.name.startswith(".")) == [
        "det_10g.onnx",
        "w600k_r50.onnx",
    ]
    state = load_model(make_settings(tmp_path / "models", model_name="buffalo_l").engine, warm_up=False)
    assert state.engine is not None and state.engine.model_name == "buffalo_l"
    face = state.engine.embed_single(decode_image(read("obama_1.jpg"), 40_000_000))
    assert face.embedding.shape == (512,)


def test_cli_verify_only(tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["buffalo_sc", "--model-dir", str(model_dir), "--verify-only"]) == 0
    assert "verified" in capsys.readouterr().out
    assert main(["buffalo_sc", "--model-dir", str(tmp_path), "--verify-only"]) == 1
    assert main(["buffalo_xxl", "--model-dir", str(model_dir), "--verify-only"]) == 1
    assert "does not exist" in capsys.readouterr().err
