"""The FastAPI app factory: transport only; the work is in the core modules."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from .. import __version__
from ..config import Settings
from ..engine import ModelState, load_model
from .error_handlers import install_error_handlers
from .middleware import RequestContextMiddleware
from .observe import LogObserver, RequestObserver
from .routes import router

# JSON around the image: base64 grows data by 4/3; the rest is field names and
# quotes. Large enough for a compare request of a few thousand references.
_JSON_OVERHEAD = 64 * 1024


def max_body_bytes(settings: Settings) -> int:
    return (settings.max_image_size + 2) // 3 * 4 + _JSON_OVERHEAD


def create_app(
    settings: Settings,
    model: ModelState | None = None,
    observer: RequestObserver | None = None,
    api_key: Callable[[], str | None] | None = None,
) -> FastAPI:
    """Build the app. ``model`` defaults to loading the configured pack now, so
    a process pays the load once, before its first request. ``api_key`` gives the
    key callers must send (default: the fixed API_KEY setting, if any)."""
    app = FastAPI(
        title=settings.app_name,
        version=__version__,
        description="Stateless face embedding and comparison (ArcFace via InsightFace models "
        "on ONNX Runtime). Stores nothing: the caller keeps users and embeddings.",
        debug=False,  # debug pages would put tracebacks in responses
    )
    app.state.settings = settings
    # No warm-up inference here: measured, it adds ~50 ms to a server's start and
    # saves the first request less than that (BENCHMARKS.md). Lambda warms up.
    app.state.model = model if model is not None else load_model(settings, warm_up=False)
    if api_key is None and settings.api_key is not None:
        fixed = settings.api_key.get_secret_value()
        api_key = lambda: fixed  # noqa: E731
    app.state.api_key = api_key
    app.include_router(router)
    install_error_handlers(app)
    if settings.cors_enabled:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=["x-request-id"],
        )
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=max(max_body_bytes(settings), 16 * 1024 * 1024),
        observer=observer or LogObserver(),
    )
    return app
