"""Helpers to run the real Lambda handler in-process: a context object, the
sample events and their expectations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from face_recognition_service.testing import FakeLambdaContext

__all__ = ["MANIFEST", "FakeLambdaContext", "check_response", "event_env", "load_event"]

EVENTS = Path(__file__).resolve().parents[2] / "events"
MANIFEST: dict[str, dict[str, Any]] = json.loads((EVENTS / "manifest.json").read_text())


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())  # type: ignore[no-any-return]


def event_env(name: str) -> dict[str, str]:
    """The environment a manifest entry asks for (a `sam local invoke --env-vars` file)."""
    env_file = MANIFEST[name].get("env")
    if not env_file:
        return {}
    return json.loads((EVENTS / env_file).read_text())["FaceFunction"]  # type: ignore[no-any-return]


def check_response(name: str, result: dict[str, Any]) -> dict[str, Any]:
    expected = MANIFEST[name]
    if "direct" in expected:
        for key, value in expected["direct"].items():
            assert result[key] == value, (name, result)
        return result
    assert result["statusCode"] == expected["status"], (name, result.get("body", "")[:300])
    body: dict[str, Any] = json.loads(result["body"])
    assert sorted(body) == sorted(expected["keys"]), (name, sorted(body))
    if "error_code" in expected:
        assert body["error_code"] == expected["error_code"], (name, body)
    if "best_match" in expected:
        assert body["best_match"]["id"] == expected["best_match"]
    if "face_count" in expected:
        assert body["face_count"] == expected["face_count"], (name, body["face_count"])
    if "batch_errors" in expected:
        errors = {r["id"]: r.get("error_code") for r in body["results"] if "error_code" in r}
        assert errors == expected["batch_errors"], (name, errors)
    if "identities" in expected:
        found = sorted(f["identity"] for f in body["faces"] if f["identity"])
        assert found == expected["identities"], (name, found)
    if "match" in expected:
        assert body["match"] is expected["match"], (name, body)
    if "embedding" in body:
        assert len(body["embedding"]) == 512
    return body
