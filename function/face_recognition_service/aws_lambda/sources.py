"""What the Lambda function reads from AWS: an optional API key (SSM Parameter
Store or Secrets Manager, through Powertools Parameters, cached) and an
optional model pack in S3 for those who cannot rebuild the image.

Used by the Lambda side only; the core never imports AWS code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

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
    from ..models.install import install

    if settings.model_s3_uri:
        local = Path("/tmp/models")
        try:
            # The same sources and checks as the provisioning command (models/sources.py).
            install(settings.model_name, local, source=settings.model_s3_uri, force=True)
        except Exception as exc:  # the function still starts and reports MODEL_NOT_LOADED
            logger.error("model download from S3 failed", extra={"exception_type": type(exc).__name__})
            return ModelState(None, f"model download from {settings.model_s3_uri} failed: {exc}")
        logger.info("model fetched from S3", extra={"model_name": settings.model_name})
        settings = settings.model_copy(update={"model_dir": local})
    return load_model(settings.engine, span=span)
