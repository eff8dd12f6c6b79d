"""AWS Lambda entry point (``face_recognition_service.aws_lambda.handler.handler``).

The one module with import-time side effects: everything expensive happens
here, in the init phase (settings, the model, one warm-up inference and a few
warm-up requests through the whole stack), so the first request pays no load
cost. Mangum runs with ``lifespan="off"``: it would otherwise run the app's
lifespan on every invocation.
"""

from __future__ import annotations

import asyncio

from aws_lambda_powertools.logging import utils

from ..config import SettingsError, get_settings
from .function import build_handler
from .observability import logger

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
# Core modules log through the standard library; give them Powertools' JSON format.
utils.copy_config_to_registered_loggers(source_logger=logger, include={"face_recognition_service"})
handler = build_handler(_settings)
