"""Embed: one photo in, its face (or faces) as the /embed answer's fields out.
The HTTP route and the queue handler both call ``embed``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import ImageLimits, Settings
from ..engine import FaceEmbedding, FaceEngine, FaceSelection
from ..faces import EmbeddingFormat, EmbedOptions, Include, find_faces
from ..imaging import decode_base64_image
from ..matching import encode_embedding
from ..s3_images import fetch_image
from ..timing import Stages


@dataclass(frozen=True)
class ImageSource:
    """Where a photo comes from: exactly one of base64 (or a data URI), an S3 URI
    (from the allowed buckets) or the file's bytes as they arrived."""

    base64: str | None = None
    s3_uri: str | None = None
    data: bytes | None = None

    def read(self, limits: ImageLimits) -> bytes:
        if self.s3_uri is not None:
            return fetch_image(self.s3_uri, list(limits.s3_buckets), limits.max_image_size)
        if self.base64 is not None:
            return decode_base64_image(self.base64, limits.max_image_size)
        assert self.data is not None
        return self.data


@dataclass(frozen=True)
class EmbedInput:
    source: ImageSource
    options: EmbedOptions


def _vector(vector: np.ndarray, fmt: EmbeddingFormat) -> Any:
    return encode_embedding(vector) if fmt is EmbeddingFormat.BASE64 else vector


def face_fields(
    face: FaceEmbedding, options: EmbedOptions, *, always_geometry: bool = False
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "embedding": _vector(face.embedding, options.embedding_format),
        "detection_score": round(face.detection_score, 6),
    }
    if always_geometry or Include.BBOX in options.include:
        out["bbox"] = [round(float(v), 1) for v in face.box]
    if (always_geometry or Include.LANDMARKS in options.include) and face.landmarks is not None:
        out["landmarks"] = [[round(float(x), 1), round(float(y), 1)] for x, y in face.landmarks]
    if Include.QUALITY in options.include and face.quality is not None:
        out["quality"] = face.quality.as_dict()
    return out


def render(faces: list[FaceEmbedding], options: EmbedOptions, model_tag: str, found: int) -> dict[str, Any]:
    """The /embed answer: the seed's single-face shape, or ``faces`` for selection ``all``."""
    if options.faces.selection is FaceSelection.ALL and not options.aligned:
        out: dict[str, Any] = {
            "faces": [face_fields(f, options, always_geometry=True) for f in faces],
            "face_count": len(faces),
            "model": model_tag,
        }
        if found != len(faces):
            out["faces_left_out"] = found - len(faces)
        return out
    fields = face_fields(faces[0], options)
    # The original contract's order first: embedding, face_detected, detection_score.
    return {
        "embedding": fields.pop("embedding"),
        "face_detected": True,
        "detection_score": fields.pop("detection_score"),
        "model": model_tag,
        **fields,
    }


def embed(
    request: EmbedInput, engine: FaceEngine, settings: Settings, stages: Stages | None = None
) -> dict[str, Any]:
    stages = stages or Stages()
    data = request.source.read(settings.images)
    stages.mark("read_image")
    kept, found = find_faces(data, engine, settings.images, request.options, stages)
    stages.note(faces=len(kept))
    return render(kept, request.options, engine.model_tag, found=found)
