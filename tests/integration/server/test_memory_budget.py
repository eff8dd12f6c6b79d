"""The memory budget of one request: the worst images the default limits admit
(MAX_IMAGE_PIXELS 60 MP, DECODE_BUDGET_MB 192) keep the process under 600 MB
with buffalo_sc (measured in a child process),
and images past the decode budget are refused from the header alone."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from face_recognition_service.config import Settings
from face_recognition_service.errors import ErrorCode, ServiceError
from face_recognition_service.imaging import (
    DEFAULT_DECODE_BUDGET,
    ImageFormat,
    ImageInfo,
    decode_image,
    reduction,
)
from tests.support.helpers import encode, read, run_child

TARGET_MB = 600
_DEFAULTS = Settings(_env_file=None)  # type: ignore[call-arg]
SIDE_MAX_PIXELS = int(_DEFAULTS.max_image_pixels**0.5)  # 7,745: MAX_IMAGE_PIXELS (60 MP)


def largest_side(**kind: Any) -> int:
    """The largest square of this kind the default limits admit, from the same
    header arithmetic the service uses (ImageInfo.working_bytes)."""
    low, high = 64, SIDE_MAX_PIXELS
    while low < high:
        side = (low + high + 1) // 2
        info = ImageInfo(width=side, height=side, **kind)
        reduce = reduction(info, _DEFAULTS.det_size)
        fits = info.working_bytes(reduce) <= DEFAULT_DECODE_BUDGET
        low, high = (side, high) if fits else (low, side - 1)
    return low


SIDE_RGBA8 = largest_side(format=ImageFormat.PNG, has_alpha=True)


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
    side = largest_side(format=ImageFormat.PNG, has_alpha=True, sixteen_bit=True)
    canvas = np.zeros((side, side, 4), np.uint16)
    canvas[..., 3] = 40000
    return encode(_with_face(canvas), ".png", [cv2.IMWRITE_PNG_COMPRESSION, 1])


def rgb16_at_budget() -> bytes:
    side = largest_side(format=ImageFormat.PNG, has_alpha=False, sixteen_bit=True)
    canvas = np.full((side, side, 3), 30000, np.uint16)
    return encode(_with_face(canvas), ".png", [cv2.IMWRITE_PNG_COMPRESSION, 1])


def jpeg_at_pixel_limit() -> bytes:
    canvas = np.full((SIDE_MAX_PIXELS, SIDE_MAX_PIXELS, 3), 90, np.uint8)
    return encode(_with_face(canvas), ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 80])


def _pil_jpeg(side: int, mode: str, **options: Any) -> bytes:
    canvas = _with_face(np.full((side, side, 3), 90, np.uint8))
    image = Image.fromarray(cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)).convert(mode)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80, **options)
    return out.getvalue()


def progressive_444_jpeg_at_budget() -> bytes:
    side = largest_side(format=ImageFormat.JPEG, has_alpha=False, progressive=True, samples_per_pixel=3.0)
    return _pil_jpeg(side, "RGB", progressive=True, subsampling=0)


def cmyk_jpeg_at_budget() -> bytes:
    side = largest_side(format=ImageFormat.JPEG, has_alpha=False, components=4, samples_per_pixel=4.0)
    return _pil_jpeg(side, "CMYK")


def progressive_cmyk_jpeg_at_budget() -> bytes:
    side = largest_side(
        format=ImageFormat.JPEG, has_alpha=False, components=4, progressive=True, samples_per_pixel=4.0
    )
    return _pil_jpeg(side, "CMYK", progressive=True)


def rgba_webp_at_budget() -> bytes:
    side = largest_side(format=ImageFormat.WEBP, has_alpha=True)
    canvas = np.zeros((side, side, 4), np.uint8)
    canvas[..., 3] = 128
    return encode(_with_face(canvas), ".webp", [cv2.IMWRITE_WEBP_QUALITY, 101])


def child_peak(model_dir: Path, image: Path) -> dict[str, object]:
    result: dict[str, object] = run_child(
        "tests.support.memory_child", str(model_dir), str(image), timeout=180
    )
    return result


@pytest.mark.parametrize(
    "make",
    [
        rgba8_at_budget,
        rgba16_at_budget,
        rgb16_at_budget,
        jpeg_at_pixel_limit,
        progressive_444_jpeg_at_budget,
        cmyk_jpeg_at_budget,
        progressive_cmyk_jpeg_at_budget,
        rgba_webp_at_budget,
    ],
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


def test_a_progressive_cmyk_jpeg_at_the_pixel_limit_is_refused_from_its_header() -> None:
    """Reliability III, finding 5: it peaked at 784 MB; its coefficients alone
    need 8 bytes a pixel. Refused before any pixel is decoded."""
    small = io.BytesIO()
    Image.new("CMYK", (64, 64)).save(small, "JPEG", progressive=True)
    data = bytearray(small.getvalue())
    sof = data.index(b"\xff\xc2")
    data[sof + 5 : sof + 9] = SIDE_MAX_PIXELS.to_bytes(2, "big") * 2
    with pytest.raises(ServiceError) as caught:
        decode_image(bytes(data), _DEFAULTS.max_image_pixels)
    assert caught.value.code is ErrorCode.IMAGE_TOO_LARGE
    assert "progressive" in (caught.value.detail or "") and "CMYK" in (caught.value.detail or "")
