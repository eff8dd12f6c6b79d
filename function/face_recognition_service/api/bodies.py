"""Request bodies parsed by the routes themselves, and their OpenAPI schemas."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

Body = TypeVar("Body", bound=BaseModel)


async def parse_body(request: Request, model: type[Body]) -> Body:
    """The JSON body validated by pydantic's own parser, straight from bytes.

    FastAPI's body parameters go through the standard json module first: for a
    500-reference compare request (5.7 MB) that is 84 ms of parsing against
    18 ms here. Errors stay RequestValidationError, so they keep the error shape.
    """
    return validate_json(await request.body(), model)


def validate_json(raw: bytes, model: type[Body]) -> Body:
    """``parse_body`` for bytes already read (for example, in a worker thread)."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from None


def _inline_refs(schema: Any, defs: dict[str, Any]) -> Any:
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inline_refs(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
        return {k: _inline_refs(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline_refs(v, defs) for v in schema]
    return schema


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI request body for a route that parses its body itself."""
    schema = model.model_json_schema()
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": _inline_refs(schema, schema.get("$defs", {}))}}}}
