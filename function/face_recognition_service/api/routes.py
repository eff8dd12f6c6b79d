"""The API's endpoints under /api/v1 (see the README for each)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from .. import paths
from ..config import Settings
from ..engine import FaceEngine, ModelState
from ..errors import HTTP_STATUS, ErrorCode
from ..gallery.cache import GalleryCache
from ..matching import AMBIGUITY_MARGIN, identification_table, operating_points_for
from ..paths import relative
from ..timing import Stages
from ..usecases.batch import BatchInput, BatchItem, embed_batch, faces_in
from ..usecases.compare import compare as compare_arrays
from ..usecases.embed import EmbedInput, ImageSource
from ..usecases.embed import embed as embed_photo
from ..usecases.identify import identify as identify_probe
from ..usecases.verify import verify as verify_probe
from .bodies import require_json, validate_json
from .compare_parser import compare_request_arrays, parse_compare
from .deps import EngineDep, ModelDep, Protected, SettingsDep
from .docs import request_body, response
from .inputs import ImageInput, parse_json_input, read_image_input
from .responses import ORJSONResponse
from .schemas import (
    CompareRequest,
    CompareResponse,
    EmbedBatchRequest,
    EmbedBatchResponse,
    EmbedRequest,
    EmbedResponse,
    ErrorResponse,
    HealthResponse,
    IdentifyRequest,
    IdentifyResponse,
    ModelInfoResponse,
    VerifyRequest,
    VerifyResponse,
    embed_options,
)
from .translate import identify_input, verify_input

router = APIRouter(prefix=paths.PREFIX, default_response_class=ORJSONResponse)


async def _json_work(request: Request, work: Callable[..., Any], *args: Any) -> Any:
    """A JSON body read on the event loop, then ``work(body, *args)`` in a worker
    thread (parsing megabytes and the model never hold the loop). A photo probe
    counts its faces for metrics."""
    require_json(request)
    result = await run_in_threadpool(work, await request.body(), *args)
    if isinstance(result, dict):
        if "detection_score" in result:
            request.state.faces = 1
        elif "face_count" in result:
            request.state.faces = result["face_count"]
    return result


def _ok(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """The 200 answer's schema, for the OpenAPI document only (docs.py)."""
    return {200: response(model, "Successful Response")}


def _errors(path: str) -> dict[int | str, dict[str, Any]]:
    """The route's error responses (route table), grouped by status, for OpenAPI."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in paths.BY_PATH[path].errors:
        entry = out.setdefault(HTTP_STATUS[code], response(ErrorResponse, ""))
        entry["description"] = ", ".join(filter(None, [str(entry["description"]), code.value]))
    out.setdefault(422, response(ErrorResponse, "Request validation failed"))
    return out


@router.head(relative(paths.HEALTH), include_in_schema=False)
@router.get(
    relative(paths.HEALTH),
    summary="Is the service up and the model loaded",
    responses=_ok(HealthResponse) | {503: response(HealthResponse, "Model not loaded")},
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
    relative(paths.MODEL_INFO),
    dependencies=Protected,
    summary="The loaded face model, its tag and its decision thresholds",
    responses=_ok(ModelInfoResponse) | _errors(paths.MODEL_INFO),
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
            "identification": identification_table(engine.model_name),
            "default_operating_point": settings.operating_point.value,
            "ambiguity_margin": AMBIGUITY_MARGIN,
        }
    )


@router.post(
    relative(paths.EMBED),
    dependencies=Protected,
    summary="Embed the face (or faces) in a photo",
    openapi_extra=request_body(EmbedRequest, image_bodies=True),
    responses=_ok(EmbedResponse) | _errors(paths.EMBED),
)
async def embed(request: Request, engine: EngineDep, settings: SettingsDep) -> ORJSONResponse:
    received = await read_image_input(request, settings.max_image_size)
    response, faces = await run_in_threadpool(_embed, received, engine, settings)
    request.state.faces = faces
    return response


def _embed(received: ImageInput, engine: FaceEngine, settings: Settings) -> tuple[ORJSONResponse, int]:
    stages = Stages()
    if received.json_body is not None:
        received = parse_json_input(received.json_body)
    stages.mark("parse")
    source = ImageSource(base64=received.image, s3_uri=received.s3_uri, data=received.data)
    result = embed_photo(EmbedInput(source, embed_options(received.options)), engine, settings, stages)
    # Rendered here, in the worker thread: a large answer never holds the event loop.
    response = ORJSONResponse(result)
    stages.mark("serialise")
    stages.note(response_bytes=len(response.body))
    stages.log("embed stages")
    return response, int(result.get("face_count", 1))


@router.post(
    relative(paths.EMBED_BATCH),
    dependencies=Protected,
    summary="Embed many photos in one request, one recogniser pass",
    openapi_extra=request_body(EmbedBatchRequest),
    responses=_ok(EmbedBatchResponse) | _errors(paths.EMBED_BATCH),
)
async def embed_batch_route(request: Request, engine: EngineDep, settings: SettingsDep) -> ORJSONResponse:
    results = await _json_work(request, _embed_batch, engine, settings)
    request.state.faces = faces_in(results)
    return ORJSONResponse({"results": results, "model": engine.model_tag})


def _embed_batch(raw: bytes, engine: FaceEngine, settings: Settings) -> list[dict[str, Any]]:
    body = validate_json(raw, EmbedBatchRequest, ErrorCode.INVALID_IMAGE)
    items = [
        BatchItem(item.id, ImageSource(base64=item.image, s3_uri=item.image_s3_uri)) for item in body.images
    ]
    return embed_batch(BatchInput(items, embed_options(body)), engine, settings)


@router.post(
    relative(paths.VERIFY),
    dependencies=Protected,
    summary="Decide whether a photo (or embedding) matches enrolled references",
    openapi_extra=request_body(VerifyRequest),
    responses=_ok(VerifyResponse) | _errors(paths.VERIFY),
)
async def verify(request: Request, model: ModelDep, settings: SettingsDep) -> ORJSONResponse:
    result = await _json_work(request, _verify, model, settings)
    return ORJSONResponse(result)


def _verify(raw: bytes, model: ModelState, settings: Settings) -> dict[str, Any]:
    body = validate_json(raw, VerifyRequest, ErrorCode.INVALID_EMBEDDING)
    return verify_probe(verify_input(body), model, settings)


@router.post(
    relative(paths.COMPARE),
    dependencies=Protected,
    summary="Rank reference embeddings by distance to a query embedding",
    openapi_extra=request_body(CompareRequest),
    responses=_ok(CompareResponse) | _errors(paths.COMPARE),
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


@router.post(
    relative(paths.IDENTIFY),
    dependencies=Protected,
    summary="Who of a gallery's enrolled people is this photo (or embedding)",
    openapi_extra=request_body(IdentifyRequest),
    responses=_ok(IdentifyResponse) | _errors(paths.IDENTIFY),
)
async def identify(request: Request, model: ModelDep, settings: SettingsDep) -> ORJSONResponse:
    result = await _json_work(request, _identify, model, settings, request.app.state.galleries)
    return ORJSONResponse(result)


def _identify(raw: bytes, model: ModelState, settings: Settings, galleries: GalleryCache) -> dict[str, Any]:
    body = validate_json(raw, IdentifyRequest, ErrorCode.INVALID_EMBEDDING)
    return identify_probe(identify_input(body), model, settings, galleries)
