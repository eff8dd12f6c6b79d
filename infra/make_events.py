"""Regenerate events/: API Gateway sample events for `sam local invoke -e` and
for the test suite, which runs every one through the real handler.

    .venv/bin/python infra/make_events.py

events/manifest.json holds what each event must produce (one source of truth
for the tests); events/env/*.json are `sam local invoke --env-vars` files for
the events that need a setting changed.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
FACES = ROOT / "tests" / "data" / "faces"
sys.path.insert(0, str(ROOT))

HOST = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
EMBED_KEYS = ["embedding", "face_detected", "detection_score"]
ERROR_KEYS = ["error", "error_code", "detail"]
COMPARE_KEYS = ["matches", "best_match", "distance_metric"]


def http_v2(method: str, path: str, body: Any = None, *, b64_body: bool = False, stage: str = "$default",
            request_id: str = "Tq3lbgNSIAMEVJw=") -> dict[str, Any]:
    raw_path = path if stage == "$default" else f"/{stage}{path}"
    text = None if body is None else json.dumps(body)
    if text is not None and b64_body:
        text = base64.b64encode(text.encode()).decode()
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": raw_path, "rawQueryString": "",
        "headers": {"accept": "application/json", "content-type": "application/json", "host": HOST,
                    "user-agent": "curl/8.5.0", "x-forwarded-for": "203.0.113.10",
                    "x-forwarded-port": "443", "x-forwarded-proto": "https"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "a1b2c3d4e5", "domainName": HOST, "domainPrefix": "a1b2c3d4e5",
            "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10",
                     "userAgent": "curl/8.5.0"},
            "requestId": request_id, "routeKey": "$default", "stage": stage,
            "time": "28/Nov/2026:00:00:00 +0000", "timeEpoch": 1795824000000,
        },
        "body": text, "isBase64Encoded": b64_body,
    }


def rest_v1(method: str, path: str, body: Any = None, stage: str = "Prod") -> dict[str, Any]:
    headers = {"Accept": "application/json", "Content-Type": "application/json", "Host": HOST,
               "User-Agent": "curl/8.5.0", "X-Forwarded-For": "203.0.113.10", "X-Forwarded-Port": "443",
               "X-Forwarded-Proto": "https"}
    return {
        "resource": "/{proxy+}", "path": path, "httpMethod": method, "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")}, "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012", "apiId": "a1b2c3d4e5", "resourceId": "abc123",
            "resourcePath": "/{proxy+}", "httpMethod": method, "path": f"/{stage}{path}", "stage": stage,
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", "protocol": "HTTP/1.1",
            "identity": {"sourceIp": "203.0.113.10", "userAgent": "curl/8.5.0"},
            "requestTimeEpoch": 1795824000000,
        },
        "body": None if body is None else json.dumps(body), "isBase64Encoded": False,
    }


def photo(name: str, mime: str = "image/jpeg") -> str:
    return f"data:{mime};base64," + base64.b64encode((FACES / name).read_bytes()).decode()


def no_face_jpeg() -> str:
    import cv2
    from tests.helpers import no_face_image

    ok, buf = cv2.imencode(".jpg", no_face_image(), [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()


def png_bomb_header() -> str:
    from tests.helpers import png_header_only

    return "data:image/png;base64," + base64.b64encode(png_header_only(60_000, 60_000)).decode()


def compare_body(metric: str) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(3)
    query = rng.normal(size=512)
    query /= np.linalg.norm(query)
    refs = {"user_001": rng.normal(size=512), "user_002": query + rng.normal(scale=0.05, size=512),
            "user_003": rng.normal(size=512)}
    return {
        "query_embedding": [round(float(v), 6) for v in query],
        "reference_embeddings": [{"id": k, "embedding": [round(float(v), 6) for v in r / np.linalg.norm(r)]}
                                 for k, r in refs.items()],
        "distance_metric": metric,
    }


def main() -> None:
    gif = "data:image/gif;base64,R0lGODlhAQABAIAAAP///wAAACH5BAAAAAAALAAAAAABAAEAAAICRAEAOw=="
    events: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
        "health.json": (http_v2("GET", "/api/v1/health"),
                        {"status": 200, "keys": ["status", "model_loaded", "model_name"]}),
        "model-info.json": (http_v2("GET", "/api/v1/model-info"),
                            {"status": 200, "keys": ["name", "embedding_size", "backend", "device"]}),
        "embed-face.json": (http_v2("POST", "/api/v1/embed", {"image": photo("obama_small.jpg")}),
                            {"status": 200, "keys": EMBED_KEYS}),
        "embed-face-base64-body.json": (
            http_v2("POST", "/api/v1/embed", {"image": photo("rose_leslie_1.jpg")}, b64_body=True),
            {"status": 200, "keys": EMBED_KEYS}),
        "embed-no-face.json": (http_v2("POST", "/api/v1/embed", {"image": no_face_jpeg()}),
                               {"status": 422, "keys": ERROR_KEYS, "error_code": "NO_FACE_DETECTED"}),
        "embed-multiple-faces.json": (
            http_v2("POST", "/api/v1/embed", {"image": photo("kit_with_rose.jpg")}),
            {"status": 422, "keys": ERROR_KEYS, "error_code": "MULTIPLE_FACES_DETECTED"}),
        "embed-invalid-base64.json": (
            http_v2("POST", "/api/v1/embed", {"image": "data:image/jpeg;base64,this is not base64!"}),
            {"status": 400, "keys": ERROR_KEYS, "error_code": "INVALID_IMAGE"}),
        "embed-unsupported-format.json": (http_v2("POST", "/api/v1/embed", {"image": gif}),
                                          {"status": 415, "keys": ERROR_KEYS, "error_code": "UNSUPPORTED_FORMAT"}),
        "embed-too-many-pixels.json": (http_v2("POST", "/api/v1/embed", {"image": png_bomb_header()}),
                                       {"status": 413, "keys": ERROR_KEYS, "error_code": "IMAGE_TOO_LARGE"}),
        "embed-oversized.json": (
            http_v2("POST", "/api/v1/embed", {"image": photo("obama_4.jpg")}),
            {"status": 413, "keys": ERROR_KEYS, "error_code": "IMAGE_TOO_LARGE",
             "env": "env/small-image-limit.json"}),
        "embed-missing-field.json": (http_v2("POST", "/api/v1/embed", {"picture": "..."}),
                                     {"status": 422, "keys": ERROR_KEYS, "error_code": "INVALID_IMAGE"}),
        "compare-cosine.json": (http_v2("POST", "/api/v1/compare", compare_body("cosine")),
                                {"status": 200, "keys": COMPARE_KEYS, "best_match": "user_002"}),
        "compare-euclidean.json": (http_v2("POST", "/api/v1/compare", compare_body("euclidean")),
                                   {"status": 200, "keys": COMPARE_KEYS, "best_match": "user_002"}),
        "compare-invalid.json": (
            http_v2("POST", "/api/v1/compare", {"query_embedding": [0.1, 0.2],
                                               "reference_embeddings": [{"id": "u1", "embedding": [0.1]}]}),
            {"status": 422, "keys": ERROR_KEYS, "error_code": "INVALID_EMBEDDING"}),
        "not-found.json": (http_v2("GET", "/api/v1/users"),
                           {"status": 404, "keys": ERROR_KEYS, "error_code": "NOT_FOUND"}),
        "rest-v1-health.json": (rest_v1("GET", "/api/v1/health"),
                                {"status": 200, "keys": ["status", "model_loaded", "model_name"]}),
        "rest-v1-embed-face.json": (rest_v1("POST", "/api/v1/embed", {"image": photo("obama_small.jpg")}),
                                    {"status": 200, "keys": EMBED_KEYS}),
        "health-stage-path.json": (http_v2("GET", "/api/v1/health", stage="prod"),
                                   {"status": 200, "keys": ["status", "model_loaded", "model_name"],
                                    "env": "env/stage-prod.json"}),
        "scheduled-warmup.json": (
            {"version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
             "source": "aws.events", "account": "123456789012", "time": "2026-11-28T00:00:00Z",
             "region": "us-east-1", "resources": ["arn:aws:events:us-east-1:123456789012:rule/face-warmup"],
             "detail": {}},
            {"direct": {"status": "warm", "model_loaded": True}}),
    }
    manifest = {}
    for name, (event, expected) in events.items():
        (EVENTS / name).write_text(json.dumps(event, indent=1) + "\n")
        manifest[name] = expected
    (EVENTS / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (EVENTS / "env").mkdir(exist_ok=True)
    (EVENTS / "env" / "small-image-limit.json").write_text(
        json.dumps({"FaceFunction": {"MAX_IMAGE_SIZE": "65536"}}, indent=2) + "\n")
    (EVENTS / "env" / "stage-prod.json").write_text(
        json.dumps({"FaceFunction": {"API_BASE_PATH": "/prod"}}, indent=2) + "\n")
    print(f"wrote {len(events)} events to {EVENTS}")


if __name__ == "__main__":
    main()
