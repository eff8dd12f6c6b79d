"""Caller's bytes to a validated BGR image.

Order matters for safety: the size limit is checked on the encoded bytes, the
pixel limit on the header's dimensions, and only then is anything decoded.
Nothing here touches the disk.
"""

from __future__ import annotations

import binascii
import os
import struct
import zlib
from dataclasses import dataclass, replace
from enum import StrEnum

# OpenCV's own guard against huge images, set before cv2 is first imported, as a
# second line behind the header check below (a file can lie in its header).
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(2**27))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pybase64  # noqa: E402
import simplejpeg  # noqa: E402

from .config import DEFAULT_DECODE_BUDGET_MB  # noqa: E402
from .errors import ErrorCode, ServiceError, image_too_large  # noqa: E402


class ImageFormat(StrEnum):
    JPEG = "jpeg"
    PNG = "png"
    WEBP = "webp"
    BMP = "bmp"


@dataclass(frozen=True)
class ImageInfo:
    format: ImageFormat
    width: int
    height: int
    has_alpha: bool
    sixteen_bit: bool = False
    orientation: int = 1  # EXIF orientation (JPEG), 1 = upright
    components: int = 3  # JPEG colour components (4: CMYK/YCCK)
    # JPEG: progressive (libjpeg keeps every DCT coefficient of the image until
    # the last scan), and the share of full-resolution samples its components
    # carry together (3.0 for 4:4:4, 1.5 for 4:2:0, 4.0 for CMYK).
    progressive: bool = False
    samples_per_pixel: float = 3.0

    @property
    def decoded_bytes(self) -> int:
        """What OpenCV allocates for the decoded pixels: 3 channels of 8 bits, or
        4 channels (8 or 16 bits) when the alpha channel must be kept."""
        if not self.has_alpha:
            return self.width * self.height * 3
        return self.width * self.height * 4 * (2 if self.sixteen_bit else 1)

    def working_bytes(self, reduce: int = 1) -> int:
        """The most the decode holds at once, from the header alone: the pixels
        it hands over, the 8-bit BGR copy it converts them to, and what the
        decoder keeps meanwhile (bench/worst_requests.py measures each kind)."""
        pixels = self.width * self.height
        if self.format is ImageFormat.JPEG:
            # A progressive JPEG's coefficients: 2 bytes a sample, at full size
            # whatever the DCT reduction (every scan refines all of them).
            coefficients = int(pixels * self.samples_per_pixel * 2) if self.progressive else 0
            if dct_scalable(self):
                return coefficients + -(-self.width // reduce) * -(-self.height // reduce) * 3
            # CMYK/YCCK: OpenCV decodes 4 channels, then converts to BGR.
            return coefficients + pixels * 4 + pixels * 3
        # IMREAD_COLOR converts while decoding; only an alpha channel is composited after.
        converted = pixels * 3 if self.has_alpha else 0
        if self.format is ImageFormat.WEBP:
            return 2 * self.decoded_bytes + converted  # libwebp's buffer, then OpenCV's copy
        return self.decoded_bytes + converted


# Containers we recognise but do not decode: the caller gets UNSUPPORTED_FORMAT
# (convert and retry) rather than INVALID_IMAGE (the data is broken).
_UNSUPPORTED_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF"),
    (b"\x00\x00\x01\x00", "ICO"),
)
_ISO_BMFF_BRANDS = {
    b"heic": "HEIC",
    b"heix": "HEIC",
    b"hevc": "HEIC",
    b"mif1": "HEIF",
    b"msf1": "HEIF",
    b"avif": "AVIF",
    b"avis": "AVIF",
}
SUPPORTED_FORMATS = "JPEG, PNG, WebP, BMP"


def _invalid(message: str) -> ServiceError:
    return ServiceError(ErrorCode.INVALID_IMAGE, message)


def decode_base64_image(text: str, max_bytes: int) -> bytes:
    """Bytes of a data URI or bare base64 string, with the size limit applied."""
    payload = text
    if payload[:5].lower() == "data:":
        header, sep, payload = payload.partition(",")
        if not sep or ";base64" not in header.lower():
            raise _invalid("Data URI must be base64-encoded ('data:image/...;base64,...').")
    # Cheap bound before decoding anything: 4 base64 characters carry 3 bytes.
    # The slack allows line breaks that some encoders insert.
    if len(payload) > (max_bytes + 2) // 3 * 4 * 1.05 + 16:
        raise _too_large(max_bytes)
    if not payload:
        raise _invalid("The image is empty.")
    try:
        data = pybase64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        data = _decode_lenient(payload)
    if len(data) > max_bytes:
        raise _too_large(max_bytes)
    if not data:
        raise _invalid("The image is empty.")
    return data


def _decode_lenient(payload: str) -> bytes:
    # Line-wrapped, URL-safe or unpadded base64 are all common in the wild;
    # anything else is refused rather than silently skipped.
    compact = "".join(payload.split()).replace("-", "+").replace("_", "/")
    compact += "=" * (-len(compact) % 4)
    try:
        return pybase64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise ServiceError(
            ErrorCode.INVALID_IMAGE, "The image is not valid base64.", _expected(payload)
        ) from None


def _expected(payload: str) -> str:
    """What to send instead, with a word about what was sent (never the value)."""
    head = payload[:10].lower()
    sent = ""
    if head.startswith(("http://", "https://", "s3://", "ftp://")):
        sent = "It looks like a URL: the service does not fetch URLs. "
    elif head.startswith(("/", "./", "~", "file:")) or payload[1:3] == ":\\":
        sent = "It looks like a file path: send the file's contents, not its name. "
    return (
        sent + "Send the image file's bytes as base64, bare or as a data URI "
        "('data:image/jpeg;base64,...'), in the JSON field 'image'."
    )


def _too_large(max_bytes: int) -> ServiceError:
    return image_too_large(f"Maximum image size is {max_bytes} bytes (after base64 decoding).")


def probe(data: bytes) -> ImageInfo:
    """Format and dimensions from the header alone, without decoding pixels."""
    if data[:3] == b"\xff\xd8\xff":
        return _probe_jpeg(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return _probe_png(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _probe_webp(data)
    if data[:2] == b"BM":
        return _probe_bmp(data)
    for signature, name in _UNSUPPORTED_SIGNATURES:
        if data.startswith(signature):
            raise _unsupported(name)
    if data[4:8] == b"ftyp" and data[8:12] in _ISO_BMFF_BRANDS:
        raise _unsupported(_ISO_BMFF_BRANDS[data[8:12]])
    raise _invalid("The data is not a recognisable image.")


def _unsupported(name: str) -> ServiceError:
    return ServiceError(
        ErrorCode.UNSUPPORTED_FORMAT,
        f"{name} images are not supported.",
        f"Supported formats: {SUPPORTED_FORMATS}.",
    )


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_PROGRESSIVE = {0xC2, 0xC6, 0xCA, 0xCE}


def _samples_per_pixel(specs: bytes, components: int) -> float:
    """Samples a pixel across the components, from each one's sampling factors
    (the largest factors are full resolution): 3.0 for 4:4:4, 1.5 for 4:2:0."""
    factors = [(b >> 4, b & 0x0F) for b in specs[1::3]]
    if len(factors) != components or not all(h and v for h, v in factors):
        return float(max(components, 1))  # malformed: assume full resolution
    h_max, v_max = max(h for h, _ in factors), max(v for _, v in factors)
    return sum(h * v for h, v in factors) / (h_max * v_max)


def _probe_jpeg(data: bytes) -> ImageInfo:
    pos, end = 2, len(data)
    orientation = 1
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker == 0xE1 and data[pos + 4 : pos + 10] == b"Exif\x00\x00":
            orientation = _exif_orientation(data[pos + 10 : pos + 2 + length]) or orientation
        if marker in _JPEG_SOF:
            if pos + 10 > end:
                break
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            info = _checked(ImageFormat.JPEG, width, height, False)
            components = data[pos + 9]
            return replace(
                info,
                orientation=orientation,
                components=components,
                progressive=marker in _JPEG_PROGRESSIVE,
                samples_per_pixel=_samples_per_pixel(data[pos + 10 : pos + 10 + 3 * components], components),
            )
        pos += 2 + length
    raise _invalid("The JPEG data is truncated or corrupt.")


def _exif_orientation(tiff: bytes) -> int | None:
    """The Orientation tag (0x0112) of IFD0 in an EXIF TIFF block, if valid."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return None
    order = "<" if tiff[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", tiff[4:8])
    if ifd + 2 > len(tiff):
        return None
    (count,) = struct.unpack(order + "H", tiff[ifd : ifd + 2])
    for i in range(min(count, 256)):
        entry = ifd + 2 + 12 * i
        if entry + 12 > len(tiff):
            return None
        tag, kind = struct.unpack(order + "HH", tiff[entry : entry + 4])
        if tag == 0x0112 and kind == 3:  # SHORT
            (value,) = struct.unpack(order + "H", tiff[entry + 8 : entry + 10])
            return value if 1 <= value <= 8 else None
    return None


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn decoded pixels upright, as EXIF orientation 1-8 says (what OpenCV's
    IMREAD_COLOR does for the formats it decodes itself)."""
    if orientation == 2:
        return cv2.flip(image, 1)
    if orientation == 3:
        return cv2.rotate(image, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(image, 0)
    if orientation == 5:
        return cv2.transpose(image)
    if orientation == 6:
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.rotate(cv2.transpose(image), cv2.ROTATE_180)
    if orientation == 8:
        return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return image


def _probe_png(data: bytes) -> ImageInfo:
    if len(data) < 26 or data[12:16] != b"IHDR":
        raise _invalid("The PNG data is truncated or corrupt.")
    width, height = struct.unpack(">II", data[16:24])
    bit_depth, color_type = data[24], data[25]
    return _checked(ImageFormat.PNG, width, height, color_type in (4, 6), bit_depth == 16)


def _probe_webp(data: bytes) -> ImageInfo:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return _checked(ImageFormat.WEBP, width & 0x3FFF, height & 0x3FFF, False)
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        (bits,) = struct.unpack("<I", data[21:25])
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        return _checked(ImageFormat.WEBP, width, height, bool((bits >> 28) & 1))
    if chunk == b"VP8X" and len(data) >= 30:
        flags = data[20]
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        if flags & 0x02:
            raise _unsupported("Animated WebP")
        return _checked(ImageFormat.WEBP, width, height, bool(flags & 0x10))
    raise _invalid("The WebP data is truncated or corrupt.")


def _probe_bmp(data: bytes) -> ImageInfo:
    if len(data) < 26:
        raise _invalid("The BMP data is truncated or corrupt.")
    (dib_size,) = struct.unpack("<I", data[14:18])
    if dib_size == 12:
        width, height = struct.unpack("<HH", data[18:22])
    else:
        width, height = struct.unpack("<ii", data[18:26])
    return _checked(ImageFormat.BMP, abs(width), abs(height), False)


def _checked(
    fmt: ImageFormat, width: int, height: int, has_alpha: bool, sixteen_bit: bool = False
) -> ImageInfo:
    if width <= 0 or height <= 0:
        raise _invalid(f"The {fmt.name} header gives no image size.")
    return ImageInfo(fmt, width, height, has_alpha, sixteen_bit)


# Default for the decoded-pixel budget (Settings.decode_budget_mb): the largest
# decoded buffer one request may make, checked from the header before decoding.
DEFAULT_DECODE_BUDGET = DEFAULT_DECODE_BUDGET_MB * 2**20

# Rows converted at a time: the conversion's temporaries stay a few megabytes
# whatever the image's size.
_CHUNK_PIXELS = 1 << 20


def decode_image(
    data: bytes,
    max_pixels: int,
    max_decoded_bytes: int = DEFAULT_DECODE_BUDGET,
    *,
    reduce: int = 1,
    info: ImageInfo | None = None,
) -> np.ndarray:
    """Validated, upright (EXIF applied), 8-bit, 3-channel BGR image.

    ``reduce`` (1, 2, 4 or 8) decodes a JPEG at that fraction of its size in the
    DCT domain: libjpeg skips the detail, so the decode costs a fraction of a
    full one and the result is properly low-passed. Other formats are decoded in
    full whatever ``reduce`` says (``area_reduce`` takes them down after).

    Memory: the header is checked against both limits before any pixel is
    decoded; the decoded buffer is at most ``max_decoded_bytes``, and the
    conversion to 8-bit BGR adds the output (3 bytes a pixel) plus a few
    megabytes, never full-size float copies. ``info``: the header, when the
    caller has already read it (``probe(data)``).
    """
    info = info or probe(data)
    check_limits(info, max_pixels, max_decoded_bytes, reduce)
    if dct_scalable(info):
        return _decode_jpeg(data, info, reduce)
    if info.format is ImageFormat.PNG:
        _check_png(data)
    elif info.format is ImageFormat.WEBP:
        _check_riff(data)
    buffer = np.frombuffer(data, dtype=np.uint8)
    # IMREAD_COLOR applies EXIF orientation and converts 16-bit, grey and palette
    # images to 8-bit BGR while decoding. Only images with an alpha channel need
    # UNCHANGED, so that transparent areas become white rather than whatever
    # colour lies under them.
    flags = cv2.IMREAD_UNCHANGED if info.has_alpha else cv2.IMREAD_COLOR
    try:
        image = cv2.imdecode(buffer, flags)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        raise _invalid(f"The {info.format.name} data could not be decoded.")
    return _to_bgr8(image)


def area_reduce(image: np.ndarray, factor: int) -> np.ndarray:
    """``image`` at 1/``factor`` of its size (rounded up, as libjpeg's DCT
    scaling rounds), each pixel the area-weighted mean of the pixels it covers
    (OpenCV's INTER_AREA; exactly factor x factor blocks where the size divides):
    the low-pass a JPEG's reduced decode gets, for every other format."""
    if factor == 1:
        return image
    height, width = image.shape[:2]
    size = (-(-width // factor), -(-height // factor))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _check_png(data: bytes) -> None:
    """Every chunk complete, its CRC right, IEND present: a corrupt or truncated
    PNG is refused here, before libpng would print its complaint to stderr (a
    plain-text line in the JSON logs) and fail anyway."""
    pos, end = 8, len(data)
    while pos + 12 <= end:
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunk_end = pos + 12 + length
        if chunk_end > end:
            break
        kind = data[pos + 4 : pos + 8]
        (crc,) = struct.unpack(">I", data[chunk_end - 4 : chunk_end])
        if zlib.crc32(data[pos + 4 : chunk_end - 4]) != crc:
            raise _invalid(
                f"The PNG data is corrupt (a {kind.decode('latin-1')!r} chunk fails its checksum)."
            )
        if kind == b"IEND":
            return
        pos = chunk_end
    raise _invalid("The PNG data is truncated.")


def _check_riff(data: bytes) -> None:
    """A WebP's RIFF header says how long the file is: shorter is truncated.
    (WebP has no checksum: data overwritten in the middle cannot be detected.)"""
    (size,) = struct.unpack("<I", data[4:8])
    if size + 8 > len(data):
        raise _invalid("The WebP data is truncated.")


def upright_size(info: ImageInfo) -> tuple[int, int]:
    """(width, height) after EXIF orientation."""
    return (info.height, info.width) if info.orientation in (5, 6, 7, 8) else (info.width, info.height)


def dct_scalable(info: ImageInfo) -> bool:
    """An ordinary (grey or YCbCr) JPEG: libjpeg can decode it at 1/2, 1/4 or 1/8."""
    return info.format is ImageFormat.JPEG and info.components in (1, 3)


def reduction(info: ImageInfo, min_side: int) -> int:
    """The largest reduction (1, 2, 4, 8) that keeps the longest side at least
    ``min_side`` pixels, whatever the format: a JPEG is decoded at it (DCT
    scaling), any other image is decoded in full and area-averaged to it."""
    longest = max(info.width, info.height)
    for factor in (8, 4, 2):
        if longest / factor >= min_side:
            return factor
    return 1


def check_limits(info: ImageInfo, max_pixels: int, max_decoded_bytes: int, reduce: int = 1) -> None:
    if info.width * info.height > max_pixels:
        raise ServiceError(
            ErrorCode.IMAGE_TOO_LARGE,
            "The image has too many pixels.",
            f"{info.width}x{info.height} exceeds the limit of {max_pixels} pixels.",
        )
    needed = info.working_bytes(reduce)
    if needed > max_decoded_bytes:
        kind = "".join(
            [
                " with alpha" if info.has_alpha else "",
                " at 16 bits" if info.sixteen_bit else "",
                " (progressive)" if info.progressive else "",
                " (CMYK)" if info.format is ImageFormat.JPEG and info.components == 4 else "",
            ]
        )
        raise ServiceError(
            ErrorCode.IMAGE_TOO_LARGE,
            "The image needs too much memory to decode.",
            f"{info.width}x{info.height}{kind} needs {needed // 2**20} MiB to decode; "
            f"the limit is {max_decoded_bytes // 2**20} MiB (send it as a baseline 8-bit RGB image, or smaller).",
        )


def _decode_jpeg(data: bytes, info: ImageInfo, reduce: int = 1) -> np.ndarray:
    """libjpeg-turbo through simplejpeg, strictly: corrupt or truncated data is
    refused (INVALID_IMAGE) instead of decoding to grey or garbage, and libjpeg's
    warnings never reach stderr (they would be non-JSON lines in the logs).
    Orientation is applied after decoding, to the (possibly reduced) pixels."""
    scaled: dict[str, int] = {}
    if reduce > 1:
        scaled = {"min_width": -(-info.width // reduce), "min_height": -(-info.height // reduce)}
    try:
        image = simplejpeg.decode_jpeg(
            data, colorspace="BGR", fastdct=False, fastupsample=False, strict=True, **scaled
        )
    except ValueError as exc:
        raise _invalid(f"The JPEG data is corrupt or truncated ({_jpeg_problem(exc)}).") from None
    return apply_orientation(image, info.orientation)


def _jpeg_problem(exc: ValueError) -> str:
    # libjpeg's messages name a defect, never the data ("Premature end of JPEG file").
    text = str(exc).split(":")[0].strip()
    return text[:80] or "decoder error"


def _to_8bit(block: np.ndarray) -> np.ndarray:
    """8-bit samples: OpenCV decodes the accepted formats to 8 or 16 bits."""
    if block.dtype == np.uint16:
        converted: np.ndarray = (block >> 8).astype(np.uint8)
        return converted
    return block


def _to_bgr8(image: np.ndarray) -> np.ndarray:
    """3-channel 8-bit BGR. IMREAD_COLOR gives 3 channels; IMREAD_UNCHANGED is
    used only for images with alpha, which OpenCV gives as 4 (grey and alpha
    included), composited here on white."""
    channels = image.shape[2] if image.ndim == 3 else 1
    if channels == 3:
        return _to_8bit(image)
    if channels != 4:
        raise _invalid(f"Images with {channels} channels are not supported.")
    # Composite on white, a band of rows at a time, in 8-bit integer arithmetic:
    # out = round(colour * alpha / 255) + (255 - alpha).
    height, width = image.shape[:2]
    out = np.empty((height, width, 3), dtype=np.uint8)
    step = max(1, _CHUNK_PIXELS // max(width, 1))
    for top in range(0, height, step):
        band = _to_8bit(image[top : top + step])
        alpha = band[:, :, 3]
        colour = band[:, :, :3]
        alpha3 = cv2.merge([alpha, alpha, alpha])
        blended = cv2.multiply(np.ascontiguousarray(colour), alpha3, scale=1.0 / 255.0)
        out[top : top + step] = cv2.add(blended, cv2.bitwise_not(alpha3))
    return out
