"""Every error leaves the app in one shape: {"error", "error_code", "detail"} (see the README)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ErrorCode, ServiceError, invalid_request
from .bodies import describe_errors
from .responses import ORJSONResponse

_HTTP_CODE = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED, 413: ErrorCode.PAYLOAD_TOO_LARGE}
# How long a caller waits before retrying a failure of the storage behind the service.
STORAGE_RETRY_AFTER_SECONDS = 5


def error_response(
    request: Request, error: ServiceError, status: int | None = None, headers: dict[str, str] | None = None
) -> ORJSONResponse:
    request.state.error_code = error.code.value
    if error.faces is not None:
        request.state.faces = error.faces
    return ORJSONResponse(error.to_dict(), status_code=status or error.status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> ORJSONResponse:
        if exc.code is ErrorCode.STORAGE_UNAVAILABLE:
            return error_response(request, exc, headers={"Retry-After": str(STORAGE_RETRY_AFTER_SECONDS)})
        return error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> ORJSONResponse:
        # Parameters FastAPI validates itself; bodies are validated by the routes,
        # each with its own code (api/bodies.py).
        error = invalid_request(ErrorCode.PROCESSING_ERROR, describe_errors(list(exc.errors())))
        return error_response(request, error)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> ORJSONResponse:
        code = _HTTP_CODE.get(exc.status_code, ErrorCode.PROCESSING_ERROR)
        error = ServiceError(code, str(exc.detail) if exc.detail else "Request failed.")
        # Keep the router's own headers: Allow on 405.
        return error_response(request, error, status=exc.status_code, headers=dict(exc.headers or {}))
