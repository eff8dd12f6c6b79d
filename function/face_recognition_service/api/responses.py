"""JSON responses through orjson: numpy arrays serialise natively, and a
512-float embedding renders in microseconds instead of milliseconds."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class ORJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
