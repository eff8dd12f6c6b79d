"""Shared test helpers: the labelled photos and ways to build test images."""

from __future__ import annotations

import base64
import json
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from face_recognition_service.config import Settings
from face_recognition_service.errors import ServiceError
from face_recognition_service.testing import (
    LabelledPhoto,
    labelled_photos,
    no_face_image,
    png_chunk,
    png_header_only,
)

__all__ = ["no_face_image", "png_chunk", "png_header_only"]

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
FACES = DATA / "faces"


def run_child(module: str, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Any:
    """Run ``python -m module args`` from the repository root; it must succeed.
    Returns the JSON of its last line of output (the child scripts' report)."""
    child = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    return json.loads(child.stdout.strip().splitlines()[-1])


Photo = LabelledPhoto


def photos() -> list[LabelledPhoto]:
    return labelled_photos(FACES)


def single_face_photos() -> list[LabelledPhoto]:
    return labelled_photos(FACES, single_face=True)


def b64(data: bytes, mime: str | None = "image/jpeg") -> str:
    text = base64.b64encode(data).decode()
    return f"data:{mime};base64,{text}" if mime else text


def read(name: str) -> bytes:
    return (FACES / name).read_bytes()


def encode(image: np.ndarray, ext: str, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, image, params or [])
    assert ok, ext
    return buf.tobytes()


def with_exif_orientation(jpeg: bytes, orientation: int, order: str = ">") -> bytes:
    """The JPEG with an APP1 EXIF segment holding only the Orientation tag, in
    big-endian ("MM", ``order=">"``) or little-endian ("II", ``order="<"``) TIFF."""
    assert jpeg[:2] == b"\xff\xd8"
    tiff = (b"MM\x00*" if order == ">" else b"II*\x00") + struct.pack(order + "I", 8)
    tiff += (
        struct.pack(order + "H", 1)
        + struct.pack(order + "HHIHH", 0x0112, 3, 1, orientation, 0)
        + struct.pack(order + "I", 0)
    )
    payload = b"Exif\x00\x00" + tiff
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + segment + jpeg[2:]


def refused(fn: Callable[..., object], *args: object, **kwargs: object) -> dict[str, str | None]:
    """The error (as the service's JSON gives it) that ``fn(*args, **kwargs)`` raises."""
    with pytest.raises(ServiceError) as raised:
        fn(*args, **kwargs)
    return raised.value.to_dict()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "error_code", "detail"}, body
    assert body["error_code"] == code
    assert isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in response.text
    return body  # type: ignore[no-any-return]


def vec(*head: float) -> list[float]:
    """An embedding-sized (512) vector that starts with ``head``, zeros after:
    the service takes vectors of its models' length only."""
    return [*head, *[0.0] * (512 - len(head))]


def copy_pack(model_dir: Path, folder: Path) -> Path:
    """The buffalo_sc pack's two files, copied into ``folder``/buffalo_sc."""
    from face_recognition_service.models import MODEL_PACKS

    pack = folder / "buffalo_sc"
    pack.mkdir()
    for name in MODEL_PACKS["buffalo_sc"].files:
        shutil.copy(model_dir / "buffalo_sc" / name, pack / name)
    return pack


def make_settings(model_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"model_dir": model_dir, "model_name": "buffalo_sc", "ort_threads": 2}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type,call-arg]


def chromium() -> str | None:
    """A Chromium to drive with Playwright (Debian's `chromium`; CHROMIUM names another)."""
    import os

    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and (path := shutil.which(name)):
            return path
    return None
