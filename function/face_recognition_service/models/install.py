"""Install a pack into a model folder, and verify what is there.

Every install is checked: both files load in ONNX Runtime and have the input
and output shapes the engine expects. A pack is fetched into a staging folder
beside its target and swapped in only after that check, so a failed or
interrupted install never leaves a half-written pack behind and removes
nothing that worked before.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ..engine import Detector, ModelLoadError, Recognizer
from ..engine.graph import open_rewritten
from .catalogue import PackError, get_pack
from .sources import fetch
from .tag import model_tag

EMBEDDING_SIZE = 512


def verify(pack_dir: Path) -> dict[str, object]:
    """Load both files and check their shapes; returns a short description.
    Both are loaded as the service runs them on the CPU: their rewritten graphs
    (``engine.graph``), written beside them here if they are not there yet, so
    an image built with this check carries them."""
    pack = get_pack(pack_dir.name)
    cpu = ["CPUExecutionProvider"]
    try:
        detector = Detector(open_rewritten(pack_dir / pack.detector, cpu, 1))
        recognizer = Recognizer(open_rewritten(pack_dir / pack.recognizer, cpu, 1))
    except ModelLoadError as exc:
        raise PackError(str(exc)) from exc
    size = recognizer.session.get_outputs()[0].shape[-1]
    if size != EMBEDDING_SIZE:
        raise PackError(f"{pack.recognizer} gives {size}-d embeddings, expected {EMBEDDING_SIZE}")
    return {
        "model": model_tag(pack_dir, pack),
        "detector": pack.detector,
        "strides": list(detector.strides),
        "recognizer": pack.recognizer,
        "input": recognizer.size,
        "embedding_size": size,
    }


def install(
    name: str, model_dir: Path, source: str = "auto", timeout: float = 60.0, force: bool = False
) -> tuple[Path, bool]:
    """Install (or find already installed and verified) a pack; returns its
    folder and whether anything was installed (False: it was already there)."""
    pack = get_pack(name)
    target = model_dir.expanduser() / name
    if not force and all((target / f).is_file() for f in pack.files):
        try:
            verify(target)
            return target, False
        except PackError:
            pass  # broken install: install again below
    model_dir.expanduser().mkdir(parents=True, exist_ok=True)
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


def provision(
    name: str, model_dir: Path, source: str = "auto", timeout: float = 60.0, force: bool = False
) -> Path:
    """``install``, returning only the pack's folder."""
    return install(name, model_dir, source, timeout, force)[0]
