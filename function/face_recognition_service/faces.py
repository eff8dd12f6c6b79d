"""Photo -> faces: decode (at the reduction the detector needs), detect, select,
align, embed and apply min_quality. The use cases (``usecases``) build answers
from what this returns."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

import numpy as np

from .config import ImageLimits
from .engine import FaceEmbedding, FaceEngine, FaceOptions, PreparedFace, Verdict
from .errors import ErrorCode, ServiceError
from .imaging import (
    ImageInfo,
    area_reduce,
    dct_scalable,
    decode_image,
    probe,
    reduction,
    upright_size,
)
from .timing import Stages


class Include(StrEnum):
    """Optional blocks of an embed answer."""

    QUALITY = "quality"
    BBOX = "bbox"
    LANDMARKS = "landmarks"


class EmbeddingFormat(StrEnum):
    FLOAT = "float"  # a JSON list of 512 floats
    BASE64 = "base64"  # little-endian float32 bytes in base64 (~1/4 of the text)


@dataclass(frozen=True)
class EmbedOptions:
    faces: FaceOptions = field(default_factory=FaceOptions)
    include: frozenset[Include] = frozenset()
    min_quality: Verdict | None = None
    embedding_format: EmbeddingFormat = EmbeddingFormat.FLOAT
    aligned: bool = False

    @property
    def needs_quality(self) -> bool:
        return Include.QUALITY in self.include or self.min_quality is not None


# The recogniser's 112 px crop has the eyes 35.2 px apart. A face whose eyes
# are at least this far apart in a reduced image is cropped from it without
# upsampling (the DCT reduction, or the area average for other formats, is a
# proper low-pass, so the crop is as good as one from full resolution, and a
# face far larger than the crop is averaged down further before the warp); a
# smaller face is aligned again from an image with enough resolution for it.
# 48 px (the earlier margin) sent 4 of the 34 phone-size photos through a second
# decode for no gain: from the reduced decode they came out as close to the
# original photo's embedding or closer (docs/benchmarks.md#large-photos).
MIN_SOURCE_EYES = 36.0


def prepare_faces(
    data: bytes, engine: FaceEngine, limits: ImageLimits, options: EmbedOptions, stages: Stages | None = None
) -> tuple[list[PreparedFace], int]:
    """Decode, then detect, select and align (or take an aligned crop as it is);
    and how many faces were found before the cap (``FaceEngine.select``).

    A large image is detected and cropped at a reduction that leaves the
    detector its DET_SIZE pixels (a 24 MP photo at 1/4 or 1/8): a JPEG is
    decoded at that reduction (only the faces too small for it cost a second,
    finer decode); any other format is decoded in full and area-averaged to the
    same size, so a photo embeds alike whichever container it comes in. Boxes
    and landmarks are in the original (upright) image's pixels either way."""
    stages = stages or Stages()
    info = probe(data)
    reduce = 1 if options.aligned or not limits.reduced_decode else reduction(info, engine.det_size)
    image, full = _decode(data, info, limits, reduce)
    stages.mark("decode")
    stages.note(image_bytes=len(data), width=info.width, height=info.height, reduced=reduce)
    if options.aligned:
        return [engine.aligned_face(image)], 1
    # The upright size: the decoders apply EXIF orientation.
    size = (full.shape[1], full.shape[0]) if full is not None else upright_size(info)
    faces, found = engine.prepare(
        image, _in_image_pixels(options.faces, engine, image, size), antialias=reduce > 1
    )
    stages.mark("detect")
    if reduce == 1:
        return faces, found
    scale = np.array([size[0] / image.shape[1], size[1] / image.shape[0]], np.float32)
    del image  # past detection; a finer decode may take its memory
    eyes = [_eye_distance(f.landmarks) for f in faces]
    finer = None
    if min(eyes) < MIN_SOURCE_EYES:
        # The coarsest reduction at which the smallest face has enough pixels.
        factor = next((r for r in (4, 2) if r < reduce and min(eyes) * reduce / r >= MIN_SOURCE_EYES), 1)
        finer = _finer_image(data, info, limits, full, factor)
        stages.mark("decode_finer")
        stages.note(finer=factor)
    del full
    return [_in_original_pixels(f, scale, size, finer, engine) for f in faces], found


def _in_image_pixels(
    options: FaceOptions, engine: FaceEngine, image: np.ndarray, size: tuple[int, int]
) -> FaceOptions:
    """The smallest counted face (a request's, else the setting's) is in the
    photo's own pixels: in a reduced image it is that much smaller."""
    min_face = engine.min_face_size if options.min_face_size is None else options.min_face_size
    return replace(options, min_face_size=int(min_face * image.shape[1] / size[0]))


def _decode(
    data: bytes, info: ImageInfo, limits: ImageLimits, reduce: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """The image the detector sees, and another format's full-size pixels, kept
    for faces that need more resolution than the reduction left them (a JPEG
    decodes again instead: None)."""
    image = decode_image(data, limits.max_image_pixels, limits.decode_budget_bytes, reduce=reduce, info=info)
    if dct_scalable(info) or reduce == 1:
        return image, None
    return area_reduce(image, reduce), image


def _eye_distance(landmarks: np.ndarray) -> float:
    return float(np.linalg.norm(landmarks[1] - landmarks[0]))


def _finer_image(
    data: bytes, info: ImageInfo, limits: ImageLimits, full: np.ndarray | None, finer: int
) -> np.ndarray | None:
    """The image at the finer reduction; None where decoding it would not fit
    DECODE_BUDGET_MB (a progressive JPEG's coefficients grow with the finer
    scale's pixels): the faces keep their crops from the coarser decode."""
    if full is not None:
        return area_reduce(full, finer)
    if info.working_bytes(finer) > limits.decode_budget_bytes:
        return None
    return decode_image(data, limits.max_image_pixels, limits.decode_budget_bytes, reduce=finer, info=info)


def _in_original_pixels(
    face: PreparedFace, scale: np.ndarray, size: tuple[int, int], finer: np.ndarray | None, engine: FaceEngine
) -> PreparedFace:
    """The face in the original (upright) photo's pixels; a small face's
    landmarks refined and its crop taken again from the finer image."""
    width, height = size
    landmarks: np.ndarray = face.landmarks * scale
    box = face.box * np.tile(scale, 2)
    crop = face.crop
    if finer is not None and _eye_distance(face.landmarks) < MIN_SOURCE_EYES:
        to_finer = np.array([finer.shape[1] / width, finer.shape[0] / height], np.float32)
        refined = engine.refine(finer, box * np.tile(to_finer, 2), landmarks * to_finer)
        crop = engine.align(finer, refined, antialias=True)
        landmarks = (refined / to_finer).astype(np.float32)
    return PreparedFace(crop, face.detection_score, box, landmarks, (height, width))


def apply_min_quality(faces: list[FaceEmbedding], options: EmbedOptions) -> list[FaceEmbedding]:
    """The faces at or above min_quality. One face below it (or, with selection
    ``all``, every face below it) is LOW_QUALITY, naming the reasons."""
    bar = options.min_quality
    if bar is None:
        return faces
    kept = [f for f in faces if f.quality is not None and f.quality.verdict.rank >= bar.rank]
    if not kept:
        worst = faces[0].quality
        assert worst is not None
        raise ServiceError(
            ErrorCode.LOW_QUALITY,
            "The face is not good enough for the quality asked for.",
            f"Quality is {worst.verdict.value} (score {worst.score}), min_quality is {bar.value}; "
            f"reasons: {', '.join(worst.reasons) or 'none'}.",
            faces=len(faces),
        )
    return kept


def find_faces(
    data: bytes, engine: FaceEngine, limits: ImageLimits, options: EmbedOptions, stages: Stages | None = None
) -> tuple[list[FaceEmbedding], int]:
    """Decode, detect, select, embed and apply min_quality: the faces kept, and
    how many were found (before the face cap and min_quality)."""
    stages = stages or Stages()
    prepared, found = prepare_faces(data, engine, limits, options, stages)
    faces = engine.embed_prepared(prepared, options.needs_quality)
    stages.mark("embed")
    return apply_min_quality(faces, options), found
