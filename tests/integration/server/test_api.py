"""The HTTP contract: routes, shapes, codes and statuses (api/routes.py, schemas, error handlers)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from face_recognition_service.api import create_app
from face_recognition_service.engine import ModelState
from tests.support.helpers import (
    assert_error,
    b64,
    encode,
    make_settings,
    no_face_image,
    png_header_only,
    read,
    vec,
)

EMBED = "/api/v1/embed"
COMPARE = "/api/v1/compare"


def test_health(client: TestClient) -> None:
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy", "model_loaded": True, "model_name": "buffalo_sc"}


def test_model_info(client: TestClient) -> None:
    info = client.get("/api/v1/model-info").json()
    assert {k: info[k] for k in ("name", "embedding_size", "backend", "device")} == {
        "name": "buffalo_sc",
        "embedding_size": 512,
        "backend": "insightface",
        "device": "cpu",
    }
    assert re.fullmatch(r"buffalo_sc/w600k_mbf@[0-9a-f]{8}", info["model"])
    assert info["thresholds"] == {"strict": 0.45, "balanced": 0.36, "lenient": 0.28}
    assert info["default_operating_point"] == "balanced" and info["ambiguity_margin"] == 0.1


def test_docs_and_openapi(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/api/v1/health", "/api/v1/model-info", EMBED, COMPARE} <= set(spec["paths"])
    assert "413" in spec["paths"][EMBED]["post"]["responses"]
    # Bodies are parsed by the routes themselves; their schemas are still documented.
    schemas = spec["components"]["schemas"]

    def resolve(schema: dict[str, Any]) -> dict[str, Any]:
        return resolve(schemas[schema["$ref"].rsplit("/", 1)[1]]) if "$ref" in schema else schema

    embed_body = resolve(spec["paths"][EMBED]["post"]["requestBody"]["content"]["application/json"]["schema"])
    assert {"image", "image_s3_uri", "face_selection", "include", "min_quality"} <= set(
        embed_body["properties"]
    )
    content = spec["paths"][EMBED]["post"]["requestBody"]["content"]
    assert {"application/json", "image/jpeg", "multipart/form-data"} <= set(content)
    compare_body = resolve(
        spec["paths"][COMPARE]["post"]["requestBody"]["content"]["application/json"]["schema"]
    )
    references = resolve(compare_body["properties"]["reference_embeddings"]["items"])
    assert "id" in references["properties"]
    # Every schema the document refers to is in it.
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(spec)))
    assert refs and refs <= set(schemas)


@pytest.mark.parametrize("mime", ["image/jpeg", None], ids=["data-uri", "bare-base64"])
def test_embed_real_photo(client: TestClient, mime: str | None) -> None:
    response = client.post(EMBED, json={"image": b64(read("obama_1.jpg"), mime)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"embedding", "face_detected", "detection_score", "model"}
    assert len(body["embedding"]) == 512 and body["face_detected"] is True
    assert abs(np.linalg.norm(body["embedding"]) - 1) < 1e-4
    assert 0.5 <= body["detection_score"] <= 1.0
    assert response.headers["x-request-id"]


def test_embeddings_through_http_separate_people(client: TestClient) -> None:
    def emb(name: str) -> np.ndarray:
        return np.array(client.post(EMBED, json={"image": b64(read(name))}).json()["embedding"])

    obama1, obama2, biden = emb("obama_1.jpg"), emb("obama_4.jpg"), emb("biden_2.jpg")
    assert obama1 @ obama2 > obama1 @ biden + 0.2


def test_png_through_http(client: TestClient) -> None:
    png = read("lin_manuel_miranda.png")
    response = client.post(EMBED, json={"image": b64(png, "image/png")})
    assert response.status_code == 200
    embedding = np.array(response.json()["embedding"])
    assert embedding.shape == (512,) and np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-4)
    # The same pixels as a near-lossless JPEG, encoded by OpenCV here: the same face.
    pixels = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert pixels is not None
    as_jpeg = client.post(
        EMBED, json={"image": b64(encode(pixels, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 100]))}
    ).json()
    assert float(embedding @ np.array(as_jpeg["embedding"])) > 0.98
    # ... and not somebody else.
    obama = np.array(client.post(EMBED, json={"image": b64(read("obama_1.jpg"))}).json()["embedding"])
    assert float(embedding @ obama) < 0.3


# --- every error code a caller can cause, with its status and shape -------------------


def test_invalid_image_bad_base64(client: TestClient) -> None:
    assert_error(
        client.post(EMBED, json={"image": "data:image/jpeg;base64,@@not-base64@@"}), 400, "INVALID_IMAGE"
    )


def test_invalid_image_not_an_image(client: TestClient) -> None:
    text = base64.b64encode(b"just some text, not pixels").decode()
    assert_error(client.post(EMBED, json={"image": text}), 400, "INVALID_IMAGE")


def test_no_face(client: TestClient) -> None:
    image = b64(encode(no_face_image(), ".jpg"))
    assert_error(client.post(EMBED, json={"image": image}), 422, "NO_FACE_DETECTED")


def test_multiple_faces(client: TestClient) -> None:
    body = assert_error(
        client.post(EMBED, json={"image": b64(read("two_people.jpg"))}), 422, "MULTIPLE_FACES_DETECTED"
    )
    assert "2 faces" in body["detail"]


def test_image_too_large_bytes(model_dir: Path, model: ModelState) -> None:
    small = make_settings(model_dir, max_image_size=100_000)
    with TestClient(create_app(small, model)) as c:
        body = assert_error(c.post(EMBED, json={"image": b64(read("obama_1.jpg"))}), 413, "IMAGE_TOO_LARGE")
        assert "100000" in body["detail"]


def test_image_too_many_pixels(client: TestClient) -> None:
    assert_error(
        client.post(EMBED, json={"image": b64(png_header_only(50_000, 50_000), "image/png")}),
        413,
        "IMAGE_TOO_LARGE",
    )


def test_unsupported_format(client: TestClient) -> None:
    gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x00\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
    body = assert_error(client.post(EMBED, json={"image": b64(gif, "image/gif")}), 415, "UNSUPPORTED_FORMAT")
    assert "JPEG" in body["detail"]


def test_model_not_loaded(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)  # an empty model folder
    with TestClient(create_app(settings)) as c:
        health = c.get("/api/v1/health")
        assert health.status_code == 503
        reported = health.json()
        assert {k: reported[k] for k in ("status", "model_loaded", "model_name")} == {
            "status": "unhealthy",
            "model_loaded": False,
            "model_name": "buffalo_sc",
        }
        # The reason, without the server's folders.
        assert "provision" in reported["detail"] and str(tmp_path) not in reported["detail"]
        body = assert_error(c.post(EMBED, json={"image": b64(read("obama_1.jpg"))}), 503, "MODEL_NOT_LOADED")
        assert "provision" in body["detail"]
        assert_error(c.get("/api/v1/model-info"), 503, "MODEL_NOT_LOADED")
        # compare needs no model
        ok = c.post(
            COMPARE,
            json={
                "query_embedding": vec(1, 0),
                "reference_embeddings": [{"id": "a", "embedding": vec(1, 0)}],
            },
        )
        assert ok.status_code == 200


@pytest.mark.parametrize(
    "payload",
    [
        {"query_embedding": vec(1.0, 0.0), "reference_embeddings": [{"id": "a", "embedding": [1.0]}]},
        {"query_embedding": vec(0.0, 0.0), "reference_embeddings": [{"id": "a", "embedding": vec(1.0, 0.0)}]},
    ],
    ids=["length-mismatch", "zero-vector"],
)
def test_invalid_embedding(client: TestClient, payload: dict[str, Any]) -> None:
    assert_error(client.post(COMPARE, json=payload), 422, "INVALID_EMBEDDING")


def test_huge_finite_values_keep_their_direction(client: TestClient) -> None:
    payload = {
        "query_embedding": vec(1.0, 0.0),
        "reference_embeddings": [{"id": "a", "embedding": vec(1e308, 1e308)}],
    }
    body = client.post(COMPARE, json=payload).json()
    assert body["best_match"]["similarity"] == pytest.approx(2**-0.5)


def test_nan_in_json_is_refused(client: TestClient) -> None:
    raw = '{"query_embedding": [NaN, 1.0], "reference_embeddings": [{"id": "a", "embedding": [1.0, 2.0]}]}'
    response = client.post(COMPARE, content=raw, headers={"content-type": "application/json"})
    assert_error(response, 422, "INVALID_EMBEDDING")


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"query_embedding": [1.0], "reference_embeddings": []},
        {"query_embedding": [], "reference_embeddings": [{"id": "a", "embedding": [1.0]}]},
        {"query_embedding": [1.0], "reference_embeddings": [{"embedding": [1.0]}]},
        {"query_embedding": [1.0], "reference_embeddings": [{"id": "", "embedding": [1.0]}]},
        {"query_embedding": ["x"], "reference_embeddings": [{"id": "a", "embedding": [1.0]}]},
        {
            "query_embedding": [1.0],
            "reference_embeddings": [{"id": "a", "embedding": [1.0]}],
            "distance_metric": "manhattan",
        },
    ],
    ids=["empty", "no-references", "empty-query", "missing-id", "empty-id", "not-a-number", "bad-metric"],
)
def test_compare_validation_errors_keep_the_shape(client: TestClient, payload: dict[str, Any]) -> None:
    assert_error(client.post(COMPARE, json=payload), 422, "INVALID_EMBEDDING")


@pytest.mark.parametrize(
    "payload", [{}, {"image": 42}, {"img": "abc"}], ids=["empty", "number", "wrong-field"]
)
def test_embed_validation_errors_keep_the_shape(client: TestClient, payload: dict[str, Any]) -> None:
    assert_error(client.post(EMBED, json=payload), 422, "INVALID_IMAGE")


def test_malformed_json(client: TestClient) -> None:
    response = client.post(EMBED, content=b'{"image": "abc', headers={"content-type": "application/json"})
    body = assert_error(response, 422, "INVALID_IMAGE")
    assert "JSON" in body["detail"]


def test_unknown_route_and_method(client: TestClient) -> None:
    assert_error(client.get("/api/v1/nothing"), 404, "NOT_FOUND")
    assert_error(client.get(EMBED), 405, "METHOD_NOT_ALLOWED")


# --- compare --------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_compare_agrees_with_numpy(client: TestClient, metric: str) -> None:
    rng = np.random.default_rng(1)
    query = rng.normal(size=512)
    refs = rng.normal(size=(20, 512))
    refs[7] = query + rng.normal(scale=0.1, size=512)
    payload = {
        "query_embedding": query.tolist(),
        "reference_embeddings": [
            {"id": f"user_{i:03d}", "embedding": r.tolist()} for i, r in enumerate(refs)
        ],
        "distance_metric": metric,
    }
    body = client.post(COMPARE, json=payload).json()
    qn = query / np.linalg.norm(query)
    rn = refs / np.linalg.norm(refs, axis=1, keepdims=True)
    cos = rn @ qn
    expected = 1 - cos if metric == "cosine" else np.linalg.norm(rn - qn, axis=1)
    order = np.argsort(expected)
    assert [m["id"] for m in body["matches"]] == [f"user_{i:03d}" for i in order]
    np.testing.assert_allclose([m["distance"] for m in body["matches"]], expected[order], atol=1e-6)
    np.testing.assert_allclose([m["similarity"] for m in body["matches"]], cos[order], atol=1e-6)
    assert body["best_match"] == body["matches"][0] and body["best_match"]["id"] == "user_007"
    assert body["distance_metric"] == metric


def test_compare_defaults_to_cosine(client: TestClient) -> None:
    body = client.post(
        COMPARE,
        json={"query_embedding": vec(1, 0), "reference_embeddings": [{"id": "a", "embedding": vec(0, 1)}]},
    ).json()
    assert body["distance_metric"] == "cosine" and body["best_match"]["distance"] == pytest.approx(1.0)


def test_fixed_api_key_for_plain_servers(model_dir: Path, model: ModelState) -> None:
    settings = make_settings(model_dir, api_key="s3cret")
    with TestClient(create_app(settings, model)) as c:
        body = {"query_embedding": vec(1, 0), "reference_embeddings": [{"id": "a", "embedding": vec(1, 0)}]}
        assert_error(c.post(COMPARE, json=body), 401, "UNAUTHORIZED")
        assert_error(c.post(COMPARE, json=body, headers={"x-api-key": "wrong"}), 401, "UNAUTHORIZED")
        assert c.post(COMPARE, json=body, headers={"x-api-key": "s3cret"}).status_code == 200
        assert_error(c.get("/api/v1/model-info"), 401, "UNAUTHORIZED")
        assert c.get("/api/v1/health").status_code == 200
