"""Request and response shapes of the API (field names as the README documents them)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)

from ..config import MIN_DETECTION_THRESHOLD
from ..engine import FaceOptions, FaceSelection, Verdict
from ..engine.selection import MAX_FACES, MAX_FACES_PER_REQUEST
from ..faces import EmbeddingFormat, EmbedOptions, Include
from ..matching import EMBEDDING_SIZE, DistanceMetric, OperatingPoint
from ..usecases.identify import MAX_TOP_K

MAX_REFERENCES = 10_000
MAX_ID_LENGTH = 256


class Schema(BaseModel):
    """Every request and response model: its validator is built on first use,
    not at import (a cold start builds only the models its first request needs)."""

    model_config = ConfigDict(defer_build=True)


# A JSON number, not a string or a boolean that would convert to one.
StrictFloat = Annotated[float, Field(strict=True)]
_EMBEDDING_EXAMPLE = [0.0123, -0.0456, 0.0789]
FloatList = Annotated[
    list[StrictFloat],
    Field(
        min_length=EMBEDDING_SIZE,
        max_length=EMBEDDING_SIZE,
        # Not all zeros: a zero vector has no direction and is refused.
        json_schema_extra={"contains": {"not": {"const": 0}}},
    ),
]
# Base64 of EMBEDDING_SIZE float32 values, padded: 2,048 bytes are 2,732 characters.
_BASE64_LENGTH = -(-EMBEDDING_SIZE * 4 // 3) * 4
Base64Floats = Annotated[str, StringConstraints(min_length=_BASE64_LENGTH, max_length=_BASE64_LENGTH)]


def _vector_or_wire(value: object, handler: ValidatorFunctionWrapHandler) -> object:
    """An array of numbers arrives as a numpy array (``load_plain``): checked
    for its length here; a list or a base64 string goes through the declared types."""
    if isinstance(value, np.ndarray):
        if value.shape != (EMBEDDING_SIZE,):
            raise ValueError(f"an embedding holds {EMBEDDING_SIZE} numbers (got {value.size})")
        return value
    return handler(value)


Embedding = Annotated[
    FloatList | Base64Floats,
    WrapValidator(_vector_or_wire),
    Field(
        description=f"{EMBEDDING_SIZE} floats (what /embed returns), or the same as base64 of little-endian "
        "float32 bytes (`embedding_format=base64`). Compared after L2 normalisation; must not be all zeros.",
        examples=[_EMBEDDING_EXAMPLE],
    ),
]
ModelTag = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200),
    Field(
        description="The model tag that produced an embedding (`model` in /embed answers); "
        "embeddings of different tags are refused with MODEL_MISMATCH.",
        examples=["buffalo_sc/w600k_mbf@5e4b4c5a"],
    ),
]
ReferenceId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_ID_LENGTH),
    Field(description="The caller's identifier for this embedding (returned as is).", examples=["user_001"]),
]
IMAGE_DESCRIPTION = (
    "The photo as a data URI (`data:image/jpeg;base64,...`) or bare base64 of the file's bytes "
    "(not a URL or a file path). JPEG, PNG, WebP or BMP; EXIF orientation is applied."
)
# A real 1x1 JPEG: the schema's example decodes (and gets NO_FACE_DETECTED, not INVALID_IMAGE).
IMAGE_EXAMPLE = (
    "data:image/jpeg;base64,/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHRofHh0aHBwgJC4nICIs"
    "IxwcKDcpLDAxNDQ0Hyc5PTgyPC4zNDL/wAALCAABAAEBAREA/8QAFAABAAAAAAAAAAAAAAAAAAAACf/EABQQAQAAAAAAAAAAAAAAAAAAAAD/2gAI"
    "AQEAAD8AKp//2Q=="
)


class FaceRequestOptions(Schema):
    """Options of every request that embeds a photo."""

    model_config = ConfigDict(extra="ignore")

    face_selection: FaceSelection = Field(
        default=FaceSelection.SINGLE,
        description="`single` (default): exactly one face, else MULTIPLE_FACES_DETECTED. `largest`: the "
        "biggest face. `all`: every face, answered as `faces` (largest first).",
    )
    max_faces: int | None = Field(
        strict=True,
        default=None,
        ge=1,
        le=MAX_FACES,
        description=f"With `all`: at most this many, the largest first (default and most: {MAX_FACES}; "
        f"a batch embeds at most {MAX_FACES_PER_REQUEST} faces in all).",
    )
    min_face_size: int | None = Field(
        strict=True,
        default=None,
        ge=0,
        le=10_000,
        description="Count only faces at least this many pixels (the shorter side of the box, in the photo's "
        "pixels); default: MIN_FACE_SIZE (32). 0 counts every face.",
    )
    detection_threshold: float | None = Field(
        strict=True,
        default=None,
        ge=MIN_DETECTION_THRESHOLD,
        lt=1.0,
        description=f"Detector score a face needs, {MIN_DETECTION_THRESHOLD} or more "
        "(default: DETECTION_THRESHOLD).",
    )
    include: list[Include] = Field(
        default_factory=list, description="Optional blocks: `quality`, `bbox`, `landmarks`.", max_length=3
    )
    min_quality: Literal["acceptable", "good"] | None = Field(
        default=None,
        description="Refuse a face whose quality verdict is below this with LOW_QUALITY (422), naming the reasons.",
    )
    embedding_format: EmbeddingFormat = Field(
        default=EmbeddingFormat.FLOAT, description="`float` (a list) or `base64` (little-endian float32)."
    )
    aligned: bool = Field(
        strict=True,
        default=False,
        description="The image is a 112x112 face crop already aligned the ArcFace way: no detection.",
    )


S3_DESCRIPTION = (
    "Instead of `image`: an object in S3 (`s3://bucket/key`), read with the function's role from the "
    "buckets the operator allows (IMAGE_S3_BUCKETS). Lifts the 6 MB Lambda request limit."
)


class OneImage(Schema):
    """`image` or `image_s3_uri`, exactly one (/embed, /embed/batch items, queue messages)."""

    image: str | None = Field(
        default=None, min_length=1, description=IMAGE_DESCRIPTION, examples=[IMAGE_EXAMPLE]
    )
    image_s3_uri: str | None = Field(
        default=None,
        min_length=6,
        max_length=2048,
        description=S3_DESCRIPTION,
        examples=["s3://photos/u1.jpg"],
    )

    @model_validator(mode="after")
    def _one_image(self) -> OneImage:
        if (self.image is None) == (self.image_s3_uri is None):
            raise ValueError("give exactly one of image or image_s3_uri")
        return self


class EmbedRequest(FaceRequestOptions, OneImage):
    """An /embed request in JSON: the photo and the face options."""


class BatchImage(OneImage):
    id: ReferenceId


class EmbedBatchRequest(FaceRequestOptions):
    images: list[BatchImage] = Field(
        min_length=1, max_length=256, description="The photos, each with your id (at most MAX_BATCH_IMAGES)."
    )


class BatchResult(Schema):
    """One item of /embed/batch: its id and either the /embed answer's fields or its own error
    (any /embed error code, or TOO_MANY_FACES once the request's faces are used up)."""

    model_config = ConfigDict(extra="allow")

    id: str
    error: str | None = None
    error_code: str | None = None
    detail: str | None = None


class EmbedBatchResponse(Schema):
    results: list[BatchResult] = Field(description="In request order.")
    model: str


class QualityBlock(Schema):
    score: float = Field(description="0 to 1; geometric mean of the measures' sub-scores.")
    verdict: Literal["good", "acceptable", "poor"]
    reasons: list[str] = Field(
        description="Stable codes: face_too_small, pose_yaw, pose_pitch, pose_roll, blurry, too_dark, too_bright, "
        "low_contrast, low_detection_score, face_cut_off, low_recognisability."
    )
    interocular_px: float
    yaw: float
    pitch: float
    roll: float
    sharpness: float
    brightness: float
    contrast: float
    visible_fraction: float
    edge_margin: float
    embedding_norm: float


class FaceResult(Schema):
    embedding: list[float] | str
    detection_score: float
    bbox: list[float] | None = Field(default=None, description="x1, y1, x2, y2 in image pixels.")
    landmarks: list[list[float]] | None = Field(
        default=None, description="Five points: eyes, nose tip, mouth corners (image pixels)."
    )
    quality: QualityBlock | None = None


class EmbedResponse(Schema):
    embedding: list[float] | str | None = Field(
        default=None, description="512 floats, unit L2 norm (or base64 with embedding_format=base64)."
    )
    face_detected: bool | None = Field(default=None, description="True on success: the face was found.")
    detection_score: float | None = Field(default=None, description="The detector's confidence, 0 to 1.")
    model: str = Field(description="The model tag of the embedding: compare only embeddings of one tag.")
    bbox: list[float] | None = None
    landmarks: list[list[float]] | None = None
    quality: QualityBlock | None = None
    faces: list[FaceResult] | None = Field(default=None, description="With face_selection `all`.")
    face_count: int | None = None
    faces_left_out: int | None = Field(
        default=None,
        description=f"Faces found but not returned (selection `all`): beyond `max_faces` (at most {MAX_FACES}), "
        "or below `min_quality`.",
    )


class ReferenceEmbedding(Schema):
    model_config = ConfigDict(extra="ignore")

    id: ReferenceId
    embedding: Embedding
    model: ModelTag | None = None


class CompareRequest(Schema):
    model_config = ConfigDict(extra="ignore")

    query_embedding: Embedding
    reference_embeddings: list[ReferenceEmbedding] = Field(
        min_length=1, max_length=MAX_REFERENCES, description="One or more references, each with an id."
    )
    distance_metric: DistanceMetric = Field(
        default=DistanceMetric.COSINE, description="`cosine` (default) or `euclidean`."
    )
    query_model: ModelTag | None = None
    group_by_id: bool = Field(
        strict=True,
        default=False,
        description="One match per id, scored by its best reference (several enrolment photos of one person).",
    )


class Match(Schema):
    id: str
    distance: float = Field(
        description="cosine: 1 - cos(angle), 0 to 2. euclidean: distance between the "
        "L2-normalised vectors, 0 to 2. Smaller is more alike."
    )
    similarity: float = Field(
        description="cos(angle) between the L2-normalised vectors, -1 to 1, for both metrics; larger is more alike."
    )
    templates: int | None = Field(default=None, description="With group_by_id: references of this id.")


class CompareResponse(Schema):
    matches: list[Match] = Field(description="Every reference (or id), best match first.")
    best_match: Match
    distance_metric: DistanceMetric


class ProbeRequest(FaceRequestOptions):
    """/verify's and /identify's probe: a photo or an embedding, and the threshold."""

    image: str | None = Field(
        default=None, min_length=1, description=IMAGE_DESCRIPTION + " Give `image` or `embedding`."
    )
    embedding: Embedding | None = Field(
        default=None, description="The probe as an embedding instead of a photo."
    )
    model: ModelTag | None = Field(
        default=None, description="Model tag of `embedding` (an image's is known)."
    )
    threshold: float | None = Field(
        strict=True,
        default=None,
        ge=-1.0,
        le=1.0,
        description="Similarity needed for a match (overrides operating_point).",
    )

    image_s3_uri: str | None = Field(
        default=None, min_length=6, max_length=2048, description="Instead of `image`: " + S3_DESCRIPTION
    )

    @model_validator(mode="after")
    def _one_probe(self) -> ProbeRequest:
        if sum(v is not None for v in (self.image, self.image_s3_uri, self.embedding)) != 1:
            raise ValueError("give exactly one of image, image_s3_uri or embedding")
        return self


class VerifyRequest(ProbeRequest):
    references: list[ReferenceEmbedding] = Field(
        min_length=1,
        max_length=MAX_REFERENCES,
        description="Enrolled templates; several may share an id (a person's score is their best template).",
    )
    operating_point: OperatingPoint | None = Field(
        default=None, description="`strict`, `balanced` or `lenient` (default: the OPERATING_POINT setting)."
    )


class ScoredId(Schema):
    id: str
    similarity: float


class VerifyResponse(Schema):
    match: bool = Field(description="similarity >= threshold.")
    similarity: float = Field(description="Cosine similarity of the best person (their best template).")
    threshold: float
    operating_point: str = Field(
        description="`strict`, `balanced`, `lenient`, or `custom` (a given threshold)."
    )
    best_match: ScoredId
    runner_up: ScoredId | None = Field(description="The best other id, or null with one id.")
    margin: float | None = Field(description="best_match - runner_up similarity; null with one id.")
    ambiguous: bool = Field(description="A match whose runner-up is within 0.1 similarity (see the README).")
    model: str | None
    detection_score: float | None = None
    quality: QualityBlock | None = None


class IdentifyRequest(ProbeRequest):
    gallery: str = Field(
        min_length=1,
        max_length=1024,
        description="The snapshot to search: `s3://bucket/key` (a bucket in GALLERY_S3_BUCKETS) or, on a "
        "plain server, a file name in GALLERY_DIR. Build it with `python -m face_recognition_service.gallery build`.",
        examples=["s3://my-galleries/staff.frg", "staff.frg"],
    )
    references: list[ReferenceEmbedding] = Field(
        default_factory=list,
        max_length=MAX_REFERENCES,
        description="People enrolled since the snapshot was built (searched with it).",
    )
    exclude_ids: list[ReferenceId] = Field(
        default_factory=list,
        max_length=MAX_REFERENCES,
        description="Ids deleted since the snapshot was built: never returned from the snapshot.",
    )
    top_k: int = Field(
        strict=True, default=5, ge=1, le=MAX_TOP_K, description="Candidates to return (one per person)."
    )
    operating_point: OperatingPoint | None = Field(
        default=None,
        description="`strict`, `balanced` or `lenient`; its identification threshold grows with the gallery's "
        "size (see /model-info `identification`).",
    )


class GalleryInfo(Schema):
    size: int = Field(description="Embeddings in the snapshot.")
    persons: int = Field(description="Distinct ids in the snapshot.")
    hash: str = Field(
        description="The content hash of the version that answered (`gallery inspect` prints it): every id and "
        "similarity in the answer comes from it."
    )
    model: str
    stale: bool = Field(
        description="True when a newer file was refused (damaged, half written) and the last good version answered."
    )
    stale_detail: str | None = Field(
        default=None, description="Why the newer file was refused, when `stale`."
    )


class IdentifiedFace(Schema):
    bbox: list[float]
    detection_score: float
    candidates: list[ScoredId]
    identity: str | None = Field(description="The person assigned to this face (one-to-one), or null.")
    similarity: float | None
    match: bool


class IdentifyResponse(Schema):
    candidates: list[ScoredId] | None = Field(default=None, description="Best first, one entry per person.")
    match: bool | None = Field(default=None, description="best_match similarity >= threshold.")
    identity: str | None = Field(default=None, description="best_match's id when it is a match, else null.")
    best_match: ScoredId | None = None
    margin: float | None = None
    ambiguous: bool | None = None
    faces: list[IdentifiedFace] | None = Field(default=None, description="With face_selection `all`.")
    face_count: int | None = None
    faces_left_out: int | None = Field(
        default=None,
        description="Faces found but not searched (selection `all`): beyond `max_faces` or below `min_quality`.",
    )
    threshold: float
    operating_point: str
    expected_fpir: float = Field(
        description="Expected share of people not enrolled who would still match someone at this threshold "
        "in a gallery this size (normal fit of measured impostor scores: an order of magnitude)."
    )
    gallery: GalleryInfo
    model: str | None
    detection_score: float | None = None
    quality: QualityBlock | None = None


class HealthResponse(Schema):
    status: str = Field(description="`healthy` when the model is loaded, else `unhealthy`.")
    model_loaded: bool
    model_name: str
    detail: str | None = Field(default=None, description="Why the model is not loaded.")


class ModelInfoResponse(Schema):
    name: str
    embedding_size: int
    backend: str
    device: str
    model: str = Field(description="The tag every embedding of this model carries.")
    thresholds: dict[str, float] = Field(description="Similarity threshold of each operating point.")
    identification: dict[str, dict[str, Any]] = Field(
        description="/identify: each operating point's target false-positive identification rate and its "
        "threshold at a few gallery sizes (persons)."
    )
    default_operating_point: str
    ambiguity_margin: float


class ErrorResponse(Schema):
    error: str
    error_code: str
    detail: str | None = None


def embed_options(body: FaceRequestOptions) -> EmbedOptions:
    return EmbedOptions(
        faces=FaceOptions(
            selection=body.face_selection,
            max_faces=body.max_faces,
            min_face_size=body.min_face_size,
            detection_threshold=body.detection_threshold,
        ),
        include=frozenset(body.include),
        min_quality=Verdict(body.min_quality) if body.min_quality else None,
        embedding_format=body.embedding_format,
        aligned=body.aligned,
    )
