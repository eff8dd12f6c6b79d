"""Tests that sit exactly where a plausible bug would change an answer (issue 24's
mutation audit): each was checked against the bug planted in the code.

1. /verify scales references to unit length (a reference times 3 is the same face);
2. a match is ``similarity >= threshold`` (identical vectors match at 1.0);
3. a raw or multipart image one byte over MAX_IMAGE_SIZE is refused;
4. a key source that yields nothing lets nobody in (a binary secret);
5. an S3 read failure in queue mode returns the message to the queue;
6. EXIF orientation is read in the byte order the file declares ("II" or "MM");
7. a margin of exactly AMBIGUITY_MARGIN is not ambiguous.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.stub import Stubber
from fastapi.testclient import TestClient
from PIL import Image

from face_recognition_service.api import create_app
from face_recognition_service.aws_lambda.function import build_handler
from face_recognition_service.engine import ModelState
from face_recognition_service.imaging import probe
from face_recognition_service.matching import AMBIGUITY_MARGIN, PersonScores, decide
from face_recognition_service.testing import FakeLambdaContext, http_api_event, sqs_record
from tests.support.helpers import FACES, assert_error, b64, cosine, make_settings, read, vec
from tests.support.lambda_support import load_event

EMBED, VERIFY = "/api/v1/embed", "/api/v1/verify"


def _embedding(client: TestClient, name: str) -> list[float]:
    body = client.post(EMBED, json={"image": b64(read(name))}).json()
    return body["embedding"]  # type: ignore[no-any-return]


# --- 1. unit length ------------------------------------------------------------------------


def test_a_scaled_reference_is_the_same_face(client: TestClient) -> None:
    """A reference times 3 (or divided by 3) must score exactly as the reference
    itself: similarity is the cosine, from the directions alone."""
    probe_vector = np.array(_embedding(client, "obama_1.jpg"))
    other = np.array(_embedding(client, "biden_1.jpg"))
    same = np.array(_embedding(client, "obama_2.jpg"))
    expected_other, expected_same = cosine(probe_vector, other), cosine(probe_vector, same)
    assert expected_other < 0.2 < 0.5 < expected_same  # the photos say who is who
    for factor in (3.0, 1 / 3):
        body = client.post(
            VERIFY,
            json={
                "embedding": probe_vector.tolist(),
                "references": [{"id": "biden", "embedding": (other * factor).tolist()}],
            },
        ).json()
        assert body["similarity"] == pytest.approx(expected_other, abs=1e-6)
        assert body["match"] is False
        body = client.post(
            VERIFY,
            json={
                "embedding": probe_vector.tolist(),
                "references": [{"id": "obama", "embedding": (same * factor).tolist()}],
            },
        ).json()
        assert body["similarity"] == pytest.approx(expected_same, abs=1e-6) and body["match"] is True


def test_a_scaled_probe_is_the_same_face(client: TestClient) -> None:
    probe_vector = np.array(_embedding(client, "obama_1.jpg"))
    other = _embedding(client, "biden_1.jpg")
    plain = client.post(
        VERIFY, json={"embedding": probe_vector.tolist(), "references": [{"id": "b", "embedding": other}]}
    )
    scaled = client.post(
        VERIFY,
        json={"embedding": (probe_vector * 7).tolist(), "references": [{"id": "b", "embedding": other}]},
    )
    assert plain.json()["similarity"] == scaled.json()["similarity"]


# --- 2. and 7. the decision's boundaries ---------------------------------------------------


def test_identical_vectors_match_at_threshold_one(client: TestClient) -> None:
    body = client.post(
        VERIFY,
        json={
            "embedding": vec(0.0, 1.0),
            "references": [{"id": "a", "embedding": vec(0.0, 2.0)}],
            "threshold": 1.0,
        },
    ).json()
    assert body["similarity"] == 1.0 and body["match"] is True


def test_a_similarity_exactly_at_the_threshold_matches() -> None:
    scores = PersonScores(["a"], np.array([0.36]), [1])
    assert decide(scores, 0.36).match is True
    assert decide(scores, float(np.nextafter(0.36, 1.0))).match is False


def test_a_margin_of_exactly_the_ambiguity_margin_is_not_ambiguous() -> None:
    """0.1 and 0.0: their difference is the float 0.1 exactly."""
    assert AMBIGUITY_MARGIN == 0.1
    at = decide(PersonScores(["a", "b"], np.array([0.1, 0.0]), [1, 1]), 0.05)
    assert at.match is True and at.margin == AMBIGUITY_MARGIN and at.ambiguous is False
    under = decide(PersonScores(["a", "b"], np.array([np.nextafter(0.1, 0.0), 0.0]), [1, 1]), 0.05)
    assert under.margin is not None and under.margin < AMBIGUITY_MARGIN and under.ambiguous is True
    # No match, no ambiguity, however close the runner-up.
    assert decide(PersonScores(["a", "b"], np.array([0.1, 0.09]), [1, 1]), 0.5).ambiguous is False


def test_the_verify_answer_flags_ambiguity_over_http(client: TestClient) -> None:
    """Through /verify: a runner-up 0.05 behind a match is ambiguous, 0.15 behind is not."""
    probe_vector = vec(1.0)

    def at(similarity: float) -> list[float]:
        return vec(similarity, float(np.sqrt(1 - similarity**2)))

    close = [{"id": "a", "embedding": at(0.9)}, {"id": "b", "embedding": at(0.85)}]
    far = [{"id": "a", "embedding": at(0.9)}, {"id": "b", "embedding": at(0.75)}]
    assert (
        client.post(VERIFY, json={"embedding": probe_vector, "references": close}).json()["ambiguous"] is True
    )
    answer = client.post(VERIFY, json={"embedding": probe_vector, "references": far}).json()
    assert answer["ambiguous"] is False and answer["margin"] == pytest.approx(0.15, abs=1e-6)


# --- 3. raw and multipart image sizes --------------------------------------------------------


@pytest.mark.parametrize("transport", ["raw", "multipart"])
def test_an_image_one_byte_over_the_limit_is_refused_on_every_transport(
    model_dir: Path, model: ModelState, transport: str
) -> None:
    data = read("obama_small.jpg")

    def post(c: TestClient) -> Any:
        if transport == "raw":
            return c.post(EMBED, content=data, headers={"content-type": "image/jpeg"})
        return c.post(EMBED, files={"image": ("me.jpg", data, "image/jpeg")})

    with TestClient(create_app(make_settings(model_dir, max_image_size=len(data) - 1), model)) as c:
        body = assert_error(post(c), 413, "IMAGE_TOO_LARGE")
        assert str(len(data) - 1) in (body["detail"] or "")
    with TestClient(create_app(make_settings(model_dir, max_image_size=len(data)), model)) as c:
        at_limit = post(c)
        assert at_limit.status_code == 200 and len(at_limit.json()["embedding"]) == 512


def test_an_oversized_raw_image_is_refused_through_the_lambda_handler(
    lambda_module: ModuleType, model_dir: Path, model: ModelState
) -> None:
    data = read("obama_small.jpg")
    handler = lambda_module.build_handler(
        make_settings(model_dir, max_image_size=len(data) - 1), model, warm=False
    )
    result = handler(
        http_api_event("POST", EMBED, data, headers={"content-type": "image/jpeg"}), FakeLambdaContext()
    )
    assert result["statusCode"] == 413 and json.loads(result["body"])["error_code"] == "IMAGE_TOO_LARGE"


# --- 4. a key source that yields nothing ------------------------------------------------------


def test_a_binary_secret_lets_nobody_in(
    aws_mock: None, lambda_module: ModuleType, model_dir: Path, model: ModelState
) -> None:
    """Secrets Manager returns bytes for a binary secret: no key can equal it, so
    every protected request is refused, whatever it sends."""
    boto3.client("secretsmanager").create_secret(Name="face-api-key", SecretBinary=b"\x00\x01")
    handler = lambda_module.build_handler(make_settings(model_dir, api_key_secret="face-api-key"), model)
    event = load_event("compare-cosine.json")
    for key in (None, "", "\x00\x01", "None"):
        sent = json.loads(json.dumps(event))
        if key is not None:
            sent["headers"]["x-api-key"] = key
        result = handler(sent, FakeLambdaContext())
        assert result["statusCode"] == 401 and json.loads(result["body"])["error_code"] == "UNAUTHORIZED"
    assert handler(load_event("health.json"), FakeLambdaContext())["statusCode"] == 200


# --- 5. a transient S3 failure in queue mode ----------------------------------------------------


def test_an_s3_read_failure_returns_the_message_to_the_queue(
    aws_mock: None, model_dir: Path, model: ModelState
) -> None:
    """S3 answers 503 SlowDown for the photo: STORAGE_UNAVAILABLE, which is transient,
    so the message goes back to the queue and no result is written."""
    from face_recognition_service import aws_clients

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="results")
    settings = make_settings(model_dir, image_s3_buckets="photos", results_s3_uri="s3://results/out")
    handler = build_handler(settings, model, warm=False)
    aws_clients.client.cache_clear()
    photos = aws_clients.client("s3")
    with Stubber(photos) as stub:
        stub.add_client_error("head_object", service_error_code="SlowDown", http_status_code=503)
        body = {"id": "u1", "image_s3_uri": "s3://photos/u1.jpg"}
        response = handler({"Records": [sqs_record(body, "m1")]}, FakeLambdaContext())  # type: ignore[arg-type]
    aws_clients.client.cache_clear()
    assert [i["itemIdentifier"] for i in response["batchItemFailures"]] == ["m1"]
    assert "Contents" not in s3.list_objects_v2(Bucket="results")


# --- 6. EXIF byte order --------------------------------------------------------------------------


LABELLED_WITH_EXIF = sorted(p.name for p in FACES.glob("*.jpg") if b"Exif\x00\x00" in p.read_bytes()[:65536])


@pytest.mark.parametrize("name", LABELLED_WITH_EXIF)
def test_the_orientation_of_each_labelled_photo_agrees_with_pillow(name: str) -> None:
    """Seven of the labelled photos carry little-endian ("II") EXIF, one big-endian."""
    data = read(name)
    with Image.open(FACES / name) as image:
        expected = image.getexif().get(0x0112, 1)
    assert probe(data).orientation == expected


def test_the_labelled_photos_carry_both_byte_orders() -> None:
    orders = {read(n)[read(n).find(b"Exif\x00\x00") + 6 :][:2] for n in LABELLED_WITH_EXIF}
    assert orders == {b"II", b"MM"}


def test_a_little_endian_orientation_six_is_turned() -> None:
    from tests.support.helpers import with_exif_orientation

    jpeg = with_exif_orientation(read("obama_small.jpg"), 6, "<")
    assert jpeg[jpeg.find(b"Exif") + 6 :][:2] == b"II"
    assert probe(jpeg).orientation == 6


def test_a_queue_result_is_written_for_the_sample_event(
    aws_mock: None, model_dir: Path, model: ModelState
) -> None:
    """The same handler delivers a result when S3 answers: the failure above is
    the stubbed read, not the set-up."""
    s3 = boto3.client("s3")
    for bucket in ("photos", "results"):
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket="photos", Key="u1.jpg", Body=read("obama_small.jpg"))
    settings = make_settings(model_dir, image_s3_buckets="photos", results_s3_uri="s3://results/out")
    handler = build_handler(settings, model, warm=False)
    body = {"id": "u1", "image_s3_uri": "s3://photos/u1.jpg"}
    response = handler({"Records": [sqs_record(body, "m1")]}, FakeLambdaContext())  # type: ignore[arg-type]
    assert response["batchItemFailures"] == []
    result = json.loads(s3.get_object(Bucket="results", Key="out/u1.json")["Body"].read())
    assert len(result["embedding"]) == 512


# --- the key's words, the key looked up once, faces counted on a refusal ----------------------


def test_a_refused_key_says_what_to_send_and_model_info_takes_the_key(
    model_dir: Path, model: ModelState
) -> None:
    lookups = 0

    def source() -> str:
        nonlocal lookups
        lookups += 1
        return "k"

    with TestClient(create_app(make_settings(model_dir), model, api_key=source)) as c:
        body = assert_error(c.get("/api/v1/model-info"), 401, "UNAUTHORIZED")
        assert (body["error"], body["detail"]) == (
            "A valid API key is required.",
            "Send it in the x-api-key header.",
        )
        info = c.get("/api/v1/model-info", headers={"x-api-key": "k"})
        assert info.status_code == 200 and info.json()["embedding_size"] == 512
        # A heavy route is checked once, from the headers, before its body: the
        # route's own check sees that and does not look the key up again.
        lookups = 0
        ok = c.post(
            VERIFY,
            json={"embedding": vec(1.0), "references": [{"id": "a", "embedding": vec(1.0)}]},
            headers={"x-api-key": "k"},
        )
        assert ok.status_code == 200 and lookups == 1


def test_a_model_that_is_not_loaded_says_so(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path))) as c:
        body = assert_error(
            c.post(EMBED, json={"image": b64(read("obama_small.jpg"))}), 503, "MODEL_NOT_LOADED"
        )
        assert body["error"] == "The face model is not loaded."


def test_a_refusal_still_counts_the_faces_it_found(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """MULTIPLE_FACES_DETECTED is an error answer, yet the request record (the log
    line, the faces metric) says how many faces the detector found."""
    import logging

    with caplog.at_level(logging.INFO, logger="face_recognition_service.request"):
        assert_error(
            client.post(EMBED, json={"image": b64(read("two_people.jpg"))}), 422, "MULTIPLE_FACES_DETECTED"
        )
    records = [r for r in caplog.records if r.getMessage() == "request" and getattr(r, "route", "") == EMBED]
    assert [getattr(r, "faces", None) for r in records][-1] == 2


def test_a_processing_error_in_queue_mode_returns_the_message_to_the_queue(
    aws_mock: None, model_dir: Path, model: ModelState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PROCESSING_ERROR is a fault of the service (a bug, logged), not of the
    message: it is worth another try, so the message goes back to the queue."""
    from face_recognition_service.aws_lambda import queue
    from face_recognition_service.errors import ErrorCode, ServiceError

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="results")

    def failing(*_: object, **__: object) -> None:
        raise ServiceError(ErrorCode.PROCESSING_ERROR, "The request could not be processed.")

    monkeypatch.setattr(queue, "embed", failing)
    settings = make_settings(model_dir, results_s3_uri="s3://results/out")
    handler = build_handler(settings, model, warm=False)
    body = {"id": "u1", "image": "aGVsbG8="}
    response = handler({"Records": [sqs_record(body, "m1")]}, FakeLambdaContext())  # type: ignore[arg-type]
    assert [i["itemIdentifier"] for i in response["batchItemFailures"]] == ["m1"]
    assert "Contents" not in s3.list_objects_v2(Bucket="results")
