"""Every route's path, stated once; whether it is heavy (admitted through
Admission: the model, or parsing megabytes of embeddings) is stated here too.
The routes, the middleware, the Prometheus labels, the body limits and the
Lambda warm-up all read them from here."""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "/api/v1"
HEALTH = f"{PREFIX}/health"
MODEL_INFO = f"{PREFIX}/model-info"
EMBED = f"{PREFIX}/embed"
EMBED_BATCH = f"{PREFIX}/embed/batch"
COMPARE = f"{PREFIX}/compare"
VERIFY = f"{PREFIX}/verify"
IDENTIFY = f"{PREFIX}/identify"
METRICS = "/metrics"
DOCS_PAGES = ("/docs", "/redoc", "/openapi.json")


@dataclass(frozen=True)
class Route:
    path: str
    heavy: bool


ROUTES = (
    Route(HEALTH, heavy=False),
    Route(MODEL_INFO, heavy=False),
    Route(EMBED, heavy=True),
    Route(EMBED_BATCH, heavy=True),
    Route(COMPARE, heavy=True),
    Route(VERIFY, heavy=True),
    Route(IDENTIFY, heavy=True),
)
HEAVY = frozenset(r.path for r in ROUTES if r.heavy)
# Known paths only get their own metrics label (a scanner cannot grow the label set).
KNOWN = frozenset({*(r.path for r in ROUTES), METRICS, *DOCS_PAGES})


def relative(path: str) -> str:
    """The path under the API router's prefix (``/api/v1/embed`` -> ``/embed``)."""
    return path.removeprefix(PREFIX)
