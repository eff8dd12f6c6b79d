"""The limits a caller meets before anything is decoded, at their exact
boundaries and with the exact answers, and the header facts they rest on:
the decode's memory per kind of image, JPEG sampling factors read as libjpeg
writes them, and the JPEG header walk over segments real files carry (large
ICC profiles, standalone markers).

The memory model (``ImageInfo.working_bytes``) is stated here per kind, in
words; tests/integration/server/test_memory_budget.py measures it against the
decoders' real peak."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from face_recognition_service.imaging import (
    ImageFormat,
    ImageInfo,
    check_limits,
    decode_base64_image,
    decode_image,
    probe,
    reduction,
    upright_size,
)
from tests.support.helpers import png_chunk, png_header_only, refused, with_exif_orientation

MiB = 1 << 20
ADVICE = "(send it as a baseline 8-bit RGB image, or smaller)."


def jpeg(width: int, height: int, **options: object) -> bytes:
    out = io.BytesIO()
    image = np.random.default_rng(width).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(image).save(out, "JPEG", **options)
    return out.getvalue()


# --- the pixel limit -------------------------------------------------------


def test_the_pixel_limit_admits_exactly_max_pixels() -> None:
    info = ImageInfo(ImageFormat.PNG, 4000, 3000, False)
    check_limits(info, 12_000_000, 1 << 40)  # exactly at the limit
    assert refused(check_limits, info, 11_999_999, 1 << 40) == {
        "error": "The image has too many pixels.",
        "error_code": "IMAGE_TOO_LARGE",
        "detail": "4000x3000 exceeds the limit of 11999999 pixels.",
    }


# --- the decode's memory, per kind -------------------------------------------

W, H = 1001, 601  # odd, so that a reduced size rounds up as libjpeg's does
PIXELS = W * H


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@pytest.mark.parametrize(
    ("info", "reduce", "expected"),
    [
        # A baseline YCbCr or grey JPEG: libjpeg hands over rows of the reduced
        # image, so only the 8-bit BGR output at that size is held.
        (ImageInfo(ImageFormat.JPEG, W, H, False, components=3), 1, PIXELS * 3),
        (ImageInfo(ImageFormat.JPEG, W, H, False, components=1), 4, ceil_div(W, 4) * ceil_div(H, 4) * 3),
        # Progressive: every DCT coefficient (2 bytes a sample) at full size
        # until the last scan, whatever the reduction. 4:2:0 is 1.5 samples a pixel.
        (
            ImageInfo(ImageFormat.JPEG, W, H, False, components=3, progressive=True, samples_per_pixel=1.5),
            2,
            int(PIXELS * 1.5 * 2) + ceil_div(W, 2) * ceil_div(H, 2) * 3,
        ),
        # CMYK: OpenCV decodes 4 channels at full size, then converts to BGR.
        (ImageInfo(ImageFormat.JPEG, W, H, False, components=4), 8, PIXELS * (4 + 3)),
        (
            ImageInfo(ImageFormat.JPEG, W, H, False, components=4, progressive=True, samples_per_pixel=4.0),
            1,
            PIXELS * 4 * 2 + PIXELS * (4 + 3),
        ),
        # PNG/BMP: converted to BGR while decoding (3 bytes), unless the alpha
        # channel must be kept: 4 channels of 8 or 16 bits, then the BGR copy.
        (ImageInfo(ImageFormat.PNG, W, H, False), 4, PIXELS * 3),
        (ImageInfo(ImageFormat.BMP, W, H, False), 1, PIXELS * 3),
        (ImageInfo(ImageFormat.PNG, W, H, True), 1, PIXELS * (4 + 3)),
        (ImageInfo(ImageFormat.PNG, W, H, True, sixteen_bit=True), 1, PIXELS * (8 + 3)),
        # WebP: libwebp's buffer, then OpenCV's copy of it (and the BGR copy with alpha).
        (ImageInfo(ImageFormat.WEBP, W, H, False), 2, PIXELS * 3 * 2),
        (ImageInfo(ImageFormat.WEBP, W, H, True), 1, PIXELS * 4 * 2 + PIXELS * 3),
    ],
    ids=[
        "jpeg",
        "grey-jpeg-reduced",
        "progressive-420-reduced",
        "cmyk",
        "progressive-cmyk",
        "png",
        "bmp",
        "png-alpha",
        "png-alpha-16",
        "webp",
        "webp-alpha",
    ],
)
def test_the_decode_needs_what_each_kind_holds_at_once(info: ImageInfo, reduce: int, expected: int) -> None:
    assert info.working_bytes(reduce) == expected
    check_limits(info, 1 << 40, expected, reduce)  # exactly at the budget
    answer = refused(check_limits, info, 1 << 40, expected - 1, reduce)
    assert answer["error"] == "The image needs too much memory to decode."
    assert answer["error_code"] == "IMAGE_TOO_LARGE"


def test_a_jpeg_is_reduced_only_when_asked() -> None:
    info = ImageInfo(ImageFormat.JPEG, 8000, 6000, False)
    assert info.working_bytes() == 8000 * 6000 * 3
    assert refused(check_limits, info, 1 << 40, 100 * MiB)["error_code"] == "IMAGE_TOO_LARGE"
    check_limits(info, 1 << 40, 100 * MiB, 2)  # 4000 x 3000 x 3: 34 MiB


@pytest.mark.parametrize(
    ("info", "kind"),
    [
        (ImageInfo(ImageFormat.PNG, 3000, 2000, False), ""),
        (ImageInfo(ImageFormat.PNG, 3000, 2000, True), " with alpha"),
        (ImageInfo(ImageFormat.PNG, 3000, 2000, True, sixteen_bit=True), " with alpha at 16 bits"),
        (ImageInfo(ImageFormat.JPEG, 3000, 2000, False, components=3, progressive=True), " (progressive)"),
        (ImageInfo(ImageFormat.JPEG, 3000, 2000, False, components=4), " (CMYK)"),
        (
            ImageInfo(
                ImageFormat.JPEG, 3000, 2000, False, components=4, progressive=True, samples_per_pixel=4.0
            ),
            " (progressive) (CMYK)",
        ),
        # Four components are CMYK only in a JPEG.
        (ImageInfo(ImageFormat.WEBP, 3000, 2000, False, components=4), ""),
    ],
)
def test_the_memory_answer_names_what_makes_the_image_expensive(info: ImageInfo, kind: str) -> None:
    needed = info.working_bytes()
    assert refused(check_limits, info, 1 << 40, 10 * MiB)["detail"] == (
        f"3000x2000{kind} needs {needed // MiB} MiB to decode; the limit is 10 MiB {ADVICE}"
    )


def test_the_memory_answer_rounds_mebibytes_down() -> None:
    info = ImageInfo(ImageFormat.PNG, 1000, 1000, False)  # 3,000,000 bytes: 2.86 MiB
    detail = refused(check_limits, info, 1 << 40, int(1.5 * MiB))["detail"]
    assert detail == f"1000x1000 needs 2 MiB to decode; the limit is 1 MiB {ADVICE}"


# --- reduction ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("longest", "expected"),
    [(5120, 8), (5119, 4), (2560, 4), (2559, 2), (1280, 2), (1279, 1), (640, 1)],
)
def test_the_reduction_keeps_the_longest_side_at_least_min_side(longest: int, expected: int) -> None:
    assert reduction(ImageInfo(ImageFormat.PNG, 300, longest, False), 640) == expected
    assert reduction(ImageInfo(ImageFormat.PNG, longest, 300, False), 640) == expected


# --- base64 ------------------------------------------------------------------


def test_a_data_uri_that_is_not_base64_is_refused_with_the_form_to_use() -> None:
    assert refused(decode_base64_image, "data:image/png,rawbytes", 1000) == {
        "error": "Data URI must be base64-encoded ('data:image/...;base64,...').",
        "error_code": "INVALID_IMAGE",
        "detail": None,
    }


@pytest.mark.parametrize("text", ["", "data:image/jpeg;base64,", "\n \n"])
def test_an_empty_image_is_refused_as_empty(text: str) -> None:
    assert refused(decode_base64_image, text, 1000) == {
        "error": "The image is empty.",
        "error_code": "INVALID_IMAGE",
        "detail": None,
    }


def test_the_cheap_length_bound_allows_five_percent_of_line_breaks_and_16_characters() -> None:
    """300 bytes are 400 base64 characters; the bound before decoding is
    (300 + 2) // 3 * 4 * 1.05 + 16 = 436 characters, line breaks included."""
    text = base64.b64encode(bytes(range(256)) + bytes(44)).decode()
    assert len(text) == 400
    assert decode_base64_image(text + "\n" * 36, 300) == bytes(range(256)) + bytes(44)
    assert refused(decode_base64_image, text + "\n" * 37, 300) == {
        "error": "The image exceeds the maximum size.",
        "error_code": "IMAGE_TOO_LARGE",
        "detail": "Maximum image size is 300 bytes (after base64 decoding).",
    }


def test_decoded_bytes_over_the_limit_are_refused_with_the_limit() -> None:
    text = base64.b64encode(bytes(303)).decode()  # 404 characters: under the bound, 303 bytes
    assert refused(decode_base64_image, text, 300)["detail"] == (
        "Maximum image size is 300 bytes (after base64 decoding)."
    )


# --- what is not an image ----------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(32),  # RIFF, but audio
        b"\x00\x00\x00\x18ftypmp42" + bytes(32),  # ISO BMFF, but a video
        b"just some text, no image at all",
    ],
    ids=["riff-wave", "mp4", "text"],
)
def test_other_files_are_not_recognisable_images(data: bytes) -> None:
    assert refused(probe, data) == {
        "error": "The data is not a recognisable image.",
        "error_code": "INVALID_IMAGE",
        "detail": None,
    }


@pytest.mark.parametrize(
    ("data", "name"),
    [(b"GIF89a" + bytes(32), "GIF"), (b"\x00\x00\x00\x18ftypheic" + bytes(32), "HEIC")],
)
def test_known_containers_are_named_as_unsupported(data: bytes, name: str) -> None:
    assert refused(probe, data) == {
        "error": f"{name} images are not supported.",
        "error_code": "UNSUPPORTED_FORMAT",
        "detail": "Supported formats: JPEG, PNG, WebP, BMP.",
    }


# --- JPEG headers ------------------------------------------------------------


@pytest.mark.parametrize(
    ("subsampling", "samples"),
    [(0, 3.0), (1, 2.0), (2, 1.5)],  # 4:4:4, 4:2:2 (chroma half width), 4:2:0 (a quarter)
)
def test_samples_a_pixel_follow_the_sampling_factors_libjpeg_wrote(subsampling: int, samples: float) -> None:
    info = probe(jpeg(64, 48, subsampling=subsampling, progressive=True))
    assert (info.components, info.progressive, info.samples_per_pixel) == (3, True, samples)


def test_a_grey_and_a_cmyk_jpeg_have_one_and_four_samples_a_pixel() -> None:
    out = io.BytesIO()
    Image.new("CMYK", (40, 30), (10, 20, 30, 40)).save(out, "JPEG")
    cmyk = probe(out.getvalue())
    out = io.BytesIO()
    Image.new("L", (40, 30), 128).save(out, "JPEG")
    grey = probe(out.getvalue())
    assert (cmyk.components, cmyk.samples_per_pixel, grey.components, grey.samples_per_pixel) == (
        4,
        4.0,
        1,
        1.0,
    )


def sof(width: int, height: int, factors: list[int]) -> bytes:
    """A baseline frame header with one (id, sampling factors, table) per component."""
    specs = b"".join(bytes([i + 1, f, 0]) for i, f in enumerate(factors))
    body = bytes([8]) + struct.pack(">HH", height, width) + bytes([len(factors)]) + specs
    return b"\xff\xc0" + struct.pack(">H", len(body) + 2) + body


@pytest.mark.parametrize(
    ("factors", "samples"),
    [([0x00, 0x11, 0x11], 3.0), ([0x22, 0x10, 0x11], 3.0), ([0x01], 1.0)],
    ids=["zero-factor", "zero-vertical", "grey-zero-horizontal"],
)
def test_malformed_sampling_factors_count_as_full_resolution(factors: list[int], samples: float) -> None:
    info = probe(b"\xff\xd8" + sof(64, 48, factors) + b"\xff\xd9")
    assert info.samples_per_pixel == samples


def test_a_frame_header_cut_short_counts_each_component_at_full_resolution() -> None:
    header = sof(64, 48, [0x22, 0x11, 0x11])
    cut = header[:-6]  # the last two components' specs are missing
    info = probe(b"\xff\xd8" + cut)
    assert (info.width, info.height, info.components, info.samples_per_pixel) == (64, 48, 3, 3.0)


def app(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def test_a_segment_longer_than_32_kib_is_skipped_whole() -> None:
    """An ICC profile of 40 KB in APP2 (cameras and editors write them): its
    length is an unsigned 16-bit number."""
    data = jpeg(80, 60)
    big = app(0xE2, b"ICC_PROFILE\x00\x01\x01" + bytes(40_000))
    info = probe(data[:2] + big + data[2:])
    assert (info.width, info.height) == (80, 60)


def test_standalone_markers_carry_no_length() -> None:
    """TEM (0x01), a stray SOI and the restart markers RST0-RST7 are two bytes
    alone; fill bytes (0xFF) may precede any marker."""
    data = jpeg(80, 60)
    standalone = b"\xff\x01" + b"\xff\xd8" + b"".join(bytes([0xFF, m]) for m in range(0xD0, 0xD8)) + b"\xff"
    info = probe(data[:2] + standalone + data[2:])
    assert (info.width, info.height) == (80, 60)


def test_the_end_of_image_before_a_frame_header_is_truncated_data() -> None:
    """What follows an EOI is not read, even when it looks like a frame header."""
    data = b"\xff\xd8" + b"\xff\xd9" + b"\x00\x02" + sof(64, 48, [0x11]) + b"\xff\xd9"
    assert refused(probe, data) == {
        "error": "The JPEG data is truncated or corrupt.",
        "error_code": "INVALID_IMAGE",
        "detail": None,
    }


def test_a_frame_header_too_short_for_its_size_is_truncated_data() -> None:
    header = sof(64, 48, [0x11])
    assert refused(probe, b"\xff\xd8" + header[:9])["error"] == "The JPEG data is truncated or corrupt."
    assert probe(b"\xff\xd8" + header[:10]).width == 64  # the size and component count are there


def test_orientation_comes_only_from_an_exif_app1_segment() -> None:
    data = with_exif_orientation(jpeg(80, 60), 6)
    assert probe(data).orientation == 6
    disguised = bytearray(data)
    disguised[3] = 0xE2  # the same bytes in APP2: not EXIF
    assert probe(bytes(disguised)).orientation == 1


def test_an_exif_segment_is_read_to_its_last_byte() -> None:
    """The orientation entry as the last bytes of the segment (a writer that
    leaves out the next-IFD offset): still read."""
    data = with_exif_orientation(jpeg(80, 60), 8)
    length = struct.unpack(">H", data[4:6])[0]
    trimmed = data[:4] + struct.pack(">H", length - 4) + data[6 : 4 + length - 4] + data[4 + length :]
    assert probe(trimmed).orientation == 8


def test_a_comma_in_a_data_uris_payload_is_not_base64() -> None:
    """The header ends at the first comma; what follows it all is the payload."""
    text = "data:image/jpeg;base64," + base64.b64encode(jpeg(16, 16)).decode() + ",AAAA"
    assert refused(decode_base64_image, text, 10_000)["error"] == "The image is not valid base64."


def test_a_jpeg_wider_than_32767_pixels_is_read_unsigned() -> None:
    info = probe(b"\xff\xd8" + sof(40_000, 100, [0x11]) + b"\xff\xd9")
    assert (info.width, info.height) == (40_000, 100)


def test_formats_without_alpha_or_16_bits_say_so() -> None:
    out = io.BytesIO()
    Image.new("RGB", (20, 10)).save(out, "BMP")
    for data in (jpeg(20, 10), out.getvalue()):
        info = probe(data)
        assert (info.has_alpha, info.sixteen_bit) == (False, False)


@pytest.mark.parametrize(("width", "height"), [(0, 48), (64, 0), (0, 0)])
def test_a_header_without_a_size_is_invalid(width: int, height: int) -> None:
    assert refused(probe, b"\xff\xd8" + sof(width, height, [0x11]) + b"\xff\xd9") == {
        "error": "The JPEG header gives no image size.",
        "error_code": "INVALID_IMAGE",
        "detail": None,
    }


def test_a_one_pixel_wide_image_has_a_size() -> None:
    assert probe(b"\xff\xd8" + sof(1, 48, [0x11]) + b"\xff\xd9").width == 1


# --- EXIF, entry by entry (TIFF 6.0: 12-byte entries after a 2-byte count) ----


def exif_jpeg(tiff: bytes) -> bytes:
    data = jpeg(40, 30)
    return data[:2] + app(0xE1, b"Exif\x00\x00" + tiff) + data[2:]


def ifd(entries: list[tuple[int, int, int]], count: int | None = None, order: str = "<") -> bytes:
    """A TIFF header and IFD0 of (tag, type, SHORT value) entries."""
    head = (b"II*\x00" if order == "<" else b"MM\x00*") + struct.pack(order + "I", 8)
    body = struct.pack(order + "H", len(entries) if count is None else count)
    for tag, kind, value in entries:
        body += struct.pack(order + "HHIHH", tag, kind, 1, value, 0)
    return head + body + struct.pack(order + "I", 0)


def test_orientation_is_found_among_other_entries() -> None:
    """Cameras write it among others: ImageWidth (LONG), ResolutionUnit (SHORT 2)."""
    tiff = ifd([(0x0100, 4, 4000), (0x0128, 3, 2), (0x0112, 3, 6)])
    assert probe(exif_jpeg(tiff)).orientation == 6


def test_an_impossible_orientation_is_ignored() -> None:
    assert probe(exif_jpeg(ifd([(0x0112, 3, 9)]))).orientation == 1
    assert probe(exif_jpeg(ifd([(0x0112, 3, 0)]))).orientation == 1


def test_an_absurd_entry_count_still_reads_the_entries_present() -> None:
    assert probe(exif_jpeg(ifd([(0x0112, 3, 3)], count=0x8001))).orientation == 3


@pytest.mark.parametrize(
    "tiff",
    [
        b"II*\x00\x08\x00",  # shorter than a TIFF header
        b"II*\x00" + struct.pack("<I", 9) + b"\x00\x00",  # IFD0 starts at the last byte
        b"II*\x00" + struct.pack("<I", 0xFFFFFFF0) + bytes(30),  # IFD0 far past the end
        b"XX*\x00" + struct.pack("<I", 8) + bytes(30),  # neither byte order
    ],
    ids=["short", "ifd-at-last-byte", "ifd-past-end", "no-byte-order"],
)
def test_a_broken_exif_block_leaves_the_photo_upright(tiff: bytes) -> None:
    assert probe(exif_jpeg(tiff)).orientation == 1


@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_upright_size_is_what_opencv_gives_after_applying_exif(orientation: int) -> None:
    data = with_exif_orientation(jpeg(48, 30), orientation)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # OpenCV applies EXIF
    assert decoded is not None
    assert upright_size(probe(data)) == (decoded.shape[1], decoded.shape[0])


# --- decoding ------------------------------------------------------------------


def test_a_jpeg_decodes_as_libjpeg_does_by_default() -> None:
    """Accurate integer DCT and smooth ("fancy") chroma upsampling, as Pillow
    decodes: a 4:2:0 photo's pixels within one level of Pillow's."""
    data = jpeg(96, 64, subsampling=2, quality=90)
    ours = decode_image(data, 1_000_000).astype(int)
    pillow = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[..., ::-1].astype(int)
    assert np.abs(ours - pillow).max() <= 1


def test_a_truncated_jpeg_is_refused_with_libjpegs_reason() -> None:
    data = jpeg(96, 64)
    answer = refused(decode_image, data[: len(data) // 2], 1_000_000)
    assert answer["error_code"] == "INVALID_IMAGE"
    assert answer["error"] == "The JPEG data is corrupt or truncated (Premature end of JPEG file)."


def test_a_png_whose_pixels_do_not_inflate_is_refused_as_undecodable() -> None:
    """Every chunk's CRC right (so the chunk check passes), the IDAT not zlib."""
    data = png_header_only(8, 8) + png_chunk(b"IDAT", b"not zlib") + png_chunk(b"IEND", b"")
    assert refused(decode_image, data, 1_000_000) == {
        "error": "The PNG data could not be decoded.",
        "error_code": "INVALID_IMAGE",
        "detail": None,
    }


def test_a_jpeg_that_fits_only_when_reduced_is_decoded_reduced() -> None:
    """1,600 x 1,200 needs 5.5 MiB at full size, 352 KiB at a quarter: under a
    1 MiB budget it is admitted at reduce 4, and comes out at that size."""
    data = jpeg(1600, 1200)
    assert decode_image(data, 10_000_000, MiB, reduce=4).shape == (300, 400, 3)
    assert (
        refused(decode_image, data, 10_000_000, MiB)["error"] == "The image needs too much memory to decode."
    )


def test_a_header_past_opencvs_own_pixel_guard_is_undecodable() -> None:
    """The second line behind the header check (OPENCV_IO_MAX_IMAGE_PIXELS: 2^27
    in the service, OpenCV's own 2^30 where cv2 was imported first): a PNG whose
    header claims 40,000 x 40,000, let through by limits set high."""
    idat = png_chunk(b"IDAT", zlib.compress(bytes(100)))
    data = png_header_only(40_000, 40_000) + idat + png_chunk(b"IEND", b"")
    assert refused(decode_image, data, 1 << 40, 1 << 40) == {
        "error": "The PNG data could not be decoded.",
        "error_code": "INVALID_IMAGE",
        "detail": None,
    }


@pytest.mark.parametrize("missing", [5, 6])
def test_an_exif_entry_cut_short_by_its_segment_is_not_read(missing: int) -> None:
    """The segment ends 1 or 2 bytes before the orientation entry does: nothing
    past a segment is read, even where the next segment would complete it."""
    data = with_exif_orientation(jpeg(80, 60), 8)
    length = struct.unpack(">H", data[4:6])[0]
    cut = data[:4] + struct.pack(">H", length - missing) + data[6 : 4 + length - missing] + data[4 + length :]
    assert probe(cut).orientation == 1
