"""The bad-input corpus (tests/corpus, made by infra/make_corpus.py): every case
gets its status and error code in the error shape, over HTTP and through the
Lambda handler as HTTP API 2.0, REST 1.0 and ALB events; every malformed event
gets 400 INVALID_REQUEST, never an exception."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi.testclient import TestClient

from face_recognition_service.testing import FakeLambdaContext, alb_event, http_api_event, rest_api_event

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
CASES: list[dict[str, Any]] = json.loads((CORPUS / "bad_inputs.json").read_text())
EVENTS: list[dict[str, Any]] = json.loads((CORPUS / "malformed_events.json").read_text())


def _check(case: dict[str, Any], status: int, body: dict[str, Any]) -> None:
    assert status == case["status"], (case["name"], status, body)
    assert set(body) == {"error", "error_code", "detail"}, (case["name"], body)
    assert body["error_code"] == case["error_code"], (case["name"], body)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_over_http(client: TestClient, case: dict[str, Any]) -> None:
    response = client.request(
        case["method"], case["path"], content=base64.b64decode(case["body_b64"]), headers=case["headers"]
    )
    _check(case, response.status_code, response.json())
    if case["status"] == 405:
        assert "GET" in response.headers["allow"] or "POST" in response.headers["allow"]


def _events(case: dict[str, Any]) -> dict[str, dict[str, Any]]:
    raw = base64.b64decode(case["body_b64"])
    body = raw or None
    v2 = http_api_event(case["method"], case["path"], body, headers=case["headers"])
    v1 = rest_api_event(case["method"], case["path"])
    v1["body"] = base64.b64encode(raw).decode() if raw else None
    v1["isBase64Encoded"] = bool(raw)
    v1["headers"] = {"Host": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com", **case["headers"]}
    v1["multiValueHeaders"] = {k: [v] for k, v in v1["headers"].items()}
    alb = alb_event(case["method"], case["path"], body, headers=case["headers"])
    if not case["headers"]:
        alb["headers"].pop("content-type")
        v2["headers"].pop("content-type")
    return {"v2": v2, "v1": v1, "alb": alb}


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_through_the_lambda_handler(lambda_module: ModuleType, case: dict[str, Any]) -> None:
    for shape, event in _events(case).items():
        result = lambda_module.handler(event, FakeLambdaContext())
        _check({**case, "name": f"{case['name']}/{shape}"}, result["statusCode"], json.loads(result["body"]))


@pytest.mark.parametrize("item", EVENTS, ids=[e["name"] for e in EVENTS])
def test_malformed_events_get_400(lambda_module: ModuleType, item: dict[str, Any]) -> None:
    result = lambda_module.handler(item["event"], FakeLambdaContext())
    assert result["statusCode"] == 400, (item["name"], result)
    body = json.loads(result["body"])
    assert body["error_code"] == "INVALID_REQUEST" and set(body) == {"error", "error_code", "detail"}
