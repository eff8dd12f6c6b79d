"""Typed dependencies of the routes: settings, model, engine, API key."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from ..config import Settings
from ..engine import FaceEngine, ModelState
from ..errors import ErrorCode, ServiceError

# The dependencies are coroutines because they only read app state: FastAPI
# runs a plain ``def`` dependency in a worker thread, and four such hops a
# request cost more than the lookups themselves.


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_model(request: Request) -> ModelState:
    model: ModelState = request.app.state.model
    return model


async def get_engine(model: Annotated[ModelState, Depends(get_model)]) -> FaceEngine:
    return model.require()


def check_api_key(source: Callable[[], str | None] | None, given: str) -> None:
    """UNAUTHORIZED unless ``given`` is the key ``source`` yields. Fails closed:
    a source that yields nothing (an empty or binary secret) lets nobody in."""
    if source is None:
        return
    expected = source()
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise ServiceError(
            ErrorCode.UNAUTHORIZED, "A valid API key is required.", "Send it in the x-api-key header."
        )


async def require_api_key(request: Request) -> None:
    if getattr(request.state, "authorized", False):  # the middleware checked it before the body
        return
    source = request.app.state.api_key
    if source is not None:  # a key source may read SSM or Secrets Manager: not on the event loop
        await run_in_threadpool(check_api_key, source, request.headers.get("x-api-key", ""))


Protected = [Depends(require_api_key)]

SettingsDep = Annotated[Settings, Depends(get_settings)]
ModelDep = Annotated[ModelState, Depends(get_model)]
EngineDep = Annotated[FaceEngine, Depends(get_engine)]
