"""Support for tests, benchmarks and sample-event generation (standard library only).

One definition of what the test suite, ``bench/`` and ``infra/make_events.py``
all need: a stand-in for the Lambda context, API Gateway events (re-exported
from the Lambda side, which builds its warm-up requests with them), the
labelled photos and a free local port. Nothing here runs in a request.
"""

from __future__ import annotations

import base64
import csv
import json
import socket
import struct
import uuid
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from .aws_lambda.events import alb_event, http_api_event, rest_api_event

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "FakeLambdaContext",
    "alb_event",
    "LabelledPhoto",
    "data_uri",
    "embed_body",
    "free_port",
    "http_api_event",
    "labelled_photos",
    "no_face_image",
    "phone_size_jpeg",
    "png_header_only",
    "rest_api_event",
    "sqs_record",
]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


@dataclass
class FakeLambdaContext:
    """Stands in for the context object the Lambda runtime passes."""

    function_name: str = "face-recognition"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 2048
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:face-recognition"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/face-recognition"
    log_stream_name: str = "2026/11/28/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


@dataclass(frozen=True)
class LabelledPhoto:
    path: Path
    person: str  # "" where the folder has no labels
    faces: int  # -1 where unknown

    @property
    def name(self) -> str:
        return self.path.name

    @cached_property
    def data(self) -> bytes:
        return self.path.read_bytes()


def labelled_photos(folder: Path, *, single_face: bool = False) -> list[LabelledPhoto]:
    """The photos in ``folder``: from its ``labels.csv`` (file, person, faces) when
    it has one, else every image in it, unlabelled."""
    labels = folder / "labels.csv"
    if labels.is_file():
        with open(labels, newline="") as fh:
            found = [
                LabelledPhoto(folder / r["file"], r["person"], int(r["faces"])) for r in csv.DictReader(fh)
            ]
        return [p for p in found if p.faces == 1] if single_face else found
    return [LabelledPhoto(p, "", -1) for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]


def data_uri(data: bytes, mime: str = "image/jpeg") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def embed_body(data: bytes, mime: str = "image/jpeg") -> bytes:
    """An /embed request body for an image."""
    return json.dumps({"image": data_uri(data, mime)}).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk: length, type, data and the CRC of type and data."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk claiming width x height (8-bit RGB), and no pixels."""
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))


def no_face_image() -> np.ndarray:
    """A smooth synthetic scene: sky gradient, a 'hill', texture noise, no face."""
    import numpy as np

    rng = np.random.default_rng(7)
    h, w = 480, 640
    y = np.linspace(0, 1, h)[:, None]
    sky = np.stack([200 + 40 * y, 150 + 60 * y, 90 + 40 * y], axis=-1) * np.ones((1, w, 1))
    img = sky.astype(np.float32)
    hill = np.arange(h)[:, None] > 300 + 40 * np.sin(np.arange(w)[None, :] / 60.0)
    img[hill] = (40, 120, 60)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def sqs_record(body: object, message_id: str) -> dict[str, object]:
    """One record of an SQS event as Lambda delivers it; a dict body is sent as JSON."""
    return {
        "messageId": message_id,
        "receiptHandle": f"AQEB-{message_id}",
        "body": body if isinstance(body, str) else json.dumps(body),
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1795824000000",
            "SenderId": "123456789012",
            "ApproximateFirstReceiveTimestamp": "1795824000001",
        },
        "messageAttributes": {},
        "md5OfBody": "0" * 32,
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:face-embed",
        "awsRegion": "us-east-1",
    }


def phone_size_jpeg(data: bytes, megapixels: float) -> bytes:
    """A photo scaled up to a phone camera's size (12, 24, 50 MP) and saved as a
    JPEG at quality 92, as a phone would: the large-photo tests and benchmarks."""
    import cv2

    from .imaging import decode_image

    image = decode_image(data, 10**9)
    factor = (megapixels * 1e6 / (image.shape[0] * image.shape[1])) ** 0.5
    big = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    ok, buf = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return bytes(buf)
