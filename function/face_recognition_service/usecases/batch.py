"""/embed/batch (and the queue): many photos, one recogniser pass.

Each photo is decoded, detected and aligned in turn, and only its aligned crops
(37 KB a face) are kept; then every crop of every photo goes through the
recogniser together. Memory is one decoded photo plus the crops, whatever the
batch size. One bad photo gets its own error; the others are unaffected.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..config import Settings
from ..engine import FaceEngine, PreparedFace
from ..engine.selection import MAX_FACES, MAX_FACES_PER_REQUEST
from ..errors import ErrorCode, ServiceError
from ..faces import EmbedOptions, apply_min_quality, prepare_faces
from .embed import ImageSource, render


@dataclass(frozen=True)
class BatchItem:
    id: str
    source: ImageSource  # read in turn: base64 decoding or an S3 read happens then


@dataclass(frozen=True)
class BatchInput:
    items: list[BatchItem]
    options: EmbedOptions


def embed_batch(request: BatchInput, engine: FaceEngine, settings: Settings) -> list[dict[str, Any]]:
    """Each photo's answer (or error) in request order; MAX_BATCH_IMAGES bounds the count."""
    items, options, limits = request.items, request.options, settings.images
    if len(items) > limits.max_batch_images:
        raise ServiceError(
            ErrorCode.INVALID_IMAGE,
            "Too many images in one batch.",
            f"{len(items)} images; at most {limits.max_batch_images} (MAX_BATCH_IMAGES).",
            status=422,
        )
    results: list[dict[str, Any] | None] = [None] * len(items)
    prepared: list[tuple[int, list[PreparedFace], int]] = []
    left = MAX_FACES_PER_REQUEST  # faces this request may still embed
    for index, item in enumerate(items):
        try:
            if left == 0:
                raise too_many_faces()
            # Each photo keeps at most what the request has left (largest faces first).
            cap = min(options.faces.max_faces or MAX_FACES, left)
            capped = replace(options, faces=replace(options.faces, max_faces=cap))
            faces, found = prepare_faces(item.source.read(limits), engine, limits, capped)
            prepared.append((index, faces, found))
            left -= len(faces)
        except ServiceError as exc:
            results[index] = {"id": item.id, **exc.to_dict()}
    crops = [face for _, faces, _ in prepared for face in faces]
    embedded = engine.embed_prepared(crops, options.needs_quality)
    at = 0
    for index, faces, found in prepared:
        mine, at = embedded[at : at + len(faces)], at + len(faces)
        try:
            kept = apply_min_quality(mine, options)
            results[index] = {
                "id": items[index].id,
                **render(kept, options, engine.model_tag, found=found),
            }
        except ServiceError as exc:
            results[index] = {"id": items[index].id, **exc.to_dict()}
    return [r for r in results if r is not None]


def too_many_faces() -> ServiceError:
    return ServiceError(
        ErrorCode.TOO_MANY_FACES,
        "The request's face limit was reached before this photo.",
        f"One request embeds at most {MAX_FACES_PER_REQUEST} faces; send this photo in another request.",
    )


def faces_in(results: list[dict[str, Any]]) -> int:
    """Faces embedded across a batch's results (for metrics)."""
    return sum(r.get("face_count", 1) for r in results if "error_code" not in r)
