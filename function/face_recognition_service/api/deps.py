"""Typed dependencies of the routes: settings, model, engine, API key."""

from __future__ import annotations

import hmac
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
    if model.engine is None:
        raise ServiceError(ErrorCode.MODEL_NOT_LOADED, "The face model is not loaded.", model.error)
    return model.engine


def require_api_key(request: Request) -> None:
    source = request.app.state.api_key
    if source is None:
        return
    expected = source()
    given = request.headers.get("x-api-key", "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise ServiceError(
            ErrorCode.UNAUTHORIZED, "A valid API key is required.", "Send it in the x-api-key header."
        )


Protected = [Depends(require_api_key)]

SettingsDep = Annotated[Settings, Depends(get_settings)]
ModelDep = Annotated[ModelState, Depends(get_model)]
EngineDep = Annotated[FaceEngine, Depends(get_engine)]
