"""The Lambda function built from settings: model (from the image, or from S3
when MODEL_S3_URI is set), the FastAPI app through Mangum, warm-up, and the
event dispatch under Powertools' decorators. No import-time side effects here:
those live in ``handler``, the one module Lambda imports."""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from mangum import Mangum

from ..api import create_app
from ..config import Settings
from ..engine import ModelState
from ..errors import ErrorCode, ServiceError
from ..gallery.cache import GalleryCache
from .events import is_sqs_event
from .observability import PowertoolsObserver, logger, metrics, span, traced
from .sources import api_key_source, load_function_model
from .warmup import warm_up_requests

Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def malformed(event: dict[str, Any]) -> str | None:
    """Why an HTTP-shaped event cannot be a request, for what Mangum would not
    refuse itself (a body that is not a string, a base64 body that is not base64)."""
    body = event.get("body")
    if body is not None and not isinstance(body, str):
        return "the event's body is not a string"
    if event.get("isBase64Encoded") and body:
        try:
            base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return "the event's body is marked base64 but is not base64"
    return None


def error_response(error: ServiceError, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": error.status,
        "headers": {**(headers or {}), "content-type": "application/json"},
        "body": json.dumps(error.to_dict()),
        "isBase64Encoded": False,
    }


def bad_event(reason: str, context: Any) -> dict[str, Any]:
    """A 400 in the error shape for an event that is not a readable request."""
    logger.warning(
        "malformed event", extra={"reason": reason, "request_id": getattr(context, "aws_request_id", None)}
    )
    metrics.add_metric(name="MalformedEvents", unit=MetricUnit.Count, value=1)
    return error_response(ServiceError(ErrorCode.INVALID_REQUEST, "The request could not be read.", reason))


# Lambda refuses a synchronous response over 6 MB (6,291,456 bytes, the whole
# JSON document); the headers and the envelope get the rest of the margin.
RESPONSE_BODY_LIMIT = 6_000_000


def fit_response(response: dict[str, Any]) -> dict[str, Any]:
    """The response, or RESPONSE_TOO_LARGE in the error shape where its body
    would take the function over Lambda's 6 MB response limit (which would
    otherwise reach the caller as API Gateway's bare 502)."""
    body = response.get("body")
    if not isinstance(body, str) or len(body) <= RESPONSE_BODY_LIMIT:
        return response
    metrics.add_metric(name="ResponsesTooLarge", unit=MetricUnit.Count, value=1)
    request_id = {k: v for k, v in (response.get("headers") or {}).items() if k.lower() == "x-request-id"}
    return error_response(
        ServiceError(
            ErrorCode.RESPONSE_TOO_LARGE,
            "The answer is larger than a Lambda response can carry.",
            f"The answer would be {len(body)} bytes; a Lambda response carries at most {RESPONSE_BODY_LIMIT}. "
            "Ask for embedding_format=base64, fewer faces (max_faces) or fewer photos a batch.",
        ),
        request_id,
    )


def is_http_event(event: Any) -> bool:
    if not isinstance(event, dict):
        return False
    context = event.get("requestContext")
    return isinstance(context, dict) and ("httpMethod" in event or "http" in context or "elb" in context)


def warm_up_at_init() -> bool:
    """Whether the init runs the warm-up requests and loads GALLERY_URI: only
    when no caller waits for the init. Lambda names the kind in
    AWS_LAMBDA_INITIALIZATION_TYPE: an ``on-demand`` init sits on the first
    caller's path, and there warm-up requests cost more (~40 ms) than they save
    that caller's invoke (6-9 ms, docs/benchmarks.md#cold-start-and-memory).
    A gallery would make every route's first caller wait for it, and Lambda
    stops an on-demand init at 10 s and runs it again inside the first invoke
    (a 1,000,000-face snapshot is 2.1 GB to download): there the first
    /identify that names it loads it, or an earlier scheduled ping.
    ``provisioned-concurrency`` and ``snap-start`` inits happen ahead of any
    request (Lambda gives them minutes), so they do both. Outside Lambda (the
    variable unset) the init does both, as before."""
    return os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") != "on-demand"


class LambdaFunction:
    """The function one execution environment runs: model, app through Mangum,
    gallery cache, warm-up, and the event dispatch. It keeps its own init
    timings (``init_timings``, logged once and read by bench.lambda_probe) and
    builds the queue handler on the first SQS event, so an HTTP-only function
    never imports it."""

    def __init__(
        self,
        settings: Settings,
        model: ModelState | None = None,
        warm: bool | None = None,
        init_timings: dict[str, float] | None = None,
    ) -> None:
        self.settings = settings
        self.init_timings: dict[str, float] = dict(init_timings or {})
        self.model = model if model is not None else load_function_model(settings, span)
        if self.model.load_seconds is not None:  # sessions and one inference
            self.init_timings["model_load_ms"] = round(self.model.load_seconds * 1000, 1)
        loaded = time.perf_counter()
        self.observer = PowertoolsObserver()
        self.galleries = GalleryCache(settings.galleries)  # shared by the app and queue mode
        ahead = warm_up_at_init() if warm is None else warm
        self._gallery_preloaded = ahead or not settings.gallery_uri
        app = create_app(
            settings,
            self.model,
            observer=self.observer,
            api_key=api_key_source(
                settings.api_key_parameter, settings.api_key_secret, settings.api_key_cache_seconds
            ),
            galleries=self.galleries,
            preload_gallery=ahead,
        )
        self.asgi = Mangum(app, lifespan="off", api_gateway_base_path=settings.api_base_path)
        built = time.perf_counter()
        self._warmed_up = False
        self._queue: Handler | None = None
        ran_at_init = self.warm_up() if ahead else 0
        self.init_timings.update(
            app_build_ms=round((built - loaded) * 1000, 1),
            warm_up_ms=round((time.perf_counter() - built) * 1000, 1),
            warm_up_requests=float(ran_at_init),
        )
        logger.info("init", extra=self.init_timings)

    def warm_up(self) -> int:
        """Send the warm-up requests, once; how many ran now."""
        if self._warmed_up or self.model.engine is None:
            return 0
        self._warmed_up = True
        return warm_up_requests(self.asgi, self.observer)

    def preload_gallery(self) -> bool:
        """Load GALLERY_URI where the init left it to a later event, once;
        whether it loaded now."""
        if self._gallery_preloaded or not self.settings.gallery_uri:
            return False
        self._gallery_preloaded = True
        return self.galleries.preload(self.settings.gallery_uri)

    def queue_handler(self) -> Handler:
        if self._queue is None:
            from .queue import build_queue_handler

            self._queue = build_queue_handler(self.settings, self.model, self.galleries)
        return self._queue

    def dispatch(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        if is_http_event(event):
            return self.http(event, context)
        if is_sqs_event(event):
            return self.queue_handler()(event, context)
        return self.other(event)

    def http(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        reason = malformed(event)
        if reason is not None:
            return bad_event(reason, context)
        try:
            response: dict[str, Any] = self.asgi(event, context)  # type: ignore[arg-type]  # two context protocols
        except Exception as exc:  # the app answers every request; this is Mangum refusing the event
            return bad_event(
                f"the event is not an API Gateway or ALB request ({type(exc).__name__})", context
            )
        return fit_response(response)

    def other(self, event: dict[str, Any]) -> dict[str, Any]:
        """A warm-up ping or a scheduled event: answer, do not crash in Mangum. An
        environment whose on-demand init skipped the warm-up requests runs them
        now, on the ping's time rather than a caller's, and loads GALLERY_URI
        where the init left it."""
        loaded = self.model.engine is not None
        logger.info(
            "non-HTTP event",
            extra={
                "model_loaded": loaded,
                "warm_up_requests": self.warm_up(),
                "gallery_loaded": self.preload_gallery(),
            },
        )
        metrics.add_metric(name="WarmupEvents", unit=MetricUnit.Count, value=1)
        return {
            "status": "warm" if loaded else "unhealthy",
            "model_loaded": loaded,
            "model_name": self.settings.model_name,
            "detail": "This function serves API Gateway HTTP events; other events only warm it.",
        }

    def handler(self) -> Handler:
        """``dispatch`` under Powertools' logger, tracer and metrics decorators."""

        @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False)
        @traced
        @metrics.log_metrics(capture_cold_start_metric=True)
        def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
            return self.dispatch(event, context)

        wrapped: Handler = handler
        return wrapped


def build_handler(settings: Settings, model: ModelState | None = None, warm: bool | None = None) -> Handler:
    """The Lambda handler of a new ``LambdaFunction``. ``warm``: run the warm-up
    requests now (default: ``warm_up_at_init()``); when they do not run at init,
    the first scheduled or other non-HTTP event runs them instead."""
    return LambdaFunction(settings, model, warm).handler()
