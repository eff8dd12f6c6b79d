"""Images read from S3 (``image_s3_uri``): only from the buckets the operator
allows (IMAGE_S3_BUCKETS), size checked from the object's metadata before any
byte is downloaded, read into memory (never to disk). boto3 is imported on
first use: it is part of the Lambda extra, not of the core."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from .errors import ErrorCode, ServiceError


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of ``s3://bucket/key``. The key is everything after the
    bucket's slash, as S3 stores it: '#', '?' and a leading '/' are part of the
    key (a URL parser would cut at '#' or '?' and read another object)."""
    bucket, slash, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket or not slash or not key:
        raise ServiceError(
            ErrorCode.INVALID_IMAGE, "The image S3 URI is not valid.", "Use the form s3://bucket/key."
        )
    return bucket, key


@lru_cache(maxsize=1)
def _client() -> Any:
    import boto3

    return boto3.client("s3")


def fetch_image(uri: str, allowed_buckets: list[str], max_bytes: int) -> bytes:
    bucket, key = parse_s3_uri(uri)
    if not allowed_buckets:
        raise ServiceError(
            ErrorCode.IMAGE_SOURCE_FORBIDDEN,
            "Images from S3 are not enabled.",
            "The operator has named no bucket in IMAGE_S3_BUCKETS; send the image itself.",
        )
    if bucket not in allowed_buckets:
        raise ServiceError(
            ErrorCode.IMAGE_SOURCE_FORBIDDEN,
            "The service may not read images from this bucket.",
            "Only the buckets named in IMAGE_S3_BUCKETS are read.",
        )
    from botocore.exceptions import BotoCoreError, ClientError

    client = _client()
    try:
        head = client.head_object(Bucket=bucket, Key=key)
        size = int(head.get("ContentLength", 0))
        if size > max_bytes:
            raise ServiceError(
                ErrorCode.IMAGE_TOO_LARGE,
                "The image exceeds the maximum size.",
                f"The object is {size} bytes; the maximum image size is {max_bytes} bytes.",
            )
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        data: bytes = body.read(max_bytes + 1)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NotFound"):
            raise ServiceError(ErrorCode.IMAGE_NOT_FOUND, "The image object does not exist.", uri) from None
        if code in ("403", "AccessDenied"):
            raise ServiceError(
                ErrorCode.IMAGE_SOURCE_FORBIDDEN, "The service's role may not read this object.", uri
            ) from None
        raise ServiceError(ErrorCode.PROCESSING_ERROR, "The image could not be read from S3.", code) from None
    except BotoCoreError as exc:
        raise ServiceError(
            ErrorCode.PROCESSING_ERROR, "The image could not be read from S3.", type(exc).__name__
        ) from None
    if len(data) > max_bytes:
        raise ServiceError(ErrorCode.IMAGE_TOO_LARGE, "The image exceeds the maximum size.", uri)
    return data
