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

from face_recognition_service.imaging import ImageFormat, decode_base64_image, decode_image, probe
from tests.support.helpers import encode, refused

MB = 1 << 20


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


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """The expected BGR of an 8-bit RGBA picture on white, from first principles."""
    colour, alpha = rgba[..., :3].astype(np.float64), rgba[..., 3:].astype(np.float64)
    rgb = np.round(colour * alpha / 255.0) + (255.0 - alpha)
    return rgb[..., ::-1].astype(np.uint8)  # RGB -> BGR


def test_a_16_bit_png_with_alpha_is_its_top_byte_on_white() -> None:
    rng = np.random.default_rng(3)
    rgba16 = rng.integers(0, 65536, (9, 11, 4), dtype=np.uint16)
    rgba16[0, :, 3] = 65535  # an opaque row and a clear one at the edges
    rgba16[-1, :, 3] = 0
    data = encode(rgba16[..., [2, 1, 0, 3]], ".png")  # OpenCV writes BGRA
    info = probe(data)
    assert (info.width, info.height, info.has_alpha, info.sixteen_bit) == (11, 9, True, True)
    decoded = decode_image(data, 40_000_000)
    expected = composite_on_white((rgba16 >> 8).astype(np.uint8))
    assert np.abs(decoded.astype(int) - expected.astype(int)).max() <= 1  # OpenCV rounds its way


def test_a_grey_and_alpha_png_is_probed_with_alpha_and_composited() -> None:
    grey_alpha = np.zeros((6, 8, 2), np.uint8)
    grey_alpha[..., 0] = np.arange(8, dtype=np.uint8) * 30
    grey_alpha[..., 1] = np.arange(6, dtype=np.uint8)[:, None] * 50
    out = io.BytesIO()
    Image.fromarray(grey_alpha, "LA").save(out, "PNG")
    data = out.getvalue()
    assert data[25] == 4  # PNG colour type 4: grey and alpha
    info = probe(data)
    assert (info.has_alpha, info.sixteen_bit) == (True, False)
    rgba = np.concatenate([np.repeat(grey_alpha[..., :1], 3, axis=2), grey_alpha[..., 1:]], axis=2)
    assert (
        np.abs(decode_image(data, 40_000_000).astype(int) - composite_on_white(rgba).astype(int)).max() <= 1
    )


def test_a_decoded_image_of_other_than_3_or_4_channels_is_refused() -> None:
    from face_recognition_service.imaging import _to_bgr8

    assert refused(_to_bgr8, np.zeros((2, 2), np.uint8)) == {
        "error": "Images with 1 channels are not supported.",
        "error_code": "INVALID_IMAGE",
        "detail": None,
    }
    assert (
        refused(_to_bgr8, np.zeros((2, 2, 2), np.uint8))["error"]
        == "Images with 2 channels are not supported."
    )


def test_png_header_boundaries_and_sizes() -> None:
    data = encode(picture(13, 7), ".png")
    assert (probe(data[:26]).width, probe(data[:26]).height, probe(data[:26]).sixteen_bit) == (13, 7, False)
    assert refused(probe, data[:25]) == {
        "error": "The PNG data is truncated or corrupt.",
        "error_code": "INVALID_IMAGE",
        "detail": None,
    }
    huge = data[:16] + struct.pack(">II", 2**31, 1) + data[24:]  # unsigned, not negative
    assert probe(huge).width == 2**31


def test_corrupt_and_truncated_png_answers() -> None:
    data = encode(picture(13, 7), ".png")
    idat = data.index(b"IDAT")
    corrupt = data[: idat + 6] + bytes([data[idat + 6] ^ 0xFF]) + data[idat + 7 :]
    assert refused(decode_image, corrupt, 40_000_000)["error"] == (
        "The PNG data is corrupt (a 'IDAT' chunk fails its checksum)."
    )
    assert refused(decode_image, data[: len(data) - 12], 40_000_000)["error"] == "The PNG data is truncated."


def test_extended_webp_flags_other_than_animation_and_alpha_change_nothing() -> None:
    """VP8X flags: 0x02 animation, 0x10 alpha; bit 0 is reserved."""
    data = bytearray(WEBPS["lossy-alpha"]())
    assert data[12:16] == b"VP8X" and data[20] & 0x10
    data[20] = (data[20] & ~0x10) | 0x01  # no alpha, the reserved bit set
    info = probe(bytes(data))
    assert (info.width, info.height, info.has_alpha) == (45, 19, False)


def test_area_reduce_averages_whole_blocks() -> None:
    from face_recognition_service.imaging import area_reduce

    image = picture(16, 12)
    expected = image.reshape(3, 4, 4, 4, 3).astype(np.float64).mean(axis=(1, 3))
    assert np.abs(area_reduce(image, 4).astype(float) - expected).max() <= 0.5 + 1e-9
