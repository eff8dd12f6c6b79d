"""Every error leaves the app in the seed's shape: {"error", "error_code", "detail"}."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ErrorCode, ServiceError
from .responses import FastJSONResponse

# Which code a schema violation gets depends on what the route takes.
_VALIDATION_CODE = {"/api/v1/embed": ErrorCode.INVALID_IMAGE, "/api/v1/compare": ErrorCode.INVALID_EMBEDDING}
_HTTP_CODE = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED, 413: ErrorCode.IMAGE_TOO_LARGE}


def error_response(request: Request, error: ServiceError, status: int | None = None) -> FastJSONResponse:
    request.state.error_code = error.code.value
    if error.faces is not None:
        request.state.faces = error.faces
    return FastJSONResponse(error.to_dict(), status_code=status or error.status)


def _describe(errors: list[dict[str, Any]]) -> str:
    # Location and message only: pydantic's error dicts also carry the input
    # value, which could be an image or an embedding and must not be echoed.
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        if err.get("type") == "json_invalid":
            parts.append("the request body is not valid JSON")
        else:
            parts.append(f"{loc}: {err.get('msg')}")
    if len(errors) > 5:
        parts.append(f"and {len(errors) - 5} more")
    return "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> FastJSONResponse:
        return error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> FastJSONResponse:
        code = _VALIDATION_CODE.get(request.url.path, ErrorCode.PROCESSING_ERROR)
        error = ServiceError(code, "The request is not valid.", _describe(list(exc.errors())))
        return error_response(request, error, status=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> FastJSONResponse:
        code = _HTTP_CODE.get(exc.status_code, ErrorCode.PROCESSING_ERROR)
        error = ServiceError(code, str(exc.detail) if exc.detail else "Request failed.")
        return error_response(request, error, status=exc.status_code)
