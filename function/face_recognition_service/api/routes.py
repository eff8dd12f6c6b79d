"""The seed's four endpoints under /api/v1."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from ..config import Settings
from ..engine import FaceEngine, ModelState
from ..errors import ErrorCode, ServiceError
from ..imaging import decode_base64_image, decode_image
from ..matching import rank, to_matrix
from .responses import FastJSONResponse
from .schemas import (
    CompareRequest,
    CompareResponse,
    EmbedRequest,
    EmbedResponse,
    ErrorResponse,
    HealthResponse,
    ModelInfoResponse,
)

router = APIRouter(prefix="/api/v1", default_response_class=FastJSONResponse)


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_model(request: Request) -> ModelState:
    model: ModelState = request.app.state.model
    return model


def get_engine(model: Annotated[ModelState, Depends(get_model)]) -> FaceEngine:
    if model.engine is None:
        raise ServiceError(ErrorCode.MODEL_NOT_LOADED, "The face model is not loaded.", model.error)
    return model.engine


def require_api_key(request: Request) -> None:
    source = request.app.state.api_key
    if source is None:
        return
    expected = source()
    given = request.headers.get("x-api-key", "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise ServiceError(ErrorCode.UNAUTHORIZED, "A valid API key is required.",
                           "Send it in the x-api-key header.")


Protected = [Depends(require_api_key)]

SettingsDep = Annotated[Settings, Depends(get_settings)]
ModelDep = Annotated[ModelState, Depends(get_model)]
EngineDep = Annotated[FaceEngine, Depends(get_engine)]


def _errors(*codes: ErrorCode) -> dict[int | str, dict[str, object]]:
    from ..errors import HTTP_STATUS

    out: dict[int | str, dict[str, object]] = {}
    for code in codes:
        entry = out.setdefault(HTTP_STATUS[code], {"model": ErrorResponse, "description": ""})
        entry["description"] = ", ".join(filter(None, [str(entry["description"]), code.value]))
    out.setdefault(422, {"model": ErrorResponse, "description": "Request validation failed"})
    return out


@router.get(
    "/health",
    response_model=HealthResponse,
    summary="Is the service up and the model loaded",
    responses={503: {"model": HealthResponse, "description": "Model not loaded"}},
)
def health(model: ModelDep, settings: SettingsDep) -> FastJSONResponse:
    loaded = model.engine is not None
    body = {"status": "healthy" if loaded else "unhealthy", "model_loaded": loaded,
            "model_name": settings.model_name}
    return FastJSONResponse(body, status_code=200 if loaded else 503)


@router.get(
    "/model-info",
    dependencies=Protected,
    response_model=ModelInfoResponse,
    summary="The loaded face model",
    responses=_errors(ErrorCode.MODEL_NOT_LOADED, ErrorCode.UNAUTHORIZED),
)
def model_info(engine: EngineDep) -> FastJSONResponse:
    return FastJSONResponse({
        "name": engine.model_name,
        "embedding_size": engine.embedding_size,
        "backend": "insightface",
        "device": engine.device,
    })


@router.post(
    "/embed",
    dependencies=Protected,
    response_model=EmbedResponse,
    summary="Extract the embedding of the one face in a photo",
    responses=_errors(
        ErrorCode.INVALID_IMAGE, ErrorCode.NO_FACE_DETECTED, ErrorCode.MULTIPLE_FACES_DETECTED,
        ErrorCode.IMAGE_TOO_LARGE, ErrorCode.UNSUPPORTED_FORMAT, ErrorCode.MODEL_NOT_LOADED,
        ErrorCode.PROCESSING_ERROR, ErrorCode.UNAUTHORIZED,
    ),
)
def embed(body: EmbedRequest, request: Request, engine: EngineDep, settings: SettingsDep) -> FastJSONResponse:
    data = decode_base64_image(body.image, settings.max_image_size)
    image = decode_image(data, settings.max_image_pixels)
    face = engine.embed_single(image)
    request.state.faces = 1
    return FastJSONResponse({
        "embedding": face.embedding,
        "face_detected": True,
        "detection_score": round(face.detection_score, 6),
    })


@router.post(
    "/compare",
    dependencies=Protected,
    response_model=CompareResponse,
    summary="Rank reference embeddings by distance to a query embedding",
    responses=_errors(ErrorCode.INVALID_EMBEDDING, ErrorCode.UNAUTHORIZED),
)
def compare(body: CompareRequest) -> FastJSONResponse:
    refs = body.reference_embeddings
    query, matrix = to_matrix(body.query_embedding, [ref.embedding for ref in refs])
    ranking = rank(query, matrix, body.distance_metric)
    matches = [
        {"id": refs[i].id, "distance": d, "similarity": s}
        for i, d, s in zip(ranking.order.tolist(), ranking.distances.tolist(),
                           ranking.similarities.tolist(), strict=False)
    ]
    return FastJSONResponse({
        "matches": matches,
        "best_match": matches[0],
        "distance_metric": body.distance_metric.value,
    })
