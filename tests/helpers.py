"""Shared test helpers: the labelled photos and ways to build test images."""

from __future__ import annotations

import base64
import csv
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

DATA = Path(__file__).parent / "data"
FACES = DATA / "faces"


@dataclass(frozen=True)
class Photo:
    path: Path
    person: str
    faces: int


def photos() -> list[Photo]:
    with open(FACES / "labels.csv", newline="") as fh:
        return [Photo(FACES / row["file"], row["person"], int(row["faces"])) for row in csv.DictReader(fh)]


def single_face_photos() -> list[Photo]:
    return [p for p in photos() if p.faces == 1]


def b64(data: bytes, mime: str | None = "image/jpeg") -> str:
    text = base64.b64encode(data).decode()
    return f"data:{mime};base64,{text}" if mime else text


def read(name: str) -> bytes:
    return (FACES / name).read_bytes()


def encode(image: np.ndarray, ext: str, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, image, params or [])
    assert ok, ext
    return buf.tobytes()


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """The JPEG with an APP1 EXIF segment holding only the Orientation tag."""
    assert jpeg[:2] == b"\xff\xd8"
    tiff = b"MM\x00*" + struct.pack(">I", 8)
    tiff += struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    payload = b"Exif\x00\x00" + tiff
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + segment + jpeg[2:]


def no_face_image() -> np.ndarray:
    """A smooth synthetic scene: sky gradient, a 'hill', texture noise, no face."""
    rng = np.random.default_rng(7)
    h, w = 480, 640
    y = np.linspace(0, 1, h)[:, None]
    sky = np.stack([200 + 40 * y, 150 + 60 * y, 90 + 40 * y], axis=-1) * np.ones((1, w, 1))
    img = sky.astype(np.float32)
    hill = (np.arange(h)[:, None] > 300 + 40 * np.sin(np.arange(w)[None, :] / 60.0))
    img[hill] = (40, 120, 60)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk claiming width x height, and no pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk
