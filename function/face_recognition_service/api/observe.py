"""One record per request, handed to whoever watches: a log line in server mode,
Powertools metrics in Lambda mode. The API layer does not know which."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Protocol


@dataclass(frozen=True)
class RequestRecord:
    request_id: str
    method: str
    route: str
    status: int
    error_code: str | None
    duration_ms: float
    body_bytes: int
    faces: int | None


class RequestObserver(Protocol):
    def record(self, record: RequestRecord) -> None: ...


class LogObserver:
    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("face_recognition_service.request")

    def record(self, record: RequestRecord) -> None:
        level = logging.ERROR if record.status >= 500 else logging.INFO
        self.logger.log(level, "request", extra=asdict(record))
