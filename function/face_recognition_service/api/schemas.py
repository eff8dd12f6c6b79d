"""Request and response shapes of the API (field names as the README documents them)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..matching import DistanceMetric

MAX_REFERENCES = 10_000
MAX_ID_LENGTH = 256

Embedding = Annotated[
    list[float],
    Field(min_length=1, description="Embedding vector; /embed returns 512 L2-normalised floats."),
]


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    image: str = Field(
        description="The photo as a data URI (`data:image/jpeg;base64,...`) or bare base64. "
        "JPEG, PNG, WebP or BMP; EXIF orientation is applied.",
        examples=["data:image/jpeg;base64,/9j/4AAQSkZJRgABAQEA..."],
    )


class EmbedResponse(BaseModel):
    embedding: list[float] = Field(description="512 floats, unit L2 norm.")
    face_detected: bool = Field(description="Always true on success: exactly one face was found.")
    detection_score: float = Field(description="The detector's confidence for the face, 0 to 1.")


class ReferenceEmbedding(BaseModel):
    id: Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)] = Field(
        description="The caller's identifier for this embedding (returned as is)."
    )
    embedding: Embedding


class CompareRequest(BaseModel):
    query_embedding: Embedding
    reference_embeddings: list[ReferenceEmbedding] = Field(
        min_length=1, max_length=MAX_REFERENCES, description="One or more references, each with an id."
    )
    distance_metric: DistanceMetric = Field(
        default=DistanceMetric.COSINE, description="`cosine` (default) or `euclidean`."
    )


class Match(BaseModel):
    id: str
    distance: float = Field(
        description="cosine: 1 - cos(angle), 0 to 2. euclidean: distance between the "
        "L2-normalised vectors, 0 to 2. Smaller is more alike."
    )
    similarity: float = Field(
        description="cos(angle) between the L2-normalised vectors, -1 to 1, for both "
        "metrics; larger is more alike."
    )


class CompareResponse(BaseModel):
    matches: list[Match] = Field(description="Every reference, best match first.")
    best_match: Match
    distance_metric: DistanceMetric


class HealthResponse(BaseModel):
    status: str = Field(description="`healthy` when the model is loaded, else `unhealthy`.")
    model_loaded: bool
    model_name: str


class ModelInfoResponse(BaseModel):
    name: str
    embedding_size: int
    backend: str
    device: str


class ErrorResponse(BaseModel):
    error: str
    error_code: str
    detail: str | None = None
