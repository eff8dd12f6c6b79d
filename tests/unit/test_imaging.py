"""Bytes to image: base64 forms, format sniffing, limits before decoding."""

from __future__ import annotations

import base64
import io

import cv2
import numpy as np
import pytest

from face_recognition_service.errors import ErrorCode, ServiceError
from face_recognition_service.imaging import ImageFormat, decode_base64_image, decode_image, probe
from tests.support.helpers import encode, png_header_only, read

MB = 1024 * 1024


def code_of(fn, *args) -> ErrorCode:  # type: ignore[no-untyped-def]
    with pytest.raises(ServiceError) as err:
        fn(*args)
    return err.value.code


@pytest.mark.parametrize(
    "wrap",
    [
        lambda b: "data:image/jpeg;base64," + base64.b64encode(b).decode(),
        lambda b: "DATA:image/png;BASE64," + base64.b64encode(b).decode(),
        lambda b: base64.b64encode(b).decode(),
        lambda b: base64.encodebytes(b).decode(),  # wrapped at 76 columns
        lambda b: base64.urlsafe_b64encode(b).decode().rstrip("="),
    ],
    ids=["data-uri", "upper-case-uri", "bare", "line-wrapped", "urlsafe-unpadded"],
)
def test_base64_forms(wrap) -> None:  # type: ignore[no-untyped-def]
    data = bytes(range(256)) * 4
    assert decode_base64_image(wrap(data), MB) == data


@pytest.mark.parametrize("text", ["", "data:image/jpeg;base64,", "@@@@", "data:image/jpeg,abcd", "abc$"])
def test_bad_base64_is_invalid_image(text: str) -> None:
    assert code_of(decode_base64_image, text, MB) is ErrorCode.INVALID_IMAGE


def test_size_limit_applies_to_decoded_bytes() -> None:
    data = b"\xff" * 3000
    assert decode_base64_image(base64.b64encode(data).decode(), 3000) == data
    assert (
        code_of(decode_base64_image, base64.b64encode(data + b"x").decode(), 3000)
        is ErrorCode.IMAGE_TOO_LARGE
    )


def test_oversized_text_is_refused_without_decoding() -> None:
    # Not even valid base64: the length alone decides, before any decode.
    assert code_of(decode_base64_image, "!" * (5 * MB), MB) is ErrorCode.IMAGE_TOO_LARGE


@pytest.mark.parametrize(
    "ext,fmt",
    [
        (".jpg", ImageFormat.JPEG),
        (".png", ImageFormat.PNG),
        (".webp", ImageFormat.WEBP),
        (".bmp", ImageFormat.BMP),
    ],
)
def test_probe_reads_dimensions_from_headers(ext: str, fmt: ImageFormat) -> None:
    image = np.zeros((123, 321, 3), np.uint8)
    info = probe(encode(image, ext))
    assert (info.format, info.width, info.height) == (fmt, 321, 123)


def test_probe_webp_lossless_and_alpha() -> None:
    rgba = np.zeros((40, 60, 4), np.uint8)
    info = probe(encode(rgba, ".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]))
    assert (info.width, info.height) == (60, 40)


def test_probe_progressive_jpeg() -> None:
    image = np.zeros((50, 70, 3), np.uint8)
    info = probe(encode(image, ".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]))
    assert (info.width, info.height) == (70, 50)


def test_decompression_bomb_is_refused_from_the_header() -> None:
    bomb = png_header_only(100_000, 100_000)
    assert code_of(decode_image, bomb, 40_000_000) is ErrorCode.IMAGE_TOO_LARGE


@pytest.mark.parametrize(
    "data,expected",
    [
        (b"GIF89a" + b"\x00" * 20, ErrorCode.UNSUPPORTED_FORMAT),
        (b"II*\x00" + b"\x00" * 20, ErrorCode.UNSUPPORTED_FORMAT),
        (b"\x00\x00\x00\x18ftypheic" + b"\x00" * 20, ErrorCode.UNSUPPORTED_FORMAT),
        (b"%PDF-1.7" + b"\x00" * 20, ErrorCode.UNSUPPORTED_FORMAT),
        (b"hello, I am not an image", ErrorCode.INVALID_IMAGE),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", ErrorCode.INVALID_IMAGE),  # truncated before a frame header
        (png_header_only(10, 10), ErrorCode.INVALID_IMAGE),  # header, no pixels
    ],
    ids=["gif", "tiff", "heic", "pdf", "text", "truncated-jpeg", "png-header-only"],
)
def test_unusable_bytes(data: bytes, expected: ErrorCode) -> None:
    assert code_of(decode_image, data, 40_000_000) is expected


def test_a_jpeg_whose_body_is_zeroed_is_invalid() -> None:
    """Headers intact, entropy-coded data zeroed: the strict decoder refuses it
    (a lenient one would return a grey picture)."""
    jpeg = read("obama_small.jpg")
    broken = jpeg[:600] + bytes(len(jpeg) - 600)
    assert code_of(decode_image, broken, 40_000_000) is ErrorCode.INVALID_IMAGE


def test_transparent_areas_become_white() -> None:
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[:, :10] = (0, 0, 255, 255)  # opaque red (BGR order)
    rgba[:, 10:] = (0, 0, 0, 0)  # fully transparent black
    image = decode_image(encode(rgba, ".png"), 40_000_000)
    assert image.shape == (20, 20, 3)
    assert tuple(image[5, 5]) == (0, 0, 255)
    assert tuple(image[5, 15]) == (255, 255, 255)


@pytest.mark.parametrize("order", [">", "<"], ids=["big-endian", "little-endian"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_opencv(orientation: int, order: str) -> None:
    from tests.support.helpers import with_exif_orientation

    jpeg = with_exif_orientation(read("obama_small.jpg"), orientation, order)
    ours = decode_image(jpeg, 40_000_000)
    reference = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert reference is not None and ours.shape == reference.shape
    assert np.abs(ours.astype(int) - reference.astype(int)).mean() < 1.0


def test_corrupt_jpeg_is_refused_not_decoded() -> None:
    data = bytearray(read("obama_3.jpg"))
    middle = len(data) // 2
    data[middle : middle + 1024] = np.random.default_rng(0).integers(0, 255, 1024, dtype=np.uint8).tobytes()
    assert code_of(decode_image, bytes(data), 40_000_000) is ErrorCode.INVALID_IMAGE


def test_truncated_jpeg_is_refused() -> None:
    data = read("obama_3.jpg")
    assert code_of(decode_image, data[: len(data) // 2], 40_000_000) is ErrorCode.INVALID_IMAGE


def test_tiny_jpeg_declaring_a_huge_frame_is_refused() -> None:
    # 629 bytes declaring 6000x6000: decoded (to grey) and then refused before;
    # the strict decoder stops at the first missing data (~0.05 s here).
    ok, buf = cv2.imencode(".jpg", np.full((6000, 6000, 3), 120, np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 50])
    assert ok
    assert code_of(decode_image, buf.tobytes()[:629], 40_000_000) is ErrorCode.INVALID_IMAGE


def test_corrupt_or_truncated_png_is_refused_without_native_noise(capfd: pytest.CaptureFixture[str]) -> None:
    image = (np.random.default_rng(0).random((200, 200, 3)) * 255).astype(np.uint8)
    data = bytearray(encode(image, ".png"))
    middle = len(data) // 2
    data[middle : middle + 200] = bytes(200)
    assert code_of(decode_image, bytes(data), 40_000_000) is ErrorCode.INVALID_IMAGE
    assert code_of(decode_image, encode(image, ".png")[:middle], 40_000_000) is ErrorCode.INVALID_IMAGE
    # libpng would have printed "libpng error: IDAT: CRC error" into the JSON log stream.
    assert capfd.readouterr().err == ""


def test_truncated_webp_is_refused() -> None:
    image = (np.random.default_rng(0).random((200, 200, 3)) * 255).astype(np.uint8)
    data = encode(image, ".webp")
    assert code_of(decode_image, data[: len(data) // 2], 40_000_000) is ErrorCode.INVALID_IMAGE


# --- header parsing at its edges (coverage review, issue 24) ------------------------------


def test_jpeg_fill_bytes_and_stray_markers_before_the_frame_are_skipped() -> None:
    """0xFF fill bytes and a stray RST marker between segments: the size and
    orientation still come from the headers."""
    from tests.support.helpers import with_exif_orientation

    jpeg = with_exif_orientation(read("obama_small.jpg"), 6)
    padded = jpeg[:2] + b"\xff\xff\xff" + b"\xff\xd0" + jpeg[2:]
    info = probe(padded)
    assert (info.width, info.height, info.orientation) == (320, 240, 6)


@pytest.mark.parametrize(
    "head",
    [b"\xff\xd8\xff\xd9\x00\x00", b"\xff\xd8\xff\xda\x00\x08\x00\x00", b"\xff\xd8\x00\x00\x00\x00"],
    ids=["end-of-image-first", "scan-before-frame", "not-a-marker"],
)
def test_a_jpeg_without_a_frame_header_is_invalid(head: bytes) -> None:
    assert code_of(probe, head + bytes(16)) is ErrorCode.INVALID_IMAGE


@pytest.mark.parametrize(
    "tiff",
    [
        b"XX*\x00\x08\x00\x00\x00",  # neither byte order
        b"MM\x00*\x00\x00\x00\x40",  # IFD offset past the end
        b"MM\x00*\x00\x00\x00\x08\x00\x05",  # five entries announced, none there
    ],
    ids=["byte-order", "ifd-offset", "entries"],
)
def test_broken_exif_leaves_the_photo_upright(tiff: bytes) -> None:
    jpeg = read("obama_small.jpg")
    payload = b"Exif\x00\x00" + tiff
    segment = b"\xff\xe1" + len(payload + b"  ").to_bytes(2, "big") + payload
    assert probe(jpeg[:2] + segment + jpeg[2:]).orientation == 1


def test_extended_webp_with_alpha_is_probed_and_composited() -> None:
    from PIL import Image

    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :20, 3] = 255  # left half opaque red, right half transparent
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, "WEBP", quality=90)
    data = buffer.getvalue()
    assert data[12:16] == b"VP8X"
    info = probe(data)
    assert (info.width, info.height, info.has_alpha) == (40, 30, True)
    image = decode_image(data, 40_000_000)
    assert image[15, 5, 2] > 200 and image[15, 5, 0] < 60  # red (BGR)
    assert (image[15, 35] > 240).all()  # transparent: white


def test_a_bmp_shorter_than_its_header_is_invalid() -> None:
    assert code_of(probe, b"BM" + bytes(20)) is ErrorCode.INVALID_IMAGE


def test_a_header_with_no_size_is_invalid() -> None:
    bmp = bytearray(encode(np.zeros((4, 4, 3), np.uint8), ".bmp"))
    bmp[18:26] = bytes(8)  # width and height 0
    error = code_of(probe, bytes(bmp))
    assert error is ErrorCode.INVALID_IMAGE


def test_area_reduce_by_one_is_the_image_itself() -> None:
    from face_recognition_service.imaging import area_reduce

    image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    assert area_reduce(image, 1) is image
    halved = area_reduce(image, 2)
    assert halved.shape == (2, 2, 3)
    assert halved[0, 0, 0] == round(np.mean(image[:2, :2, 0]))
