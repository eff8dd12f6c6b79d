"""Prometheus metrics for plain-server and Docker users (GET /metrics), through
prometheus_client. The names mirror the Lambda function's CloudWatch (EMF)
metrics: RequestLatency -> face_request_latency_seconds, Errors by error_code ->
face_errors_total, FacesDetected -> face_faces_detected_total; plus requests by
route and status, and the model's load time. Nothing about a request's content
(ids, images, embeddings) becomes a label."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from .. import paths
from .deps import check_api_key
from .observe import RequestObserver, RequestRecord

# Known routes only: anything else is "other", so a scanner cannot grow the label set.
ROUTES = paths.KNOWN


class PrometheusObserver:
    """Counts every request; forwards the record to the next observer (the log)."""

    def __init__(self, then: RequestObserver | None = None, load_seconds: float | None = None) -> None:
        self.then = then
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "face_requests_total",
            "Requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "face_request_latency_seconds",
            "Request latency (RequestLatency in Lambda).",
            ["route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.errors = Counter(
            "face_errors_total",
            "Error answers by error_code (Errors in Lambda).",
            ["error_code"],
            registry=self.registry,
        )
        self.faces = Counter(
            "face_faces_detected_total", "Faces detected (FacesDetected in Lambda).", registry=self.registry
        )
        self.model_load = Gauge(
            "face_model_load_seconds", "Time the model pack took to load.", registry=self.registry
        )
        if load_seconds is not None:
            self.model_load.set(load_seconds)

    def record(self, record: RequestRecord) -> None:
        route = record.route if record.route in ROUTES else "other"
        self.requests.labels(route, record.method, str(record.status)).inc()
        self.latency.labels(route).observe(record.duration_ms / 1000)
        if record.error_code is not None:
            self.errors.labels(record.error_code).inc()
        if record.faces:
            self.faces.inc(record.faces)
        if self.then is not None:
            self.then.record(record)

    async def endpoint(self, request: Request) -> Response:
        # Traffic figures are the operator's: with an API key set, they need it too.
        check_api_key(request.app.state.api_key, request.headers.get("x-api-key", ""))
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
