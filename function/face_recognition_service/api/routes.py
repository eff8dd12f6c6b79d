"""The API's endpoints under /api/v1 (see the README for each)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from ..config import Settings
from ..engine import FaceEmbedding, FaceEngine
from ..errors import HTTP_STATUS, ErrorCode
from ..imaging import decode_base64_image, decode_image
from ..matching import rank, to_matrix
from .bodies import body_schema, parse_body, validate_json
from .compare_parser import CompareArrays, parse_compare
from .deps import EngineDep, ModelDep, Protected, SettingsDep
from .responses import ORJSONResponse
from .schemas import (
    CompareRequest,
    CompareResponse,
    EmbedRequest,
    EmbedResponse,
    ErrorResponse,
    HealthResponse,
    ModelInfoResponse,
)

router = APIRouter(prefix="/api/v1", default_response_class=ORJSONResponse)


def _errors(*codes: ErrorCode) -> dict[int | str, dict[str, object]]:
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
def health(model: ModelDep, settings: SettingsDep) -> ORJSONResponse:
    loaded = model.engine is not None
    body = {
        "status": "healthy" if loaded else "unhealthy",
        "model_loaded": loaded,
        "model_name": settings.model_name,
    }
    return ORJSONResponse(body, status_code=200 if loaded else 503)


@router.get(
    "/model-info",
    dependencies=Protected,
    response_model=ModelInfoResponse,
    summary="The loaded face model",
    responses=_errors(ErrorCode.MODEL_NOT_LOADED, ErrorCode.UNAUTHORIZED),
)
def model_info(engine: EngineDep) -> ORJSONResponse:
    return ORJSONResponse(
        {
            "name": engine.model_name,
            "embedding_size": engine.embedding_size,
            "backend": "insightface",
            "device": engine.device,
        }
    )


@router.post(
    "/embed",
    dependencies=Protected,
    response_model=EmbedResponse,
    summary="Extract the embedding of the one face in a photo",
    openapi_extra=body_schema(EmbedRequest),
    responses=_errors(
        ErrorCode.INVALID_IMAGE,
        ErrorCode.NO_FACE_DETECTED,
        ErrorCode.MULTIPLE_FACES_DETECTED,
        ErrorCode.IMAGE_TOO_LARGE,
        ErrorCode.UNSUPPORTED_FORMAT,
        ErrorCode.MODEL_NOT_LOADED,
        ErrorCode.PROCESSING_ERROR,
        ErrorCode.UNAUTHORIZED,
    ),
)
async def embed(request: Request, engine: EngineDep, settings: SettingsDep) -> ORJSONResponse:
    body = await parse_body(request, EmbedRequest, ErrorCode.INVALID_IMAGE)
    face = await run_in_threadpool(_embed_image, body.image, engine, settings)
    request.state.faces = 1
    return ORJSONResponse(
        {
            "embedding": face.embedding,
            "face_detected": True,
            "detection_score": round(face.detection_score, 6),
        }
    )


def _embed_image(image: str, engine: FaceEngine, settings: Settings) -> FaceEmbedding:
    data = decode_base64_image(image, settings.max_image_size)
    return engine.embed_single(decode_image(data, settings.max_image_pixels, settings.decode_budget_bytes))


@router.post(
    "/compare",
    dependencies=Protected,
    response_model=CompareResponse,
    summary="Rank reference embeddings by distance to a query embedding",
    openapi_extra=body_schema(CompareRequest),
    responses=_errors(ErrorCode.INVALID_EMBEDDING, ErrorCode.UNAUTHORIZED),
)
async def compare(request: Request) -> ORJSONResponse:
    # Parsing a large body costs more than ranking it: both run off the event loop.
    return await run_in_threadpool(_compare, await request.body())


def _compare(raw: bytes) -> ORJSONResponse:
    arrays = parse_compare(raw)
    if arrays is None:  # not plainly valid: pydantic decides, with its error messages
        body = validate_json(raw, CompareRequest, ErrorCode.INVALID_EMBEDDING)
        refs = body.reference_embeddings
        query, matrix = to_matrix(body.query_embedding, [ref.embedding for ref in refs])
        arrays = CompareArrays(query, [ref.id for ref in refs], matrix, body.distance_metric)
    ranking = rank(arrays.query, arrays.references, arrays.metric)
    ids = arrays.ids
    matches = [
        {"id": ids[i], "distance": d, "similarity": s}
        for i, d, s in zip(
            ranking.order.tolist(), ranking.distances.tolist(), ranking.similarities.tolist(), strict=True
        )
    ]
    return ORJSONResponse(
        {
            "matches": matches,
            "best_match": matches[0],
            "distance_metric": arrays.metric.value,
        }
    )
