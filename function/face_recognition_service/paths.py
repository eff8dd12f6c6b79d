"""The route table: each route's path, whether it is heavy (admitted through
Admission: the model, or parsing megabytes of embeddings) and the error codes
it can answer, stated once. The routes and their OpenAPI error responses, the
middleware, the Prometheus labels, the body limits and the Lambda warm-up all
read them from here."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ErrorCode

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


# Every photo route can answer these: the image, its faces, its source (S3
# failing is STORAGE_UNAVAILABLE), the model, and the checks before the body
# (key, media type, admission); under Lambda an answer over 6 MB is RESPONSE_TOO_LARGE.
_PHOTO = (
    ErrorCode.INVALID_IMAGE,
    ErrorCode.NO_FACE_DETECTED,
    ErrorCode.MULTIPLE_FACES_DETECTED,
    ErrorCode.LOW_QUALITY,
    ErrorCode.IMAGE_TOO_LARGE,
    ErrorCode.UNSUPPORTED_FORMAT,
    ErrorCode.MODEL_NOT_LOADED,
    ErrorCode.PROCESSING_ERROR,
    ErrorCode.UNAUTHORIZED,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    ErrorCode.IMAGE_SOURCE_FORBIDDEN,
    ErrorCode.IMAGE_NOT_FOUND,
    ErrorCode.STORAGE_UNAVAILABLE,
    ErrorCode.SERVICE_BUSY,
    ErrorCode.RESPONSE_TOO_LARGE,
)
# What the shared checks answer on every protected JSON route other than
# /embed (whose body limit is IMAGE_TOO_LARGE): the API key, the Content-Type,
# the body limit and admission.
_JSON_BODY = (
    ErrorCode.UNAUTHORIZED,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    ErrorCode.PAYLOAD_TOO_LARGE,
    ErrorCode.SERVICE_BUSY,
)
_PROBE = (*_PHOTO, ErrorCode.INVALID_EMBEDDING, ErrorCode.MODEL_MISMATCH, ErrorCode.PAYLOAD_TOO_LARGE)


@dataclass(frozen=True)
class Route:
    path: str
    heavy: bool
    errors: tuple[ErrorCode, ...] = ()


ROUTES = (
    Route(HEALTH, heavy=False),
    Route(MODEL_INFO, heavy=False, errors=(ErrorCode.MODEL_NOT_LOADED, ErrorCode.UNAUTHORIZED)),
    Route(EMBED, heavy=True, errors=_PHOTO),
    Route(
        EMBED_BATCH,
        heavy=True,
        errors=(
            ErrorCode.INVALID_IMAGE,
            ErrorCode.MODEL_NOT_LOADED,
            ErrorCode.RESPONSE_TOO_LARGE,
            *_JSON_BODY,
        ),
    ),
    Route(COMPARE, heavy=True, errors=(ErrorCode.INVALID_EMBEDDING, ErrorCode.MODEL_MISMATCH, *_JSON_BODY)),
    Route(VERIFY, heavy=True, errors=_PROBE),
    Route(
        IDENTIFY,
        heavy=True,
        errors=(
            *_PROBE,
            ErrorCode.GALLERY_NOT_FOUND,
            ErrorCode.GALLERY_FORBIDDEN,
            ErrorCode.INVALID_GALLERY,
            ErrorCode.STORAGE_FULL,
        ),
    ),
)
BY_PATH = {r.path: r for r in ROUTES}
HEAVY = frozenset(r.path for r in ROUTES if r.heavy)
# Known paths only get their own metrics label (a scanner cannot grow the label set).
KNOWN = frozenset({*(r.path for r in ROUTES), METRICS, *DOCS_PAGES})


def relative(path: str) -> str:
    """The path under the API router's prefix (``/api/v1/embed`` -> ``/embed``)."""
    return path.removeprefix(PREFIX)
