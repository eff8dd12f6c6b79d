"""What the Lambda function reads from AWS: an optional API key (SSM Parameter
Store or Secrets Manager, through Powertools Parameters, cached) and an
optional model pack in S3 for those who cannot rebuild the image.

Used by the Lambda side only; the core never imports AWS code.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from ..packs import get_pack
from ..provision import provision

if TYPE_CHECKING:
    from ..config import Settings
    from ..engine import ModelState, Span

logger = logging.getLogger(__name__)


def api_key_source(
    parameter_name: str | None, secret_name: str | None, max_age_seconds: int
) -> Callable[[], str | None] | None:
    """A callable giving the current API key, or None when no key is configured.

    Powertools caches the value for ``max_age_seconds``, so a rotated key is
    picked up without a cold start and without a call to AWS per request.
    """
    if parameter_name:
        from aws_lambda_powertools.utilities import parameters

        name = parameter_name

        def from_ssm() -> str | None:
            return parameters.get_parameter(name, decrypt=True, max_age=max_age_seconds)

        return from_ssm
    if secret_name:
        from aws_lambda_powertools.utilities import parameters

        secret = secret_name

        def from_secrets_manager() -> str | None:
            value = parameters.get_secret(secret, max_age=max_age_seconds)
            return value if isinstance(value, str) else None

        return from_secrets_manager
    return None


def load_function_model(settings: Settings, span: Span) -> ModelState:
    """The function's model: from the image, or from S3 when MODEL_S3_URI is set.
    Imports the engine itself, so that the init can run it in a thread while
    the web stack is imported (aws_lambda/handler.py)."""
    from ..engine import ModelState, load_model

    if settings.model_s3_uri:
        local = Path("/tmp/models")
        try:
            fetch_model_from_s3(settings.model_s3_uri, settings.model_name, local)
        except Exception as exc:  # the function still starts and reports MODEL_NOT_LOADED
            logger.error("model download from S3 failed", extra={"exception_type": type(exc).__name__})
            return ModelState(None, f"model download from {settings.model_s3_uri} failed: {exc}")
        settings = settings.model_copy(update={"model_dir": local})
    return load_model(settings.engine, span=span)


def fetch_model_from_s3(uri: str, model_name: str, model_dir: Path) -> Path:
    """Download a pack from ``s3://bucket/prefix`` and install it with the same
    checks as the provisioning command.

    The prefix may hold ``<model_name>.zip`` (InsightFace's release zip) or the
    pack's two ONNX files, directly or under ``<model_name>/``.
    """
    import boto3

    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"MODEL_S3_URI must look like s3://bucket/prefix, not {uri!r}")
    bucket, prefix = parsed.netloc, parsed.path.strip("/")
    s3 = boto3.client("s3")
    pack = get_pack(model_name)
    with tempfile.TemporaryDirectory(dir="/tmp" if Path("/tmp").is_dir() else None) as tmp:
        staging = Path(tmp)
        candidates = [f"{prefix}/{model_name}.zip", f"{prefix}.zip"] if prefix else [f"{model_name}.zip"]
        listed = {obj["Key"] for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])}
        archive = next((key for key in candidates if key in listed), None)
        if archive is not None:
            source = staging / f"{model_name}.zip"
            s3.download_file(bucket, archive, str(source))
        else:
            source = staging / model_name
            source.mkdir()
            base = f"{prefix}/" if prefix else ""
            for filename in (pack.detector, pack.recognizer):
                # The pack's own folder first: a prefix may hold several packs.
                options = (f"{base}{model_name}/{filename}", f"{base}{filename}")
                key = next((k for k in options if k in listed), None)
                if key is None:
                    raise FileNotFoundError(
                        f"s3://{bucket}/{prefix} has neither {model_name}.zip nor {filename}"
                    )
                s3.download_file(bucket, key, str(source / filename))
        target = provision(model_name, model_dir, source=str(source), force=True)
    logger.info("model fetched from S3", extra={"model_name": model_name, "bucket": bucket})
    return target
