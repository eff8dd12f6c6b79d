"""Whatever bytes a caller sends, decoding ends in an image or a ServiceError:
never another exception (which would be a 500), never a hang."""

from __future__ import annotations

import base64

import cv2
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from face_recognition_service.errors import ServiceError
from face_recognition_service.imaging import decode_base64_image, decode_image
from tests.support.helpers import encode

_SEED = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
VALID = [encode(_SEED, ext) for ext in (".jpg", ".png", ".webp", ".bmp")]
VALID.append(encode(cv2.cvtColor(_SEED, cv2.COLOR_BGR2BGRA), ".png"))


def _decode(data: bytes) -> None:
    try:
        image = decode_image(data, 40_000_000)
    except ServiceError:
        return
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(VALID), st.integers(min_value=0, max_value=400), st.binary(min_size=1, max_size=64))
def test_corrupted_images_never_crash(valid: bytes, offset: int, garbage: bytes) -> None:
    """A real image with a stretch overwritten or cut short: headers, chunk
    lengths and entropy-coded data all get hit."""
    at = offset % len(valid)
    _decode(valid[:at] + garbage + valid[at + len(garbage) :])
    _decode(valid[: max(1, at)])


@settings(max_examples=200, deadline=None, database=None)
@given(st.binary(max_size=256))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    _decode(data)


@settings(max_examples=200, deadline=None, database=None)
@given(st.text(max_size=200))
def test_arbitrary_text_as_base64_never_crashes(text: str) -> None:
    try:
        data = decode_base64_image(text, 1_000_000)
    except ServiceError:
        return
    assert isinstance(data, bytes) and data


def test_valid_samples_decode() -> None:
    for data in VALID:
        assert decode_image(data, 40_000_000).shape == (48, 64, 3)
    assert decode_base64_image(base64.b64encode(VALID[0]).decode(), 1_000_000) == VALID[0]
