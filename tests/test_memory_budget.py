"""The memory budget of one request: the worst images the default limits admit
(MAX_IMAGE_PIXELS 60 MP, DECODE_BUDGET_MB 192) keep the process under 600 MB
with buffalo_sc (measured in a child process),
and images past the decode budget are refused from the header alone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from face_recognition_service.config import Settings
from face_recognition_service.errors import ErrorCode, ServiceError
from face_recognition_service.imaging import DEFAULT_DECODE_BUDGET, decode_image

from .helpers import encode, read, run_child

TARGET_MB = 600
_DEFAULTS = Settings(_env_file=None)  # type: ignore[call-arg]
# The largest square each kind of image may be under the default limits.
SIDE_MAX_PIXELS = int(_DEFAULTS.max_image_pixels**0.5)  # 7,745: MAX_IMAGE_PIXELS (60 MP)
SIDE_RGBA8 = int(
    min(_DEFAULTS.max_image_pixels, DEFAULT_DECODE_BUDGET / 4) ** 0.5
)  # 7,094: the decode budget


def _with_face(canvas: np.ndarray) -> np.ndarray:
    """A real face pasted into a large, mostly flat canvas (so the file stays small)."""
    face = cv2.imdecode(np.frombuffer(read("obama_1.jpg"), np.uint8), cv2.IMREAD_COLOR)
    assert face is not None
    h, w = face.shape[:2]
    if canvas.shape[2] == 4:
        face = cv2.cvtColor(face, cv2.COLOR_BGR2BGRA)
    if canvas.dtype == np.uint16:
        face = face.astype(np.uint16) * 257
    canvas[100 : 100 + h, 100 : 100 + w] = face
    return canvas


def rgba8_at_budget() -> bytes:
    canvas = np.zeros((SIDE_RGBA8, SIDE_RGBA8, 4), np.uint8)
    canvas[..., 3] = 128
    return encode(_with_face(canvas), ".png", [cv2.IMWRITE_PNG_COMPRESSION, 1])


def rgba16_at_budget() -> bytes:
    side = int((DEFAULT_DECODE_BUDGET / 8) ** 0.5)  # 8 bytes a pixel: the largest admitted
    canvas = np.zeros((side, side, 4), np.uint16)
    canvas[..., 3] = 40000
    return encode(_with_face(canvas), ".png", [cv2.IMWRITE_PNG_COMPRESSION, 1])


def rgb16_at_pixel_limit() -> bytes:
    canvas = np.full((SIDE_MAX_PIXELS, SIDE_MAX_PIXELS, 3), 30000, np.uint16)
    return encode(_with_face(canvas), ".png", [cv2.IMWRITE_PNG_COMPRESSION, 1])


def jpeg_at_pixel_limit() -> bytes:
    canvas = np.full((SIDE_MAX_PIXELS, SIDE_MAX_PIXELS, 3), 90, np.uint8)
    return encode(_with_face(canvas), ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 80])


def child_peak(model_dir: Path, image: Path) -> dict[str, object]:
    result: dict[str, object] = run_child("tests.memory_child", str(model_dir), str(image), timeout=180)
    return result


@pytest.mark.parametrize(
    "make",
    [rgba8_at_budget, rgba16_at_budget, rgb16_at_pixel_limit, jpeg_at_pixel_limit],
    ids=lambda f: f.__name__,
)
def test_worst_admitted_images_stay_under_the_target(
    make: Callable[[], bytes], model_dir: Path, tmp_path: Path
) -> None:
    image = tmp_path / "worst.img"
    image.write_bytes(make())
    result = child_peak(model_dir, image)
    print(make.__name__, result)
    assert result["outcome"] == "embedded", result
    assert float(str(result["peak_mb"])) < TARGET_MB, result


def test_past_the_decode_budget_is_refused_before_decoding() -> None:
    # 16-bit RGBA at 40 MP would decode to 305 MiB: refused from its header.
    header_only = np.zeros((8, 8, 4), np.uint16)
    data = bytearray(encode(header_only, ".png"))
    data[16:24] = (6320).to_bytes(4, "big") * 2  # IHDR width, height (the CRC is not checked first)
    with pytest.raises(ServiceError) as caught:
        decode_image(bytes(data), _DEFAULTS.max_image_pixels)
    assert caught.value.code is ErrorCode.IMAGE_TOO_LARGE
    assert "MiB" in (caught.value.detail or "")


def test_alpha_is_composited_on_white_exactly() -> None:
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[0, :, :3], rgba[0, :, 3] = (10, 200, 90), 255  # opaque
    rgba[1, :, :3], rgba[1, :, 3] = (10, 200, 90), 0  # transparent: white
    rgba[2, :, :3], rgba[2, :, 3] = (0, 0, 0), 128  # half: mid grey
    out = decode_image(encode(rgba, ".png"), 1_000)
    assert out[0, 0].tolist() == [10, 200, 90]
    assert out[1, 0].tolist() == [255, 255, 255]
    assert out[2, 0].tolist() == [127, 127, 127]
