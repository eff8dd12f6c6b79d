"""Queue mode through the real Lambda handler, against moto (S3 and SQS): each
message's result (or error) is delivered; only failed messages are reported
back to the queue; poison messages fail until the dead-letter queue."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from moto import mock_aws

from face_recognition_service.aws_lambda.function import build_handler
from face_recognition_service.engine import ModelState
from face_recognition_service.testing import FakeLambdaContext, sqs_record
from tests.support.helpers import make_settings, read
from tests.support.lambda_support import load_event


@pytest.fixture()
def aws(aws_credentials: None) -> Iterator[Any]:
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="photos")
        s3.create_bucket(Bucket="results")
        s3.put_object(Bucket="photos", Key="u1.jpg", Body=read("obama_small.jpg"))
        yield s3


def test_a_batch_with_partial_failure(aws: Any, model_dir: Path, model: ModelState) -> None:
    settings = make_settings(model_dir, image_s3_buckets="photos", results_s3_uri="s3://results/out")
    handler = build_handler(settings, model, warm=False)
    event = {
        "Records": [
            sqs_record({"id": "from-s3", "image_s3_uri": "s3://photos/u1.jpg", "include": ["quality"]}, "m1"),
            sqs_record({"id": "inline", "image": base64.b64encode(read("rose_leslie_1.jpg")).decode()}, "m2"),
            sqs_record(
                {"id": "no-face", "image": base64.b64encode(b"definitely not a photo").decode()}, "m3"
            ),
            sqs_record("{this is not json", "m4"),
            sqs_record({"id": "missing-image"}, "m5"),
        ]
    }
    response = handler(event, FakeLambdaContext())  # type: ignore[arg-type]
    failed = sorted(item["itemIdentifier"] for item in response["batchItemFailures"])
    assert failed == ["m4"]  # only the message with no id to answer to goes back to the queue
    keys = sorted(o["Key"] for o in aws.list_objects_v2(Bucket="results")["Contents"])
    assert keys == ["out/from-s3.json", "out/inline.json", "out/missing-image.json", "out/no-face.json"]

    def result(name: str) -> dict[str, Any]:
        return json.loads(aws.get_object(Bucket="results", Key=f"out/{name}.json")["Body"].read())  # type: ignore[no-any-return]

    first = result("from-s3")
    assert first["message_id"] == "m1" and len(first["embedding"]) == 512 and "quality" in first
    assert first["model"].startswith("buffalo_sc/")
    bad = result("no-face")
    assert bad["error_code"] == "INVALID_IMAGE" and {"error", "detail"} <= set(bad)
    missing = result("missing-image")
    assert missing["error_code"] == "INVALID_IMAGE" and "image" in missing["detail"]


def test_results_to_a_queue(aws: Any, model_dir: Path, model: ModelState) -> None:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="results")["QueueUrl"]
    settings = make_settings(model_dir, results_queue_url=url)
    handler = build_handler(settings, model, warm=False)
    body = {
        "id": "u7",
        "image": base64.b64encode(read("obama_small.jpg")).decode(),
        "embedding_format": "base64",
    }
    response = handler({"Records": [sqs_record(body, "m1")]}, FakeLambdaContext())  # type: ignore[arg-type]
    assert response["batchItemFailures"] == []
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    delivered = json.loads(messages[0]["Body"])
    assert delivered["id"] == "u7" and isinstance(delivered["embedding"], str)


def test_transient_failures_return_to_the_queue(aws: Any, model_dir: Path, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, results_s3_uri="s3://results/out")  # no model there
    handler = build_handler(settings, ModelState(None, "not installed"), warm=False)
    body = {"id": "u1", "image": base64.b64encode(read("obama_small.jpg")).decode()}
    response = handler({"Records": [sqs_record(body, "m1")]}, FakeLambdaContext())  # type: ignore[arg-type]
    assert [i["itemIdentifier"] for i in response["batchItemFailures"]] == ["m1"]
    assert "Contents" not in aws.list_objects_v2(Bucket="results")


def test_sample_sqs_event_runs_through_the_handler(aws: Any, model_dir: Path, model: ModelState) -> None:
    settings = make_settings(model_dir, image_s3_buckets="photos", results_s3_uri="s3://results/out")
    handler = build_handler(settings, model, warm=False)
    response = handler(load_event("sqs-embed.json"), FakeLambdaContext())  # type: ignore[arg-type]
    assert [i["itemIdentifier"] for i in response["batchItemFailures"]] == ["poison-message"]


def test_results_are_json_objects_and_each_message_is_logged_and_counted(
    aws: Any, model_dir: Path, model: ModelState, capsys: pytest.CaptureFixture[str]
) -> None:
    """The result object says it is JSON; one log line per delivered message names
    it and its error code; a poison message is counted in QueuePoisonMessages."""
    # A prefix that ends in a letter X and a slash: the slash alone is trimmed.
    settings = make_settings(model_dir, image_s3_buckets="photos", results_s3_uri="s3://results/outX/")
    event = {
        "Records": [
            sqs_record({"id": "ok", "image_s3_uri": "s3://photos/u1.jpg"}, "m1"),
            sqs_record({"id": "bad", "image": base64.b64encode(b"not a photo").decode()}, "m2"),
            sqs_record("{poison", "m3"),
        ]
    }
    capsys.readouterr()

    def run() -> Any:  # the handler built inside: its init logs too
        return build_handler(settings, model, warm=False)(event, FakeLambdaContext())  # type: ignore[arg-type]

    response, lines = _logged(run)
    assert [i["itemIdentifier"] for i in response["batchItemFailures"]] == ["m3"]
    # RESULTS_S3_URI with a trailing slash: still outX/<id>.json, one slash.
    keys = sorted(o["Key"] for o in aws.list_objects_v2(Bucket="results")["Contents"])
    assert keys == ["outX/bad.json", "outX/ok.json"]
    assert aws.head_object(Bucket="results", Key="outX/ok.json")["ContentType"] == "application/json"
    lines += [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]  # metrics
    delivered = {
        line["message_id"]: line.get("error_code") for line in lines if line.get("message") == "queue message"
    }
    assert delivered == {"m1": None, "m2": "INVALID_IMAGE"}
    poison = [doc for doc in lines if "QueuePoisonMessages" in doc]
    assert [doc["QueuePoisonMessages"] for doc in poison] == [[1.0]]
    units = {m["Name"]: m["Unit"] for doc in poison for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert units["QueuePoisonMessages"] == "Count"
    returned = {
        line["message_id"]: line["reason"]
        for line in lines
        if line.get("message") == "queue message returned"
    }
    assert returned == {"m3": "unreadable message (no usable id)"}


def _logged(run: Any) -> tuple[Any, list[dict[str, Any]]]:
    """``run()``'s result and the JSON log lines it wrote (the Powertools logger's
    stream swapped by assignment: setStream would flush a stream that a second
    in-process pytest run, as make mutate's, has closed)."""
    import io

    from face_recognition_service.aws_lambda.observability import logger

    log_handler = logger.registered_handler
    assert isinstance(log_handler, logging.StreamHandler)
    stream = io.StringIO()
    previous, log_handler.stream = log_handler.stream, stream
    try:
        result = run()
    finally:
        log_handler.stream = previous
    return result, [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


def _returned(lines: list[dict[str, Any]]) -> dict[str, str]:
    return {
        line["message_id"]: line["reason"]
        for line in lines
        if line.get("message") == "queue message returned"
    }


def test_no_destination_returns_every_message_to_the_queue(
    aws: Any, model_dir: Path, model: ModelState
) -> None:
    body = {"id": "ok", "image_s3_uri": "s3://photos/u1.jpg"}

    def run() -> Any:
        handler = build_handler(make_settings(model_dir, image_s3_buckets="photos"), model, warm=False)
        return handler({"Records": [sqs_record(body, "m1")]}, FakeLambdaContext())  # type: ignore[arg-type]

    response, lines = _logged(run)
    assert [i["itemIdentifier"] for i in response["batchItemFailures"]] == ["m1"]
    assert _returned(lines) == {"m1": "neither RESULTS_S3_URI nor RESULTS_QUEUE_URL is set"}


def test_a_transient_failure_is_logged_with_its_code(aws: Any, tmp_path: Path) -> None:
    body = {"id": "u1", "image": base64.b64encode(read("obama_small.jpg")).decode()}

    def run() -> Any:
        settings = make_settings(tmp_path, results_s3_uri="s3://results/out")
        handler = build_handler(settings, ModelState(None, "not installed"), warm=False)
        return handler({"Records": [sqs_record(body, "m1")]}, FakeLambdaContext())  # type: ignore[arg-type]

    response, lines = _logged(run)
    assert [i["itemIdentifier"] for i in response["batchItemFailures"]] == ["m1"]
    assert _returned(lines) == {"m1": "MODEL_NOT_LOADED"}


def test_distinct_ids_never_share_a_result_key(aws: Any, model_dir: Path, model: ModelState) -> None:
    """'g1' and 'g1.json?x' once both wrote out/g1.json, and '#' wrote out/
    (issue 21, finding 6): each id is percent-encoded into its own key."""
    settings = make_settings(model_dir, image_s3_buckets="photos", results_s3_uri="s3://results/out")
    handler = build_handler(settings, model, warm=False)
    ids = ["g1", "g1.json?x", "#", "a/b", "a", "100%", "x\ny"]
    image = base64.b64encode(b"not a photo").decode()  # every result an INVALID_IMAGE: cheap
    records = [sqs_record({"id": i, "image": image}, f"m{n}") for n, i in enumerate(ids)]
    response = handler({"Records": records}, FakeLambdaContext())  # type: ignore[arg-type]
    assert response["batchItemFailures"] == []
    keys = sorted(o["Key"] for o in aws.list_objects_v2(Bucket="results")["Contents"])
    assert len(keys) == len(ids)
    assert "out/g1.json" in keys and "out/g1.json%3Fx.json" in keys and "out/%23.json" in keys
    assert "out/a%2Fb.json" in keys
    for key in keys:
        result = json.loads(aws.get_object(Bucket="results", Key=key)["Body"].read())
        assert key == f"out/{quote(result['id'], safe='')}.json"


def test_identify_messages(aws: Any, model_dir: Path, model: ModelState, tmp_path: Path) -> None:
    """A message naming a gallery is an identification; its answer (or error) is
    delivered like any result, and the gallery is read once for the batch."""
    from face_recognition_service.gallery.build import build
    from tests.support.lambda_support import EVENTS

    build(EVENTS / "galleries" / "staff.jsonl", tmp_path / "staff.frg")
    aws.create_bucket(Bucket="galleries")
    aws.upload_file(str(tmp_path / "staff.frg"), "galleries", "staff.frg")
    aws.put_object(Bucket="photos", Key="biden.jpg", Body=read("biden_2.jpg"))
    settings = make_settings(
        model_dir,
        image_s3_buckets="photos",
        gallery_s3_buckets="galleries",
        gallery_cache_dir=tmp_path / "cache",
        results_s3_uri="s3://results/out",
    )
    handler = build_handler(settings, model, warm=False)
    gallery = "s3://galleries/staff.frg"
    event = {
        "Records": [
            sqs_record({"id": "door-1", "gallery": gallery, "image_s3_uri": "s3://photos/biden.jpg"}, "m1"),
            sqs_record(
                {"id": "door-2", "gallery": gallery, "image": base64.b64encode(read("obama_4.jpg")).decode()},
                "m2",
            ),
            sqs_record(
                {"id": "door-3", "gallery": "s3://galleries/missing.frg", "embedding": [0.1] * 512}, "m3"
            ),
            sqs_record({"id": "door-4", "gallery": gallery}, "m4"),  # no probe: an error answer
            sqs_record({"gallery": gallery, "embedding": [0.1] * 512}, "m5"),  # no id: poison
        ]
    }
    response = handler(event, FakeLambdaContext())  # type: ignore[arg-type]
    assert [item["itemIdentifier"] for item in response["batchItemFailures"]] == ["m5"]

    def result(name: str) -> dict[str, Any]:
        return json.loads(aws.get_object(Bucket="results", Key=f"out/{name}.json")["Body"].read())  # type: ignore[no-any-return]

    assert result("door-1")["identity"] == "biden" and result("door-1")["message_id"] == "m1"
    assert result("door-2")["identity"] == "obama"
    assert result("door-3")["error_code"] == "GALLERY_NOT_FOUND"
    assert result("door-4")["error_code"] == "INVALID_EMBEDDING"
    assert list((tmp_path / "cache").iterdir()) == []  # the service's copy has no name


@pytest.mark.parametrize(
    "body",
    [
        {"id": "", "image": "aGVsbG8="},
        {"id": "x" * 257, "image": "aGVsbG8="},
        {"id": 7, "image": "aGVsbG8="},
        {"image": "aGVsbG8="},
        ["not", "an", "object"],
        "{this is not json",
    ],
    ids=["empty-id", "id-too-long", "id-not-a-string", "no-id", "not-an-object", "not-json"],
)
def test_a_message_without_a_usable_id_is_poison(
    aws: Any, model_dir: Path, model: ModelState, body: Any
) -> None:
    """Nothing to answer to: it goes back to the queue (then to the dead-letter
    queue) and no result is written."""
    settings = make_settings(model_dir, results_s3_uri="s3://results/out")
    handler = build_handler(settings, model, warm=False)
    response = handler({"Records": [sqs_record(body, "m1")]}, FakeLambdaContext())  # type: ignore[arg-type]
    assert [i["itemIdentifier"] for i in response["batchItemFailures"]] == ["m1"]
    assert "Contents" not in aws.list_objects_v2(Bucket="results")
