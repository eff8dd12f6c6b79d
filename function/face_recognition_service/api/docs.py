"""The OpenAPI document's schemas, made when the document is first asked for.

Routes parse their own bodies and return their answers directly: serving a
request needs no schema. Declared the usual way (``responses={status: {"model":
M}}`` and a body schema in ``openapi_extra``), they cost the cold start ~16 ms
(docs/benchmarks.md#cold-start-and-memory): FastAPI builds a response validator for every
documented status and imports ``pydantic.v1`` to check each model's kind, and
pydantic makes each body's JSON schema. Here a route refers to its models by
name; ``install_openapi`` puts their schemas in the document when /openapi.json
(or /docs) is first requested.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .. import paths
from .inputs import DOCUMENTED_IMAGE_TYPES

_REF = "#/components/schemas/{model}"
_BINARY = {"schema": {"type": "string", "format": "binary"}}

# Every model a route refers to, with the side it is on: request bodies are
# documented as validated, answers as serialised.
_models: dict[str, tuple[type[BaseModel], Literal["validation", "serialization"]]] = {}


def _ref(model: type[BaseModel], mode: Literal["validation", "serialization"]) -> dict[str, str]:
    _models[model.__name__] = (model, mode)
    return {"$ref": _REF.format(model=model.__name__)}


def response(model: type[BaseModel], description: str) -> dict[str, Any]:
    """One entry of a route's ``responses``: ``model`` as the JSON answer."""
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref(model, "serialization")}},
    }


def request_body(model: type[BaseModel], *, image_bodies: bool = False) -> dict[str, Any]:
    """``openapi_extra`` for a route that parses its body itself: ``model`` as
    JSON; with ``image_bodies``, also a raw image body and a multipart form (/embed)."""
    content: dict[str, Any] = {"application/json": {"schema": _ref(model, "validation")}}
    if image_bodies:
        content.update(dict.fromkeys(DOCUMENTED_IMAGE_TYPES, _BINARY))
        content["multipart/form-data"] = {
            "schema": {
                "type": "object",
                "required": ["image"],
                "properties": {
                    "image": {"type": "string", "format": "binary", "description": "The photo file."}
                },
            }
        }
    return {"requestBody": {"required": True, "content": content}}


def model_schemas() -> dict[str, Any]:
    """The JSON schema of every model the routes refer to, and of the models
    inside them, keyed by name as the document's components."""
    _, definitions = models_json_schema([(m, mode) for m, mode in _models.values()], ref_template=_REF)
    schemas: dict[str, Any] = definitions.get("$defs", {})
    return schemas


def install_openapi(app: FastAPI) -> None:
    """FastAPI's document for ``app``, with the models' schemas added to its
    components; built once, on first use (FastAPI's own caching)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            components = document.setdefault("components", {})
            components.setdefault("schemas", {}).update(model_schemas())
            if app.state.api_key is not None:
                declare_api_key(document)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the document


def declare_api_key(document: dict[str, Any]) -> None:
    """With an API key configured: the x-api-key scheme, required by every
    operation but health (so the docs page's Authorize button sends it)."""
    document["components"]["securitySchemes"] = {
        "ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}
    }
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            operation["security"] = [] if path == paths.HEALTH else [{"ApiKey": []}]
