"""AWS Lambda entry point: the FastAPI app through Mangum, under Powertools.

Everything expensive happens at import, in the init phase: settings, the model
(from the image, or from S3 when MODEL_S3_URI is set), one warm-up inference and
a few warm-up requests through the whole stack, so the first request pays no
load cost. Mangum runs with ``lifespan="off"``: it would otherwise run the
app's lifespan on every invocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths, utils
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext
from mangum import Mangum

from .api import create_app
from .api.observe import RequestRecord
from .aws import api_key_source, fetch_model_from_s3
from .config import Settings, get_settings
from .engine import ModelState, load_model

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "face-recognition")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "FaceRecognition")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


def _tracing_enabled() -> bool:
    # The same rules Powertools applies, decided before importing the X-Ray SDK:
    # that import alone (botocore included) is ~0.3 s of cold start.
    disabled = os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").lower() in ("1", "true")
    in_lambda = "AWS_LAMBDA_FUNCTION_NAME" in os.environ and "AWS_SAM_LOCAL" not in os.environ
    return in_lambda and not disabled


if _tracing_enabled():
    from aws_lambda_powertools import Tracer

    tracer: Any = Tracer(service=SERVICE)

    def _span(name: str) -> Any:
        return tracer.provider.in_subsegment(name=f"## {name}")

    def _traced(fn: Any) -> Any:
        return tracer.capture_lambda_handler(capture_response=False)(fn)
else:
    tracer = None

    def _span(name: str) -> Any:
        return contextlib.nullcontext()

    def _traced(fn: Any) -> Any:
        return fn


class PowertoolsObserver:
    """Per request: a log line and CloudWatch metrics in embedded metric format."""

    muted = False  # during the init-phase warm-up requests

    def record(self, record: RequestRecord) -> None:
        if self.muted:
            return
        logger.info("request", extra=asdict(record))
        metrics.add_metric(name="RequestLatency", unit=MetricUnit.Milliseconds, value=record.duration_ms)
        if record.faces is not None:
            metrics.add_metric(name="FacesDetected", unit=MetricUnit.Count, value=record.faces)
        if record.error_code is not None:
            # Its own EMF document, so that the error_code dimension does not
            # split the latency metric above.
            with single_metric(name="Errors", unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as m:
                m.add_dimension(name="service", value=SERVICE)
                m.add_dimension(name="error_code", value=record.error_code)


def _load(settings: Settings) -> ModelState:
    if settings.model_s3_uri:
        local = Path("/tmp/models")
        try:
            fetch_model_from_s3(settings.model_s3_uri, settings.model_name, local)
        except Exception as exc:  # the function still starts and reports MODEL_NOT_LOADED
            logger.error("model download from S3 failed", extra={"exception_type": type(exc).__name__})
            return ModelState(None, f"model download from {settings.model_s3_uri} failed: {exc}")
        settings = settings.model_copy(update={"model_dir": local})
    return load_model(settings, span=_span)


def _is_http_event(event: Any) -> bool:
    if not isinstance(event, dict):
        return False
    context = event.get("requestContext")
    return isinstance(context, dict) and ("httpMethod" in event or "http" in context or "elb" in context)


def _warm_up_requests(asgi: Mangum, observer: PowertoolsObserver) -> None:
    """Requests through the whole stack during init (Mangum, routing, JSON,
    image decoding, detection), so that the first caller does not pay for
    first-use work in them. Not logged, not counted in metrics."""
    import base64

    import cv2
    import numpy as np

    gradient = np.tile(np.linspace(0, 255, 640, dtype=np.uint8)[None, :, None], (480, 1, 3))
    jpeg = base64.b64encode(cv2.imencode(".jpg", gradient)[1].tobytes()).decode()
    requests = [
        ("GET", "/api/v1/health", None),
        ("POST", "/api/v1/embed", json.dumps({"image": f"data:image/jpeg;base64,{jpeg}"})),
        ("POST", "/api/v1/compare", json.dumps({"query_embedding": [1.0, 0.0],
                                                "reference_embeddings": [{"id": "w", "embedding": [0.0, 1.0]}]})),
    ]
    observer.muted = True
    try:
        for method, path, body in requests:
            event = {
                "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
                "headers": {"content-type": "application/json", "x-request-id": "init-warm-up"},
                "requestContext": {"http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                                            "sourceIp": "127.0.0.1"},
                                   "requestId": "init-warm-up", "stage": "$default"},
                "body": body, "isBase64Encoded": False,
            }
            asgi(event, _WarmUpContext())  # type: ignore[arg-type]
    finally:
        observer.muted = False


class _WarmUpContext:
    aws_request_id = "init-warm-up"
    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")


def build_handler(
    settings: Settings, model: ModelState | None = None, warm: bool = True
) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    model = model if model is not None else _load(settings)
    observer = PowertoolsObserver()
    app = create_app(
        settings, model, observer=observer,
        api_key=api_key_source(settings.api_key_parameter, settings.api_key_secret,
                               settings.api_key_cache_seconds),
    )
    asgi = Mangum(app, lifespan="off", api_gateway_base_path=settings.api_base_path)
    if warm and model.engine is not None:
        _warm_up_requests(asgi, observer)

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False)
    @_traced
    @metrics.log_metrics(capture_cold_start_metric=True)
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        if _is_http_event(event):
            return asgi(event, context)  # type: ignore[arg-type]  # two libraries, two context protocols
        # A warm-up ping or a scheduled event: answer, do not crash in Mangum.
        loaded = model.engine is not None
        logger.info("non-HTTP event", extra={"model_loaded": loaded})
        metrics.add_metric(name="WarmupEvents", unit=MetricUnit.Count, value=1)
        return {"status": "warm" if loaded else "unhealthy", "model_loaded": loaded,
                "model_name": settings.model_name,
                "detail": "This function serves API Gateway HTTP events; other events only warm it."}

    return handler


# Mangum runs each request on asyncio's current event loop. Give the runtime's
# thread one explicitly: Python 3.12 warns when get_event_loop() must make it,
# and later versions refuse.
asyncio.set_event_loop(asyncio.new_event_loop())
_settings = get_settings()
logger.setLevel(_settings.log_level)
# Core modules log through the standard library; give them Powertools' JSON format.
utils.copy_config_to_registered_loggers(source_logger=logger, include={"face_recognition_service"})
handler = build_handler(_settings)
