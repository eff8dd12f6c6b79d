"""The FastAPI app factory: transport only; the work is in the core modules."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline
from starlette.datastructures import Headers
from starlette.responses import Response

from .. import __version__, paths
from ..config import Settings
from ..engine import ModelState, load_model
from ..errors import ErrorCode, ServiceError
from ..gallery.cache import GalleryCache
from .admission import Admission
from .deps import check_api_key
from .docs import install_openapi
from .error_handlers import install_error_handlers
from .middleware import BodyLimit, RequestContextMiddleware
from .observe import LogObserver, RequestObserver
from .responses import ORJSONResponse
from .routes import router

logger = logging.getLogger(__name__)

# JSON around the image: base64 grows data by 4/3; the rest is field names,
# quotes and options.
_JSON_OVERHEAD = 64 * 1024
# /compare and /verify: 10,000 references (the schema's limit) as base64
# embeddings are ~28 MB; as full-precision float lists 32 MiB hold ~2,800.
EMBEDDINGS_BODY_LIMIT = 32 * 1024 * 1024
BATCH_BODY_CAP = 64 * 1024 * 1024


def batch_body_bytes(settings: Settings) -> int:
    """The /embed/batch body limit: MAX_BATCH_IMAGES images of the /embed limit,
    capped at BATCH_BODY_CAP."""
    return min(settings.max_batch_images * max_body_bytes(settings), BATCH_BODY_CAP)


def max_body_bytes(settings: Settings) -> int:
    """The /embed body limit: one image of MAX_IMAGE_SIZE bytes as base64, in JSON."""
    return (settings.max_image_size + 2) // 3 * 4 + _JSON_OVERHEAD


def body_limits(settings: Settings) -> dict[str, BodyLimit]:
    """Body size limit of each route that takes a body, and the code a body over
    it gets (docs/api.md#limits): on /embed the only large thing is the image."""
    return {
        paths.EMBED: BodyLimit(
            max_body_bytes(settings),
            ErrorCode.IMAGE_TOO_LARGE,
            f"Maximum image size is {settings.max_image_size} bytes (after base64 decoding); "
            f"the request body may be at most {max_body_bytes(settings)} bytes.",
        ),
        paths.EMBED_BATCH: BodyLimit(
            batch_body_bytes(settings),
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"A batch body may be at most {batch_body_bytes(settings)} bytes "
            f"({settings.max_batch_images} images of the /embed limit, capped at {BATCH_BODY_CAP}).",
        ),
        paths.COMPARE: BodyLimit(EMBEDDINGS_BODY_LIMIT, ErrorCode.PAYLOAD_TOO_LARGE),
        paths.VERIFY: BodyLimit(
            EMBEDDINGS_BODY_LIMIT + max_body_bytes(settings), ErrorCode.PAYLOAD_TOO_LARGE
        ),
        paths.IDENTIFY: BodyLimit(
            EMBEDDINGS_BODY_LIMIT + max_body_bytes(settings), ErrorCode.PAYLOAD_TOO_LARGE
        ),
    }


def _authorize(source: Callable[[], str | None], headers: dict[bytes, bytes]) -> None:
    check_api_key(source, headers.get(b"x-api-key", b"").decode("latin-1"))


class JSONErrorCORSMiddleware(CORSMiddleware):
    """Starlette's CORS middleware, with a refused preflight answered in the
    service's error shape instead of plain text."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        reason = bytes(response.body).decode("utf-8", "replace")
        error = ServiceError(ErrorCode.INVALID_REQUEST, "The CORS preflight request was refused.", reason)
        headers = {
            k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")
        }
        return ORJSONResponse(error.to_dict(), status_code=response.status_code, headers=headers)


def _plain_server_observer(app: FastAPI, settings: Settings) -> RequestObserver:
    """Plain-server mode: the log line per request, and Prometheus metrics."""
    observer: RequestObserver = LogObserver()
    if settings.metrics_enabled:
        # Imported here: the Lambda function (Powertools metrics) never loads it.
        from .prometheus import PrometheusObserver

        prometheus = PrometheusObserver(then=observer, load_seconds=app.state.model.load_seconds)
        app.add_route(paths.METRICS, prometheus.endpoint, methods=["GET"], include_in_schema=False)
        observer = prometheus
    return observer


def create_app(
    settings: Settings,
    model: ModelState | None = None,
    observer: RequestObserver | None = None,
    api_key: Callable[[], str | None] | None = None,
    galleries: GalleryCache | None = None,
    preload_gallery: bool = True,
) -> FastAPI:
    """Build the app. ``model`` defaults to loading the configured pack now, so
    a process pays the load once, before its first request. ``api_key`` gives the
    key callers must send (default: the fixed API_KEY setting, if any).
    ``preload_gallery``: load GALLERY_URI now (a server's start-up; a Lambda
    init that no caller waits for)."""
    # /docs and /redoc with Swagger UI and ReDoc served by the service itself
    # (fastapi-offline ships the assets): they render on hosts without internet.
    app = FastAPIOffline(
        title=settings.app_name,
        version=__version__,
        description="Stateless face embedding and comparison (ArcFace via InsightFace models "
        "on ONNX Runtime). Stores nothing: the caller keeps users and embeddings.",
        debug=False,  # debug pages would put tracebacks in responses
        # The routes go in directly, not through include_router: FastAPI composes
        # an included router lazily, building every route's fields a second time
        # on the first request (~18 ms of it, measured: docs/benchmarks.md#cold-start-and-memory).
        routes=router.routes,
    )
    app.state.settings = settings
    # No warm-up inference here: measured, it adds ~50 ms to a server's start and
    # saves the first request less than that (BENCHMARKS.md). Lambda warms up.
    app.state.model = model if model is not None else load_model(settings.engine, warm_up=False)
    if api_key is None and settings.api_key is not None:
        fixed = settings.api_key.get_secret_value()
        api_key = lambda: fixed  # noqa: E731
    app.state.api_key = api_key
    # One gallery cache per process (the Lambda function shares it with queue mode).
    app.state.galleries = galleries or GalleryCache(settings.galleries)
    if settings.gallery_uri and preload_gallery:
        app.state.galleries.preload(settings.gallery_uri)
    install_error_handlers(app)
    install_openapi(app)
    if settings.cors_enabled:
        app.add_middleware(
            JSONErrorCORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=["x-request-id"],
        )
    if observer is None:
        observer = _plain_server_observer(app, settings)
    limits = body_limits(settings)
    app.add_middleware(
        RequestContextMiddleware,
        body_limit=limits.get,
        observer=observer,
        admission=Admission.of(settings.admission),
        body_timeout_s=settings.body_timeout_seconds,
        authorize=None if api_key is None else partial(_authorize, api_key),
    )
    return app
