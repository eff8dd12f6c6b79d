"""Images read from S3 (s3_images.py) against moto, and S3's rarer answers
through botocore's Stubber: each outcome's code, status and exact words, and
the size limit to the byte."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from face_recognition_service import aws_clients
from face_recognition_service.errors import ErrorCode, ServiceError
from face_recognition_service.s3_images import fetch_image, parse_s3_uri

PHOTO = b"\xff\xd8" + bytes(range(256)) * 40  # 10,242 bytes; only its size matters here


@pytest.fixture()
def s3(aws_credentials: None) -> Iterator[Any]:
    with mock_aws():
        aws_clients.client.cache_clear()
        client = boto3.client("s3")
        client.create_bucket(Bucket="photos")
        client.put_object(Bucket="photos", Key="u1.jpg", Body=PHOTO)
        yield client
    aws_clients.client.cache_clear()


def refusal(*args: Any) -> ServiceError:
    with pytest.raises(ServiceError) as refused:
        fetch_image(*args)
    return refused.value


@pytest.mark.parametrize(
    ("uri", "parts"),
    [
        ("s3://photos/u1.jpg", ("photos", "u1.jpg")),
        ("s3://photos/a/b/c.jpg", ("photos", "a/b/c.jpg")),
        # S3 keys are any characters: a URL parser would cut these at '#' or '?',
        # or drop the leading '/', and read another object (issue 21, finding 7).
        ("s3://photos/a#b.jpg", ("photos", "a#b.jpg")),
        ("s3://photos/a?b=1.jpg", ("photos", "a?b=1.jpg")),
        ("s3://photos//a.jpg", ("photos", "/a.jpg")),
        ("s3://photos/%20 x", ("photos", "%20 x")),
    ],
)
def test_uris_name_a_bucket_and_a_key(uri: str, parts: tuple[str, str]) -> None:
    assert parse_s3_uri(uri) == parts


@pytest.mark.parametrize(
    "uri", ["https://photos/u1.jpg", "S3://photos/u1.jpg", "s3:///u1.jpg", "s3://photos", "s3://photos/"]
)
def test_other_uris_are_refused_with_the_form_to_use(uri: str) -> None:
    with pytest.raises(ServiceError) as refused:
        parse_s3_uri(uri)
    error = refused.value
    assert error.code is ErrorCode.INVALID_IMAGE and error.status == 400
    assert (error.message, error.detail) == (
        "The image S3 URI is not valid.",
        "Use the form s3://bucket/key.",
    )


def test_the_image_is_read_whole(s3: Any) -> None:
    assert fetch_image("s3://photos/u1.jpg", ["photos"], len(PHOTO)) == PHOTO


def test_one_byte_over_the_limit_is_refused_from_the_objects_size(s3: Any) -> None:
    error = refusal("s3://photos/u1.jpg", ["photos"], len(PHOTO) - 1)
    assert error.code is ErrorCode.IMAGE_TOO_LARGE and error.status == 413
    assert error.message == "The image exceeds the maximum size."
    assert (
        error.detail == f"The object is {len(PHOTO)} bytes; the maximum image size is {len(PHOTO) - 1} bytes."
    )


def test_no_bucket_allowed_means_the_feature_is_off(s3: Any) -> None:
    error = refusal("s3://photos/u1.jpg", [], 10**6)
    assert error.code is ErrorCode.IMAGE_SOURCE_FORBIDDEN and error.status == 403
    assert error.message == "Images from S3 are not enabled."
    assert error.detail == "The operator has named no bucket in IMAGE_S3_BUCKETS; send the image itself."


def test_a_bucket_not_named_is_refused_before_any_read(s3: Any) -> None:
    error = refusal("s3://private/u1.jpg", ["photos"], 10**6)
    assert error.code is ErrorCode.IMAGE_SOURCE_FORBIDDEN
    assert error.message == "The service may not read images from this bucket."
    assert error.detail == "Only the buckets named in IMAGE_S3_BUCKETS are read."


def test_a_missing_object_is_not_found(s3: Any) -> None:
    error = refusal("s3://photos/missing.jpg", ["photos"], 10**6)
    assert error.code is ErrorCode.IMAGE_NOT_FOUND and error.status == 404
    assert (error.message, error.detail) == ("The image object does not exist.", "No object has that key.")


def _stubbed(*answers: tuple[str, dict[str, Any] | None, str | None]) -> Stubber:
    """S3 answering head_object / get_object as given: (operation, response, error code)."""
    aws_clients.client.cache_clear()
    stub = Stubber(aws_clients.client("s3"))
    for operation, response, code in answers:
        if code is None:
            stub.add_response(operation, response or {})
        else:
            stub.add_client_error(
                operation, service_error_code=code, http_status_code=404 if code != "AccessDenied" else 403
            )
    return stub


@pytest.mark.parametrize("code", ["404", "NoSuchKey", "NotFound"])
def test_every_way_s3_says_not_found_is_not_found(aws_credentials: None, code: str) -> None:
    """head_object says 404; get_object says NoSuchKey (an object deleted between the two)."""
    with _stubbed(("head_object", {"ContentLength": 10}, None), ("get_object", None, code)):
        error = refusal("s3://photos/u1.jpg", ["photos"], 100)
    assert error.code is ErrorCode.IMAGE_NOT_FOUND and error.detail == "No object has that key."


@pytest.mark.parametrize("code", ["403", "AccessDenied"])
def test_access_denied_is_forbidden(aws_credentials: None, code: str) -> None:
    with _stubbed(("head_object", None, code)):
        error = refusal("s3://photos/u1.jpg", ["photos"], 100)
    assert error.code is ErrorCode.IMAGE_SOURCE_FORBIDDEN
    assert (error.message, error.detail) == (
        "The service's role may not read this object.",
        "S3 refused the read (AccessDenied).",
    )


def test_another_s3_error_is_storage_unavailable_naming_the_code(aws_credentials: None) -> None:
    with _stubbed(("head_object", None, "SlowDown")):
        error = refusal("s3://photos/u1.jpg", ["photos"], 100)
    assert error.code is ErrorCode.STORAGE_UNAVAILABLE and error.status == 503
    assert (error.message, error.detail) == ("The image could not be read from S3.", "SlowDown")


def test_an_object_larger_than_its_head_said_is_refused(aws_credentials: None) -> None:
    """S3 reports 10 bytes, then sends 101: the read stops at the limit + 1 and refuses."""
    import io

    from botocore.response import StreamingBody

    body = StreamingBody(io.BytesIO(b"x" * 101), 101)
    with _stubbed(("head_object", {"ContentLength": 10}, None), ("get_object", {"Body": body}, None)):
        error = refusal("s3://photos/u1.jpg", ["photos"], 100)
    assert (
        error.code is ErrorCode.IMAGE_TOO_LARGE
        and error.detail == "The object is over the maximum image size (100 bytes)."
    )
    body = StreamingBody(io.BytesIO(b"x" * 100), 100)
    with _stubbed(("head_object", {"ContentLength": 10}, None), ("get_object", {"Body": body}, None)):
        assert fetch_image("s3://photos/u1.jpg", ["photos"], 100) == b"x" * 100


def test_s3_out_of_reach_is_storage_unavailable_naming_the_failure(aws_credentials: None) -> None:
    """No S3 to talk to (a closed port on this machine): botocore's own error,
    named, never a traceback; transient, so queue mode retries it."""
    from botocore.config import Config

    from face_recognition_service.testing import free_port

    unreachable = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=1),
    )
    aws_clients.client.cache_clear()
    original = aws_clients.client
    aws_clients.client = lambda service: unreachable  # type: ignore[assignment]
    try:
        error = refusal("s3://photos/u1.jpg", ["photos"], 100)
    finally:
        aws_clients.client = original
    assert error.code is ErrorCode.STORAGE_UNAVAILABLE
    assert (error.message, error.detail) == (
        "The image could not be read from S3.",
        "EndpointConnectionError",
    )


def test_keys_keep_their_own_letters_at_either_end() -> None:
    assert parse_s3_uri("s3://photos/Xa/bX") == ("photos", "Xa/bX")


def test_only_the_limit_and_one_byte_are_read_from_a_larger_object(aws_credentials: None) -> None:
    """S3 said 10 bytes and sends 10,000: the read stops at limit + 1."""
    import io

    from botocore.response import StreamingBody

    body = StreamingBody(io.BytesIO(b"x" * 10_000), 10_000)
    with _stubbed(("head_object", {"ContentLength": 10}, None), ("get_object", {"Body": body}, None)):
        error = refusal("s3://photos/u1.jpg", ["photos"], 100)
    assert error.message == "The image exceeds the maximum size."
    assert body._amount_read == 101  # type: ignore[attr-defined]


def test_a_head_without_a_length_is_read_and_checked_by_its_bytes(aws_credentials: None) -> None:
    import io

    from botocore.response import StreamingBody

    body = StreamingBody(io.BytesIO(b"y" * 50), 50)
    with _stubbed(("head_object", {}, None), ("get_object", {"Body": body}, None)):
        assert fetch_image("s3://photos/u1.jpg", ["photos"], 100) == b"y" * 50


def test_an_s3_error_without_a_code_is_storage_unavailable_with_no_code(aws_credentials: None) -> None:
    with _stubbed(("head_object", None, "")):
        error = refusal("s3://photos/u1.jpg", ["photos"], 100)
    assert error.code is ErrorCode.STORAGE_UNAVAILABLE and error.detail == ""


def test_a_key_with_a_hash_reads_its_own_object(s3: Any) -> None:
    """s3://photos/a#b.jpg once returned object a's bytes (issue 21, finding 7)."""
    s3.put_object(Bucket="photos", Key="a", Body=b"object a")
    s3.put_object(Bucket="photos", Key="a#b.jpg", Body=b"object a#b")
    s3.put_object(Bucket="photos", Key="/a", Body=b"object /a")
    assert fetch_image("s3://photos/a#b.jpg", ["photos"], 100) == b"object a#b"
    assert fetch_image("s3://photos//a", ["photos"], 100) == b"object /a"
    assert fetch_image("s3://photos/a", ["photos"], 100) == b"object a"
