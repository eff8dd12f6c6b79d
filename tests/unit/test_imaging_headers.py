"""Header probing checked against the decoders themselves (OpenCV, Pillow) for
every WebP kind and BMP layout, the exact boundaries of each header's length
check, and the exact answers a caller gets for each kind of bad image data."""

from __future__ import annotations

import io
import struct

import cv2
import numpy as np
import pytest
from PIL import Image

from face_recognition_service.errors import ServiceError
from face_recognition_service.imaging import ImageFormat, decode_base64_image, decode_image, probe
from tests.support.helpers import encode

MB = 1 << 20


def refused(fn, *args) -> dict[str, str | None]:  # type: ignore[no-untyped-def]
    with pytest.raises(ServiceError) as raised:
        fn(*args)
    return raised.value.to_dict()


def picture(width: int, height: int, channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(width * 1000 + height)
    return rng.integers(0, 255, (height, width, channels), dtype=np.uint8)


def pil_webp(width: int, height: int, mode: str, **options: object) -> bytes:
    channels = 4 if mode == "RGBA" else 3
    image = picture(width, height, channels)
    if channels == 4:
        image[..., 3] = np.linspace(0, 255, width, dtype=np.uint8)  # alpha in use
    out = io.BytesIO()
    Image.fromarray(image, mode).save(out, "WEBP", **options)
    return out.getvalue()


WEBPS = {
    "lossy": lambda: encode(picture(37, 23), ".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]),
    "lossless": lambda: encode(picture(41, 29), ".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),
    "lossless-alpha": lambda: pil_webp(33, 21, "RGBA", lossless=True),
    "lossy-alpha": lambda: pil_webp(45, 19, "RGBA", quality=80),
}


@pytest.mark.parametrize("kind", WEBPS)
def test_every_webp_kind_is_probed_as_its_decoder_reads_it(kind: str) -> None:
    data = WEBPS[kind]()
    info = probe(data)
    decoded = Image.open(io.BytesIO(data))
    assert info.format is ImageFormat.WEBP
    assert (info.width, info.height) == decoded.size
    assert info.has_alpha is (decoded.mode == "RGBA")
    assert decode_image(data, 40_000_000).shape == (decoded.size[1], decoded.size[0], 3)


def test_a_lossy_webp_s_scale_bits_are_not_its_size() -> None:
    """VP8 keeps two upscaling bits above each 14-bit dimension."""
    data = bytearray(WEBPS["lossy"]())
    assert data[12:16] == b"VP8 "
    data[27] |= 0xC0  # width's scale bits
    data[29] |= 0x40  # height's
    assert (probe(bytes(data)).width, probe(bytes(data)).height) == (37, 23)


@pytest.mark.parametrize(("kind", "length"), [("lossy", 30), ("lossless", 25)])
def test_a_webp_header_of_exactly_its_minimum_length_is_probed(kind: str, length: int) -> None:
    data = WEBPS[kind]()
    info = probe(data[:length])
    assert (info.width, info.height) == Image.open(io.BytesIO(data)).size
    assert refused(probe, data[: length - 1]) == {
        "error": "The WebP data is truncated or corrupt.",
        "error_code": "INVALID_IMAGE",
        "detail": None,
    }


def test_an_extended_webp_header_of_exactly_thirty_bytes_is_probed() -> None:
    data = WEBPS["lossy-alpha"]()
    assert data[12:16] == b"VP8X"
    assert (probe(data[:30]).width, probe(data[:30]).height, probe(data[:30]).has_alpha) == (45, 19, True)
    assert refused(probe, data[:29])["error"] == "The WebP data is truncated or corrupt."


def test_an_animated_webp_is_unsupported() -> None:
    frames = [Image.fromarray(picture(20, 10, 3)), Image.fromarray(picture(20, 10, 3)[::-1])]
    out = io.BytesIO()
    frames[0].save(out, "WEBP", save_all=True, append_images=frames[1:], duration=100)
    assert refused(probe, out.getvalue()) == {
        "error": "Animated WebP images are not supported.",
        "error_code": "UNSUPPORTED_FORMAT",
        "detail": "Supported formats: JPEG, PNG, WebP, BMP.",
    }


def test_a_webp_with_a_broken_frame_signature_is_invalid() -> None:
    data = bytearray(WEBPS["lossy"]())
    data[23:26] = b"\0\0\0"
    assert refused(probe, bytes(data))["error"] == "The WebP data is truncated or corrupt."


def test_a_webp_shorter_than_its_riff_size_is_truncated() -> None:
    data = WEBPS["lossy"]()
    assert decode_image(data, 40_000_000).shape[:2] == (23, 37)  # exactly as long as it says
    one_short = data[:4] + struct.pack("<I", len(data) - 8 + 1) + data[8:]
    huge = data[:4] + struct.pack("<I", 0xFFFFFFF0) + data[8:]  # not a negative size
    for bad in (one_short, huge):
        assert refused(decode_image, bad, 40_000_000) == {
            "error": "The WebP data is truncated.",
            "error_code": "INVALID_IMAGE",
            "detail": None,
        }


def bmp_core_header(width: int, height: int) -> bytes:
    """An OS/2 (BITMAPCOREHEADER, 12-byte) BMP header: sizes are unsigned 16-bit."""
    return b"BM" + struct.pack("<IHHI", 26, 0, 0, 26) + struct.pack("<IHHHH", 12, width, height, 1, 24)


def test_an_os2_bmp_header_gives_unsigned_16_bit_sizes() -> None:
    info = probe(bmp_core_header(40_000, 3))
    assert (info.format, info.width, info.height, info.has_alpha) == (ImageFormat.BMP, 40_000, 3, False)


def test_a_top_down_bmp_has_a_positive_height() -> None:
    data = bytearray(encode(picture(13, 7), ".bmp"))
    assert struct.unpack("<ii", data[18:26]) == (13, 7)
    data[22:26] = struct.pack("<i", -7)  # rows stored top to bottom
    info = probe(bytes(data))
    assert (info.width, info.height, info.has_alpha) == (13, 7, False)


def test_a_bmp_header_of_exactly_26_bytes_is_probed() -> None:
    data = encode(picture(13, 7), ".bmp")
    assert (probe(data[:26]).width, probe(data[:26]).height) == (13, 7)
    assert refused(probe, data[:25]) == {
        "error": "The BMP data is truncated or corrupt.",
        "error_code": "INVALID_IMAGE",
        "detail": None,
    }


ADVICE = (
    "Send the image file's bytes as base64, bare or as a data URI "
    "('data:image/jpeg;base64,...'), in the JSON field 'image'."
)
URL = "It looks like a URL: the service does not fetch URLs. "
PATH = "It looks like a file path: send the file's contents, not its name. "


@pytest.mark.parametrize(
    ("sent", "said"),
    [
        ("http://example.com/a.jpg", URL),
        ("HTTPS://EXAMPLE.COM/A.JPG", URL),
        ("s3://bucket/key.jpg", URL),
        ("ftp://host/a.jpg", URL),
        ("/home/me/photo.jpg", PATH),
        ("./photo.jpg", PATH),
        ("~/photo.jpg", PATH),
        ("file:///tmp/a.jpg", PATH),
        ("C:\\photos\\a.jpg", PATH),
        ("this is not base64!", ""),
    ],
)
def test_text_that_is_not_base64_gets_advice_on_what_to_send(sent: str, said: str) -> None:
    assert refused(decode_base64_image, sent, MB) == {
        "error": "The image is not valid base64.",
        "error_code": "INVALID_IMAGE",
        "detail": said + ADVICE,
    }


@pytest.mark.parametrize("cut", [1, 2])
def test_unpadded_base64_decodes(cut: int) -> None:
    """Two or three characters in the last quantum, their '=' left off."""
    import base64

    data = bytes(range(256))[: 30 + cut]
    text = base64.b64encode(data).decode().rstrip("=")
    assert len(text) % 4 in (2, 3)
    assert decode_base64_image(text, MB) == data


def test_base64_with_stray_characters_is_refused_not_skipped() -> None:
    import base64

    text = base64.b64encode(bytes(range(60))).decode()
    broken = text[:20] + "*" + text[20:]
    assert refused(decode_base64_image, broken, MB)["error"] == "The image is not valid base64."


def test_an_oversized_image_says_the_limit_in_bytes() -> None:
    import base64

    assert refused(decode_base64_image, base64.b64encode(bytes(2000)).decode(), 1000) == {
        "error": "The image exceeds the maximum size.",
        "error_code": "IMAGE_TOO_LARGE",
        "detail": "Maximum image size is 1000 bytes (after base64 decoding).",
    }


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ("Premature end of JPEG file: 12 extraneous bytes", "Premature end of JPEG file"),
        ("  Corrupt JPEG data  ", "Corrupt JPEG data"),
        ("", "decoder error"),
        (": nothing before the colon", "decoder error"),
        ("x" * 100, "x" * 80),
    ],
)
def test_a_libjpeg_complaint_is_named_by_its_first_clause(message: str, problem: str) -> None:
    from face_recognition_service.imaging import _jpeg_problem

    assert _jpeg_problem(ValueError(message)) == problem
