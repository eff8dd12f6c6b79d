"""boto3 clients, made once per process and service, and S3 reads whose
failures become the service's errors (one mapping for images and galleries).
boto3 is imported on first use: it is part of the Lambda extra, not the core."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeVar

from .errors import ErrorCode, ServiceError

T = TypeVar("T")


@lru_cache(maxsize=4)
def client(service: str) -> Any:
    import boto3

    factory: Any = boto3.client
    return factory(service)


def s3_read(call: Callable[[], T], *, what: str, missing: ErrorCode, forbidden: ErrorCode) -> T:
    """``call()``, with S3's refusals as ``missing`` (no such key), ``forbidden``
    (the role may not read it) or STORAGE_UNAVAILABLE (anything else: no
    credentials, unreachable, throttled, S3's own 5xx; worth a retry)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call()
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NotFound"):
            raise ServiceError(
                missing, f"The {what} object does not exist.", "No object has that key."
            ) from None
        if code == "NoSuchBucket":  # a bucket the operator allows but nobody created: an answer, not a retry
            raise ServiceError(
                missing, f"The {what}'s bucket does not exist.", "S3 has no such bucket."
            ) from None
        if code in ("403", "AccessDenied"):
            raise ServiceError(
                forbidden,
                "The service's role may not read this object.",
                "S3 refused the read (AccessDenied).",
            ) from None
        raise _unreadable(what, code) from None
    except BotoCoreError as exc:
        raise _unreadable(what, type(exc).__name__) from None


def _unreadable(what: str, detail: str) -> ServiceError:
    return ServiceError(ErrorCode.STORAGE_UNAVAILABLE, f"The {what} could not be read from S3.", detail)
