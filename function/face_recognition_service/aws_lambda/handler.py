"""AWS Lambda entry point (``face_recognition_service.aws_lambda.handler.handler``).

The one module with import-time side effects: everything expensive happens
here, in the init phase (settings, the model and one warm-up inference), so the
first request pays no load cost. A provisioned-concurrency or SnapStart init,
which no caller waits for, also sends a few warm-up requests through the whole
stack; an on-demand one leaves them out (``function.warm_up_at_init``). Mangum
runs with ``lifespan="off"``: it would otherwise run the app's lifespan on
every invocation.
"""

from __future__ import annotations

import time

_started = time.perf_counter()

from ..startup import import_fastapi, start_up  # noqa: E402

with start_up():
    import asyncio
    import logging
    from concurrent.futures import ThreadPoolExecutor

    from aws_lambda_powertools.logging import utils

    from ..config import SettingsError, get_settings
    from .observability import logger, span
    from .sources import load_function_model

    # Mangum runs each request on asyncio's current event loop. Give the runtime's
    # thread one explicitly: Python 3.12 warns when get_event_loop() must make it,
    # and later versions refuse.
    asyncio.set_event_loop(asyncio.new_event_loop())
    try:
        _settings = get_settings()
    except SettingsError as exc:
        # The init error Lambda reports: one line per bad variable, not a traceback of pydantic.
        raise RuntimeError(str(exc)) from None
    logger.setLevel(_settings.log_level)
    # Core modules log through the standard library under the package's logger;
    # give it Powertools' JSON format before anything logs (the loader below).
    logging.getLogger("face_recognition_service")
    utils.copy_config_to_registered_loggers(source_logger=logger, include={"face_recognition_service"})
    # The model loads in a thread while this one imports the web stack (FastAPI,
    # Mangum, the routes): ONNX Runtime releases the GIL while it builds its
    # sessions, so on a function with more than one vCPU the two overlap.
    with ThreadPoolExecutor(1, thread_name_prefix="model-loader") as _loader:
        _model = _loader.submit(load_function_model, _settings, span)
        import_fastapi()
        from .function import LambdaFunction, build_handler  # noqa: F401  (build_handler: for tests)

        _imported = time.perf_counter()
        _loaded = _model.result()
        _timings = {
            "imports_ms": round((_imported - _started) * 1000, 1),
            "model_wait_ms": round((time.perf_counter() - _imported) * 1000, 1),
        }
    function = LambdaFunction(_settings, _loaded, init_timings=_timings)
    handler = function.handler()
