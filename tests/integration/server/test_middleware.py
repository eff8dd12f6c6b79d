"""The outermost ASGI layer (api/middleware.py): request ids, the body-size guard,
the last line of defence against unexpected exceptions, one record per request."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient

from face_recognition_service.api import create_app
from face_recognition_service.config import Settings
from face_recognition_service.engine import ModelState
from tests.support.helpers import assert_error, b64, read, vec

EMBED = "/api/v1/embed"
COMPARE = "/api/v1/compare"


def test_request_body_too_large(client: TestClient, settings: Settings) -> None:
    huge = "A" * (settings.max_image_size * 2)
    assert_error(client.post(EMBED, json={"image": huge}), 413, "IMAGE_TOO_LARGE")


def test_unexpected_failure_is_a_json_500(settings: Settings) -> None:
    class Exploding:
        def embed_single(self, image: Any) -> Any:
            raise RuntimeError("secret internal state")

    # Plumbing only: a stand-in engine that fails in a way no input should cause.
    app = create_app(settings, ModelState(Exploding()))  # type: ignore[arg-type]
    with TestClient(app, raise_server_exceptions=False) as c:
        response = c.post(EMBED, json={"image": b64(read("obama_small.jpg"))})
    body = assert_error(response, 500, "PROCESSING_ERROR")
    assert "secret" not in response.text and body["detail"]


def test_nothing_the_caller_sends_reaches_the_logs(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    image = b64(read("obama_small.jpg"))
    marker = 0.123456789
    with caplog.at_level(logging.DEBUG):
        client.post(EMBED, json={"image": image})
        client.post(EMBED, json={"image": image[:-40] + "@@@@"})
        client.post(
            COMPARE,
            json={
                "query_embedding": vec(marker, 1.0),
                "reference_embeddings": [{"id": "secret-user", "embedding": [marker]}],
            },
        )
    text = "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    assert "request" in text  # the request lines were captured
    assert image[40:80] not in text
    assert str(marker) not in text and "secret-user" not in text


def test_request_id_is_echoed_when_safe_and_made_otherwise(client: TestClient) -> None:
    given = client.get("/api/v1/health", headers={"x-request-id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    unsafe = client.get("/api/v1/health", headers={"x-request-id": "bad id\twith spaces"})
    assert (
        unsafe.headers["x-request-id"] != "bad id\twith spaces" and len(unsafe.headers["x-request-id"]) == 32
    )


def test_debug_logs_stage_timings_and_sizes_only(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    image = b64(read("obama_small.jpg"))
    with caplog.at_level(logging.DEBUG, logger="face_recognition_service.stages"):
        response = client.post(EMBED, json={"image": image}, headers={"x-request-id": "debug-1"})
    assert response.status_code == 200
    stages = [r for r in caplog.records if r.getMessage() == "embed stages"]
    assert len(stages) == 1
    fields = vars(stages[0])
    for key in (
        "parse_ms",
        "decode_ms",
        "detect_ms",
        "embed_ms",
        "serialise_ms",
        "image_bytes",
        "width",
        "height",
        "faces",
        "response_bytes",
    ):
        assert key in fields, key
    assert fields["request_id"] == "debug-1" and fields["faces"] == 1
    text = str(fields)
    assert image[50:90] not in text and str(response.json()["embedding"][0])[:8] not in text


def test_no_stage_lines_at_info(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        client.post(EMBED, json={"image": b64(read("obama_small.jpg"))})
    assert not [r for r in caplog.records if r.getMessage() == "embed stages"]


def test_prometheus_metrics_for_plain_servers(settings: Settings, model: ModelState) -> None:
    with TestClient(create_app(settings, model), raise_server_exceptions=False) as c:
        c.post(EMBED, json={"image": b64(read("obama_small.jpg"))})
        c.post(EMBED, json={"image": b64(b"not an image")})
        c.get("/api/v1/nothing-here-secret-path")
        text = c.get("/metrics").text
    assert 'face_requests_total{method="POST",route="/api/v1/embed",status="200"} 1.0' in text
    assert 'face_errors_total{error_code="INVALID_IMAGE"} 1.0' in text
    assert "face_request_latency_seconds_bucket" in text and "face_faces_detected_total 1.0" in text
    assert "face_model_load_seconds" in text
    assert "nothing-here-secret-path" not in text and 'route="other"' in text  # no label per unknown path


def test_no_metrics_route_when_disabled_or_in_lambda(
    settings: Settings, model: ModelState, lambda_module: Any
) -> None:
    from face_recognition_service.testing import FakeLambdaContext, http_api_event

    off = settings.model_copy(update={"metrics_enabled": False})
    with TestClient(create_app(off, model)) as c:
        assert c.get("/metrics").status_code == 404
    result = lambda_module.handler(http_api_event("GET", "/metrics"), FakeLambdaContext())
    assert result["statusCode"] == 404


def test_uvicorn_s_over_the_limit_answer_is_the_service_s_busy_error() -> None:
    """The 503 uvicorn sends past MAX_CONNECTIONS (its own is plain text), as the
    ASGI messages it sends; the live server's is in test_server_reliability."""
    import asyncio

    from uvicorn.protocols.http import httptools_impl

    import face_recognition_service.server.protocol  # noqa: F401  (installs the answer)

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    answer: Any = getattr(httptools_impl, "service_unavailable")  # noqa: B009  (not exported in its stubs)
    asyncio.run(answer({}, None, send))
    start, body = sent
    assert start["status"] == 503 and (b"retry-after", b"1") in start["headers"]
    assert json.loads(body["body"]) == {
        "error": "The service is busy.",
        "error_code": "SERVICE_BUSY",
        "detail": "The server has as many connections as it takes (MAX_CONNECTIONS); retry after 1 s.",
    }
