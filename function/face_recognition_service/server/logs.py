"""Structured JSON logs for plain-server mode (Lambda mode uses Powertools).

Only what a record was given explicitly is written: request ids, sizes,
timings and codes. Request bodies never reach a logger.
"""

from __future__ import annotations

import json
import logging
import time

from ..timing import request_id

# Attributes every LogRecord has; anything else came in through ``extra=``.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName", "color_message"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": self.service,
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if entry.get("request_id") is None and (current := request_id.get()) is not None:
            entry["request_id"] = current
        if record.exc_info and record.exc_info[0] is not None:
            # The type only: a traceback's text is not needed to act and can carry values.
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str)


def configure_logging(level: str, service: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Our middleware writes one line per request; uvicorn's access log would repeat it.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
