"""The API's endpoints under /api/v1 (see the README for each)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from ..config import Settings
from ..embedding import EmbedOptions, Include, embed_bytes, find_faces
from ..engine import FaceEngine, FaceOptions, FaceSelection, ModelState, Verdict
from ..errors import HTTP_STATUS, ErrorCode
from ..imaging import decode_base64_image
from ..matching import AMBIGUITY_MARGIN, decode_embedding, operating_points_for
from ..verification import Reference, pack_of, threshold_for
from ..verification import verify as verify_references
from .bodies import body_schema, parse_body, require_json, validate_json
from .compare_parser import parse_compare
from .comparison import compare_arrays, compare_request_arrays
from .deps import EngineDep, ModelDep, Protected, SettingsDep, get_engine
from .responses import ORJSONResponse
from .schemas import (
    CompareRequest,
    CompareResponse,
    EmbedRequest,
    EmbedResponse,
    ErrorResponse,
    FaceRequestOptions,
    HealthResponse,
    ModelInfoResponse,
    VerifyRequest,
    VerifyResponse,
)

router = APIRouter(prefix="/api/v1", default_response_class=ORJSONResponse)


def _errors(*codes: ErrorCode) -> dict[int | str, dict[str, object]]:
    out: dict[int | str, dict[str, object]] = {}
    for code in codes:
        entry = out.setdefault(HTTP_STATUS[code], {"model": ErrorResponse, "description": ""})
        entry["description"] = ", ".join(filter(None, [str(entry["description"]), code.value]))
    out.setdefault(422, {"model": ErrorResponse, "description": "Request validation failed"})
    return out


@router.head("/health", include_in_schema=False)
@router.get(
    "/health",
    response_model=HealthResponse,
    summary="Is the service up and the model loaded",
    responses={503: {"model": HealthResponse, "description": "Model not loaded"}},
)
async def health(model: ModelDep, settings: SettingsDep) -> ORJSONResponse:
    # async: answered on the event loop, never queued behind the model's threads.
    loaded = model.engine is not None
    body: dict[str, Any] = {
        "status": "healthy" if loaded else "unhealthy",
        "model_loaded": loaded,
        "model_name": settings.model_name,
    }
    if not loaded:
        body["detail"] = model.public_error
    return ORJSONResponse(body, status_code=200 if loaded else 503)


@router.get(
    "/model-info",
    dependencies=Protected,
    response_model=ModelInfoResponse,
    summary="The loaded face model, its tag and its decision thresholds",
    responses=_errors(ErrorCode.MODEL_NOT_LOADED, ErrorCode.UNAUTHORIZED),
)
def model_info(engine: EngineDep, settings: SettingsDep) -> ORJSONResponse:
    return ORJSONResponse(
        {
            "name": engine.model_name,
            "embedding_size": engine.embedding_size,
            "backend": "insightface",
            "device": engine.device,
            "model": engine.model_tag,
            "thresholds": operating_points_for(engine.model_name),
            "default_operating_point": settings.operating_point.value,
            "ambiguity_margin": AMBIGUITY_MARGIN,
        }
    )


_IMAGE_ERRORS = (
    ErrorCode.INVALID_IMAGE,
    ErrorCode.NO_FACE_DETECTED,
    ErrorCode.MULTIPLE_FACES_DETECTED,
    ErrorCode.LOW_QUALITY,
    ErrorCode.IMAGE_TOO_LARGE,
    ErrorCode.UNSUPPORTED_FORMAT,
    ErrorCode.MODEL_NOT_LOADED,
    ErrorCode.PROCESSING_ERROR,
    ErrorCode.UNAUTHORIZED,
)


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


@router.post(
    "/embed",
    dependencies=Protected,
    response_model=EmbedResponse,
    response_model_exclude_none=True,
    summary="Embed the face (or faces) in a photo",
    openapi_extra=body_schema(EmbedRequest),
    responses=_errors(*_IMAGE_ERRORS),
)
async def embed(request: Request, engine: EngineDep, settings: SettingsDep) -> ORJSONResponse:
    body = await parse_body(request, EmbedRequest, ErrorCode.INVALID_IMAGE)
    result = await run_in_threadpool(_embed_image, body.image, engine, settings, embed_options(body))
    request.state.faces = result.get("face_count", 1)
    return ORJSONResponse(result)


def _embed_image(image: str, engine: FaceEngine, settings: Settings, options: EmbedOptions) -> dict[str, Any]:
    data = decode_base64_image(image, settings.max_image_size)
    return embed_bytes(data, engine, settings, options)


@router.post(
    "/verify",
    dependencies=Protected,
    response_model=VerifyResponse,
    response_model_exclude_none=True,
    summary="Decide whether a photo (or embedding) matches enrolled references",
    openapi_extra=body_schema(VerifyRequest),
    responses=_errors(*_IMAGE_ERRORS, ErrorCode.INVALID_EMBEDDING, ErrorCode.MODEL_MISMATCH),
)
async def verify(request: Request, model: ModelDep, settings: SettingsDep) -> ORJSONResponse:
    require_json(request)
    raw = await request.body()
    result = await run_in_threadpool(_verify, raw, model, settings)
    if "detection_score" in result:
        request.state.faces = 1
    return ORJSONResponse(result)


def _verify(raw: bytes, model: ModelState, settings: Settings) -> dict[str, Any]:
    body = validate_json(raw, VerifyRequest, ErrorCode.INVALID_EMBEDDING)
    references = [
        Reference(r.id, decode_embedding(r.embedding, f"reference {r.id!r}"), r.model)
        for r in body.references
    ]
    extra: dict[str, Any] = {}
    probe_model: str | None
    if body.image is not None:
        engine = get_engine(model)
        options = embed_options(body)
        if options.faces.selection is FaceSelection.ALL:
            options = replace(options, faces=replace(options.faces, selection=FaceSelection.SINGLE))
        data = decode_base64_image(body.image, settings.max_image_size)
        faces, _ = find_faces(data, engine, settings, options)
        probe, probe_model = faces[0].embedding.astype(np.float64), engine.model_tag
        extra["detection_score"] = round(faces[0].detection_score, 6)
        if Include.QUALITY in options.include and faces[0].quality is not None:
            extra["quality"] = faces[0].quality.as_dict()
    else:
        assert body.embedding is not None
        probe, probe_model = decode_embedding(body.embedding, "embedding"), body.model
    pack = pack_of(probe_model or next((r.model for r in references if r.model), None), settings.model_name)
    threshold, point = threshold_for(pack, body.threshold, body.operating_point, settings.operating_point)
    return {**verify_references(probe, probe_model, references, threshold, point), **extra}


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
    require_json(request)
    return await run_in_threadpool(_compare, await request.body())


def _compare(raw: bytes) -> ORJSONResponse:
    arrays = parse_compare(raw)
    if arrays is None:  # not plainly valid: pydantic decides, with its error messages
        arrays = compare_request_arrays(validate_json(raw, CompareRequest, ErrorCode.INVALID_EMBEDDING))
    return ORJSONResponse(compare_arrays(arrays))
