"""Images read from S3 (``image_s3_uri``): only from the buckets the operator
allows (IMAGE_S3_BUCKETS), size checked from the object's metadata before any
byte is downloaded, read into memory (never to disk)."""

from __future__ import annotations

from . import aws_clients
from .aws_clients import s3_read
from .errors import ErrorCode, ServiceError, image_too_large


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
    s3 = aws_clients.client("s3")

    def read() -> bytes:
        size = int(s3.head_object(Bucket=bucket, Key=key).get("ContentLength", 0))
        if size > max_bytes:
            raise image_too_large(f"The object is {size} bytes; the maximum image size is {max_bytes} bytes.")
        data: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read(max_bytes + 1)
        return data

    data = s3_read(
        read,
        what="image",
        missing=ErrorCode.IMAGE_NOT_FOUND,
        forbidden=ErrorCode.IMAGE_SOURCE_FORBIDDEN,
    )
    if len(data) > max_bytes:
        raise image_too_large(f"The object is over the maximum image size ({max_bytes} bytes).")
    return data
