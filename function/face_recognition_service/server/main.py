"""Plain-server entry point.

uvicorn face_recognition_service.server.main:app --host 0.0.0.0 --port 8000
python -m face_recognition_service.server
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..startup import import_fastapi, start_up
from .logs import configure_logging

if TYPE_CHECKING:
    from ..config import Settings

_app = None


def settings_or_exit() -> Settings:
    """The settings, or one line per bad variable on stderr and exit status 2:
    never a traceback, never a half-configured server."""
    from ..config import SettingsError, get_settings

    try:
        return get_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        raise


def get_app() -> Any:
    """The process's app, created (and its model loaded) on first use."""
    global _app
    if _app is None:
        with start_up():
            settings = settings_or_exit()
            configure_logging("DEBUG" if settings.debug else settings.log_level, settings.app_name)
            # The model loads (and runs one warm-up inference) in a thread while
            # this one imports the web stack: ONNX Runtime's session creation
            # releases the GIL, so the two overlap on a multi-core host and the
            # first request pays no lazy initialisation.
            with ThreadPoolExecutor(1, thread_name_prefix="model-loader") as loader:
                model = loader.submit(_load_model, settings)
                import_fastapi()
                from ..api import create_app

                _app = create_app(settings, model.result())
        # Worker threads (decoding, parsing) hold the GIL in slices of this
        # length; the event loop, which answers health checks, waits for one.
        # 1 ms instead of Python's 5 ms keeps health fast under load. Set after
        # start-up, where the loader and importing threads gain nothing from it.
        sys.setswitchinterval(0.001)
    return _app


def _load_model(settings: Settings) -> Any:
    from ..engine import load_model

    return load_model(settings.engine, warm_up=True)


def __getattr__(name: str) -> Any:
    # `uvicorn face_recognition_service.server.main:app` looks up `app`; building it
    # lazily means `python -m` below does not load the model twice.
    if name == "app":
        return get_app()
    raise AttributeError(name)


def main() -> None:
    with start_up():
        import uvicorn

        settings = settings_or_exit()
        configure_logging("DEBUG" if settings.debug else settings.log_level, settings.app_name)
        # No websockets or lifespan events here: not loading them shortens start-up.
        from .protocol import JSONErrorHttpToolsProtocol

        # Each of several workers imports the app and loads its own model; this
        # process then only supervises them.
        app = get_app() if settings.workers == 1 else None

    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "ws": "none",
        "lifespan": "off",
        # Requests uvicorn's parser refuses get the JSON error shape too.
        "http": JSONErrorHttpToolsProtocol,
        # Slow and idle clients: connections per worker beyond the limit get 503
        # from uvicorn; idle keep-alive connections close after a few seconds;
        # a body that stops arriving is refused by the app (BODY_TIMEOUT_SECONDS).
        "limit_concurrency": settings.max_connections,
        "timeout_keep_alive": settings.keep_alive_seconds,
        "h11_max_incomplete_event_size": 16 * 1024,
    }
    if app is None:
        uvicorn.run("face_recognition_service.server.main:app", workers=settings.workers, **common)
    else:
        uvicorn.run(app, **common)


if __name__ == "__main__":
    main()
