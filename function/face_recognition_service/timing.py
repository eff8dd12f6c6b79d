"""Per-request context the core may log with: the request id (set by the API
layer, read by the log formatters) and stage timings for LOG_LEVEL=debug."""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from typing import Any

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

logger = logging.getLogger("face_recognition_service.stages")


class Stages:
    """Milliseconds per stage of one request, logged at debug level only.
    Sizes and counts go with them; never image bytes, embeddings or ids."""

    def __init__(self) -> None:
        self.enabled = logger.isEnabledFor(logging.DEBUG)
        self.values: dict[str, Any] = {}
        self._last = time.perf_counter()

    def mark(self, stage: str) -> None:
        if self.enabled:
            now = time.perf_counter()
            self.values[f"{stage}_ms"] = round((now - self._last) * 1000, 2)
            self._last = now

    def note(self, **values: Any) -> None:
        if self.enabled:
            self.values.update(values)

    def log(self, what: str) -> None:
        if self.enabled:
            logger.debug(what, extra={"request_id": request_id.get(), **self.values})
