"""Reliability III, findings 9-14: each refused or answered in the service's
error shape (see the issue's findings; 1-7 are in test_hostile_surfaces.py,
test_queue.py and test_s3_images.py)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from fastapi.testclient import TestClient

from face_recognition_service.aws_lambda.function import build_handler
from face_recognition_service.engine import ModelState
from face_recognition_service.testing import FakeLambdaContext, sqs_record
from tests.support.helpers import assert_error, b64, make_settings, read, vec

PHOTO = b64(read("obama_small.jpg"))
REFERENCES = [{"id": "a", "embedding": vec(1.0)}]


# Finding 11: options are strict numbers (and booleans) in JSON bodies.
@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/api/v1/embed", {"image": PHOTO, "max_faces": "5"}),
        ("/api/v1/embed", {"image": PHOTO, "min_face_size": "10"}),
        ("/api/v1/embed", {"image": PHOTO, "detection_threshold": "0.3"}),
        ("/api/v1/embed", {"image": PHOTO, "detection_threshold": True}),
        ("/api/v1/embed", {"image": PHOTO, "aligned": "false"}),
        ("/api/v1/embed/batch", {"images": [{"id": "a", "image": PHOTO}], "max_faces": "5"}),
        ("/api/v1/verify", {"embedding": vec(1.0), "references": REFERENCES, "threshold": "0.5"}),
        ("/api/v1/verify", {"embedding": vec(1.0), "references": REFERENCES, "threshold": True}),
        (
            "/api/v1/compare",
            {"query_embedding": vec(1.0), "reference_embeddings": REFERENCES, "group_by_id": "yes"},
        ),
        ("/api/v1/identify", {"embedding": vec(1.0), "gallery": "g.frg", "top_k": "3"}),
    ],
)
def test_strings_and_booleans_are_not_numbers(client: TestClient, route: str, body: dict[str, Any]) -> None:
    response = client.post(route, json=body)
    assert response.status_code == 422, response.text
    assert set(response.json()) == {"error", "error_code", "detail"}


def test_query_string_options_are_still_read_as_numbers(client: TestClient) -> None:
    """The query string and form fields are text: there "5" and "0.3" are the numbers."""
    photo = read("obama_and_biden.jpg")
    body = client.post(
        "/api/v1/embed?face_selection=all&max_faces=2&detection_threshold=0.3&min_face_size=0",
        content=photo,
        headers={"content-type": "image/jpeg"},
    ).json()
    assert body["face_count"] == 2 and body["faces_left_out"] >= 1
    refused = client.post(
        "/api/v1/embed?max_faces=two", content=photo, headers={"content-type": "image/jpeg"}
    )
    assert assert_error(refused, 422, "INVALID_IMAGE")["detail"].startswith("max_faces")
    aligned = client.post(
        "/api/v1/embed?aligned=maybe", content=photo, headers={"content-type": "image/jpeg"}
    )
    assert_error(aligned, 422, "INVALID_IMAGE")


# Finding 12: an allowed bucket that does not exist is IMAGE_NOT_FOUND, over
# HTTP and in queue mode (delivered, not retried).
def test_a_missing_allowed_bucket_is_not_found(aws_mock: None, model_dir: Path, model: ModelState) -> None:
    from face_recognition_service.api import create_app

    settings = make_settings(model_dir, image_s3_buckets="nobody-made-this")
    with TestClient(create_app(settings, model), raise_server_exceptions=False) as client:
        response = client.post("/api/v1/embed", json={"image_s3_uri": "s3://nobody-made-this/a.jpg"})
    body = assert_error(response, 404, "IMAGE_NOT_FOUND")
    assert "bucket" in body["error"]
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="results")
    queue_settings = make_settings(
        model_dir, image_s3_buckets="nobody-made-this", results_s3_uri="s3://results/out"
    )
    handler = build_handler(queue_settings, model, warm=False)
    record = sqs_record({"id": "u1", "image_s3_uri": "s3://nobody-made-this/a.jpg"}, "m1")
    response = handler({"Records": [record]}, FakeLambdaContext())  # type: ignore[arg-type]
    assert response["batchItemFailures"] == []
    result = json.loads(s3.get_object(Bucket="results", Key="out/u1.json")["Body"].read())
    assert result["error_code"] == "IMAGE_NOT_FOUND"


# Finding 14: a message with an id but an invalid option is answered, not retried.
def test_a_message_with_a_bad_option_gets_an_error_result(
    aws_mock: None, model_dir: Path, model: ModelState, caplog: pytest.LogCaptureFixture
) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="results")
    handler = build_handler(make_settings(model_dir, results_s3_uri="s3://results/out"), model, warm=False)
    image = base64.b64encode(read("obama_small.jpg")).decode()
    records = [
        sqs_record({"id": "zero", "image": image, "max_faces": 0}, "m1"),
        sqs_record({"id": "who", "gallery": "g.frg", "embedding": vec(1.0), "top_k": 0}, "m2"),
        sqs_record({"id": "", "image": image}, "m3"),  # no usable id: poison
        sqs_record({"id": 7, "image": image}, "m4"),
        sqs_record('["not", "an", "object"]', "m5"),
        # Ids of 1 and 256 characters are usable; 257 is not.
        sqs_record({"id": "a", "image": image, "max_faces": 0}, "m6"),
        sqs_record({"id": "b" * 256, "image": image, "max_faces": 0}, "m7"),
        sqs_record({"id": "c" * 257, "image": image, "max_faces": 0}, "m8"),
    ]
    with caplog.at_level("WARNING"):
        response = handler({"Records": records}, FakeLambdaContext())  # type: ignore[arg-type]
    assert sorted(f["itemIdentifier"] for f in response["batchItemFailures"]) == ["m3", "m4", "m5", "m8"]
    # Each goes back to the queue as unreadable (the operator's log says why), not as a crash.
    returned = [r for r in caplog.records if r.getMessage() == "queue message returned"]
    assert sorted(getattr(r, "message_id", "") for r in returned) == ["m3", "m4", "m5", "m8"]
    assert all("unreadable message" in getattr(r, "reason", "") for r in returned)

    def result(name: str) -> dict[str, Any]:
        return json.loads(s3.get_object(Bucket="results", Key=f"out/{name}.json")["Body"].read())  # type: ignore[no-any-return]

    zero = result("zero")
    assert zero["error_code"] == "INVALID_IMAGE" and zero["detail"].startswith("max_faces")
    assert zero["message_id"] == "m1" and image not in json.dumps(zero)
    assert result("who")["error_code"] == "INVALID_EMBEDDING"
    assert result("who") == {
        "id": "who",
        "message_id": "m2",
        "error": "The request is not valid.",
        "error_code": "INVALID_EMBEDDING",
        "detail": result("who")["detail"],
    }
    assert result("who")["detail"].startswith("top_k")
    assert result("a")["error_code"] == result("b" * 256)["error_code"] == "INVALID_IMAGE"


# Finding 9: a client that disconnects mid-body is not a server error.
def test_a_client_gone_mid_body_is_recorded_as_499_not_500(
    settings: Any, model: ModelState, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio

    from face_recognition_service.api import create_app
    from face_recognition_service.api.observe import RequestRecord

    records: list[RequestRecord] = []

    class Capture:
        def record(self, record: RequestRecord) -> None:
            records.append(record)

    app = create_app(settings, model, observer=Capture())
    messages = [
        {"type": "http.request", "body": b'{"image": "' + b"A" * 1000, "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> Any:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/embed",
        "raw_path": b"/api/v1/embed",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"100000")],
        "http_version": "1.1",
        "scheme": "http",
        "server": ("test", 80),
        "client": ("127.0.0.1", 1),
        "root_path": "",
    }
    with caplog.at_level("INFO"):
        asyncio.run(app(scope, receive, send))
    assert sent == []  # nobody to answer
    assert [(r.status, r.error_code) for r in records] == [(499, None)]
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


# Finding 13: with API_KEY set, the docs stay open (they describe the API and
# declare the key scheme, so the docs page can send it); metrics need the key.
def test_what_an_api_key_protects(model_dir: Path, model: ModelState) -> None:
    from face_recognition_service.api import create_app

    settings = make_settings(model_dir, api_key="s3cret")
    with TestClient(create_app(settings, model), raise_server_exceptions=False) as client:
        assert client.get("/api/v1/health").status_code == 200
        assert_error(client.get("/api/v1/model-info"), 401, "UNAUTHORIZED")
        assert_error(client.get("/metrics"), 401, "UNAUTHORIZED")
        assert client.get("/metrics", headers={"x-api-key": "s3cret"}).status_code == 200
        for page in ("/docs", "/redoc", "/openapi.json"):
            assert client.get(page).status_code == 200, page
        document = client.get("/openapi.json").json()
    scheme = document["components"]["securitySchemes"]["ApiKey"]
    assert scheme == {"type": "apiKey", "in": "header", "name": "x-api-key"}
    operations = {(p, m): op for p, ops in document["paths"].items() for m, op in ops.items()}
    assert operations[("/api/v1/health", "get")]["security"] == []
    assert all(
        op["security"] == [{"ApiKey": []}] for (p, _), op in operations.items() if p != "/api/v1/health"
    )
    open_settings = make_settings(model_dir)
    with TestClient(create_app(open_settings, model), raise_server_exceptions=False) as client:
        assert "securitySchemes" not in client.get("/openapi.json").json()["components"]
        assert client.get("/metrics").status_code == 200
