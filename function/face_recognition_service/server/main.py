"""Plain-server entry point.

uvicorn face_recognition_service.server.main:app --host 0.0.0.0 --port 8000
python -m face_recognition_service.server
"""

from __future__ import annotations

import gc
import sys
import threading
from typing import TYPE_CHECKING, Any

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


def pause_gc_for_start_up() -> None:
    """Start-up builds ~75,000 objects that live as long as the process
    (libraries, pydantic schemas, the app, the model) and almost no garbage
    (about 1,300 objects): the cyclic collector's passes over them are ~35 ms
    of a ~450 ms start (BENCHMARKS.md section 4). ``get_app`` turns it back on."""
    gc.disable()


def get_app() -> Any:
    """The process's app, created (and its model loaded) on first use."""
    global _app
    if _app is None:
        pause_gc_for_start_up()
        settings = settings_or_exit()
        configure_logging("DEBUG" if settings.debug else settings.log_level, settings.app_name)
        # The model loads (and runs one warm-up inference) in a thread while this
        # one imports the web stack: ONNX Runtime's session creation releases the
        # GIL, so the two overlap on a multi-core host and the first request pays
        # no lazy initialisation.
        loaded: list[Any] = []

        def load() -> None:
            from ..engine import load_model

            loaded.append(load_model(settings, warm_up=True))

        loader = threading.Thread(target=load, name="model-loader")
        loader.start()
        from ..api import create_app

        loader.join()
        _app = create_app(settings, loaded[0] if loaded else None)
        # Everything built so far (libraries, the app, the model's sessions) lives
        # as long as the process: freezing it keeps the cyclic GC from walking it
        # again on every full collection, a pause that shows in health p99.
        gc.freeze()
        gc.enable()
        # Worker threads (decoding, parsing) hold the GIL in slices of this
        # length; the event loop, which answers health checks, waits for one.
        # 1 ms instead of Python's 5 ms keeps health fast under load. Set after
        # start-up, where the loader and importing threads gain nothing from it.
        sys.setswitchinterval(0.001)
    return _app


def __getattr__(name: str) -> Any:
    # `uvicorn face_recognition_service.server.main:app` looks up `app`; building it
    # lazily means `python -m` below does not load the model twice.
    if name == "app":
        return get_app()
    raise AttributeError(name)


def main() -> None:
    pause_gc_for_start_up()
    import uvicorn

    settings = settings_or_exit()
    configure_logging("DEBUG" if settings.debug else settings.log_level, settings.app_name)
    # No websockets or lifespan events here: not loading them shortens start-up.
    from .protocol import JSONErrorHttpToolsProtocol

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
    if settings.workers > 1:
        # Each worker process imports the app and loads its own model; this
        # process only supervises them.
        gc.enable()
        uvicorn.run("face_recognition_service.server.main:app", workers=settings.workers, **common)
    else:
        uvicorn.run(get_app(), **common)


if __name__ == "__main__":
    main()
