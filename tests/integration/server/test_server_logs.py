"""Plain-server JSON logs (server/logs.py): one JSON object a line, only what a
record was given explicitly, and no traceback text."""

from __future__ import annotations

import json
import logging

from face_recognition_service.server.logs import JsonFormatter


def _record(**extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord(
        {
            "name": "face_recognition_service.request",
            "levelno": logging.INFO,
            "levelname": "INFO",
            "msg": "request %s",
            "args": ("done",),
        }
    )
    record.__dict__.update(extra)
    return record


def test_a_line_is_one_json_object_with_the_extras() -> None:
    line = JsonFormatter("face-recognition").format(_record(request_id="r-1", status=200, duration_ms=12.5))
    entry = json.loads(line)
    assert entry["message"] == "request done" and entry["service"] == "face-recognition"
    assert entry["request_id"] == "r-1" and entry["status"] == 200 and entry["duration_ms"] == 12.5
    assert entry["level"] == "INFO" and entry["timestamp"].endswith("Z")


def test_exceptions_are_named_not_traced() -> None:
    try:
        raise ValueError("a value from the caller")
    except ValueError:
        import sys

        record = _record()
        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter("svc").format(record))
    assert entry["exception"] == "ValueError"
    assert "a value from the caller" not in json.dumps(entry) and "Traceback" not in json.dumps(entry)
