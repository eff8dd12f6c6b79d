"""Warm-up requests through the whole stack (Mangum, routing, JSON, image
decoding, detection), so the first caller does not pay for first-use work: sent
at init where no caller waits for it (provisioned concurrency, SnapStart), or on
the first scheduled ping after an on-demand init (``function.warm_up_at_init``)."""

from __future__ import annotations

import base64
import os
from typing import Any

from .. import paths
from .events import http_api_event
from .observability import PowertoolsObserver

WARM_UP_REQUEST_ID = "init-warm-up"


class _WarmUpContext:
    aws_request_id = WARM_UP_REQUEST_ID
    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")


def warm_up_events() -> list[dict[str, Any]]:
    import cv2
    import numpy as np

    gradient = np.tile(np.linspace(0, 255, 640, dtype=np.uint8)[None, :, None], (480, 1, 3))
    jpeg = base64.b64encode(cv2.imencode(".jpg", gradient)[1].tobytes()).decode()
    compare = {"query_embedding": [1.0, 0.0], "reference_embeddings": [{"id": "w", "embedding": [0.0, 1.0]}]}
    headers = {"x-request-id": WARM_UP_REQUEST_ID}
    return [
        http_api_event("GET", paths.HEALTH, request_id=WARM_UP_REQUEST_ID, headers=headers),
        http_api_event(
            "POST",
            paths.EMBED,
            {"image": f"data:image/jpeg;base64,{jpeg}"},
            request_id=WARM_UP_REQUEST_ID,
            headers=headers,
        ),
        http_api_event("POST", paths.COMPARE, compare, request_id=WARM_UP_REQUEST_ID, headers=headers),
    ]


def warm_up_requests(asgi: Any, observer: PowertoolsObserver) -> int:
    """Run the warm-up events through ``asgi`` (the Mangum adapter); not logged,
    not counted in metrics. Returns how many ran."""
    observer.muted = True
    try:
        events = warm_up_events()
        for event in events:
            asgi(event, _WarmUpContext())
    finally:
        observer.muted = False
    return len(events)
