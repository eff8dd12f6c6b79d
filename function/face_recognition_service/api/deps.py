"""Typed dependencies of the routes: settings, model, engine, API key."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from ..config import Settings
from ..engine import FaceEngine, ModelState
from ..errors import ErrorCode, ServiceError


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_model(request: Request) -> ModelState:
    model: ModelState = request.app.state.model
    return model


def get_engine(model: Annotated[ModelState, Depends(get_model)]) -> FaceEngine:
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


def require_api_key(request: Request) -> None:
    if getattr(request.state, "authorized", False):  # the middleware checked it before the body
        return
    check_api_key(request.app.state.api_key, request.headers.get("x-api-key", ""))


Protected = [Depends(require_api_key)]

SettingsDep = Annotated[Settings, Depends(get_settings)]
ModelDep = Annotated[ModelState, Depends(get_model)]
EngineDep = Annotated[FaceEngine, Depends(get_engine)]
