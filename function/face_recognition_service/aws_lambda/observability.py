"""Powertools logger, metrics and (when enabled) X-Ray tracing, and the request
observer that turns each request record into a log line and EMF metrics."""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

if TYPE_CHECKING:
    from ..api.observe import RequestRecord


SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "face-recognition")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "FaceRecognition")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


def tracing_enabled() -> bool:
    # The same rules Powertools applies, decided before importing the X-Ray SDK:
    # that import alone (botocore included) is ~0.3 s of cold start.
    disabled = os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").lower() in ("1", "true")
    in_lambda = "AWS_LAMBDA_FUNCTION_NAME" in os.environ and "AWS_SAM_LOCAL" not in os.environ
    return in_lambda and not disabled


if tracing_enabled():
    from aws_lambda_powertools import Tracer

    tracer: Any = Tracer(service=SERVICE)

    def span(name: str) -> Any:
        return tracer.provider.in_subsegment(name=f"## {name}")

    def traced(fn: Any) -> Any:
        return tracer.capture_lambda_handler(capture_response=False)(fn)
else:
    tracer = None

    def span(name: str) -> Any:
        return contextlib.nullcontext()

    def traced(fn: Any) -> Any:
        return fn


class PowertoolsObserver:
    """Per request: a log line and CloudWatch metrics in embedded metric format."""

    muted = False  # during the warm-up requests

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
