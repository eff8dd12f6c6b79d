"""A Python client for the service: ``pip install '.[client]'``.

    from face_recognition_service.client import FaceClient, NoFaceDetected

    with FaceClient("http://localhost:8000", api_key=None) as faces:
        enrolled = faces.embed(Path("alice.jpg"))             # {"embedding", "model", ...}
        answer = faces.verify(Path("door.jpg"), references=[{"id": "alice", **enrolled}])
        who = faces.identify(Path("door.jpg"), gallery="staff.frg")

Answers are typed (``EmbedResult``, ``VerifyResult``, ``IdentifyResult``...:
TypedDicts of the fields the OpenAPI document describes). ``AsyncFaceClient``
has the same methods, awaited. Errors come back as typed
exceptions, one class per error code (``NoFaceDetected``, ``ServiceBusy``,
...), all ``FaceServiceError`` with ``code``, ``message``, ``detail``,
``status`` and ``request_id``.

Retries: every route is safe to retry (the service stores nothing, so a call
sent twice has no effect twice). A call is tried again after a dropped or
refused connection, ``SERVICE_BUSY`` (waiting as ``Retry-After`` says) and a
gateway's 502/504, with exponential backoff and jitter, at most ``retries``
times and within ``timeout`` seconds in all (30 s: the original contract's
advice). Any other error is the caller's to act on and is raised at once.
Nothing here imports the server: only httpx and the error vocabulary.
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, cast

import httpx

from . import paths
from .errors import ErrorCode

Image = bytes | Path | str  # raw bytes, a file, or base64 / a data URI as text
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_WAIT_S = 10.0


class Scored(TypedDict):
    id: str
    similarity: float


class HealthResult(TypedDict, total=False):
    status: str
    model_loaded: bool
    model_name: str
    detail: str


class ModelInfoResult(TypedDict, total=False):
    name: str
    embedding_size: int
    backend: str
    device: str
    model: str
    thresholds: dict[str, float]
    identification: dict[str, Any]
    default_operating_point: str
    ambiguity_margin: float


class EmbedResult(TypedDict, total=False):
    """One face (``embedding``...) or, with ``face_selection: all``, ``faces``."""

    embedding: list[float] | str
    face_detected: bool
    detection_score: float
    model: str
    bbox: list[float]
    landmarks: list[list[float]]
    quality: dict[str, Any]
    faces: list[dict[str, Any]]
    face_count: int
    faces_left_out: int


class BatchResult(TypedDict):
    results: list[dict[str, Any]]  # each: {"id", ...EmbedResult} or {"id", "error", "error_code", "detail"}
    model: str


class VerifyResult(TypedDict, total=False):
    match: bool
    similarity: float
    threshold: float
    operating_point: str
    best_match: Scored
    runner_up: Scored | None
    margin: float | None
    ambiguous: bool
    model: str | None
    detection_score: float
    quality: dict[str, Any]


class CompareResult(TypedDict):
    matches: list[dict[str, Any]]  # {"id", "distance", "similarity"} (+ "templates"), best first
    best_match: dict[str, Any]
    distance_metric: str


class IdentifyResult(TypedDict, total=False):
    candidates: list[Scored]
    match: bool
    identity: str | None
    best_match: Scored | None
    margin: float | None
    ambiguous: bool
    faces: list[
        dict[str, Any]
    ]  # with face_selection all: {"bbox", "candidates", "identity", "similarity", "match"}
    face_count: int
    faces_left_out: int
    threshold: float
    operating_point: str
    expected_fpir: float
    gallery: dict[str, Any]  # {"size", "persons", "hash", "model", "stale"} (+ "stale_detail")
    model: str | None
    detection_score: float
    quality: dict[str, Any]


class FaceServiceError(Exception):
    """An answer in the service's error shape (or a transport failure after the retries)."""

    code = "ERROR"

    def __init__(
        self, message: str, *, status: int, detail: str | None = None, request_id: str | None = None
    ):
        super().__init__(f"{self.code}: {message}" + (f" ({detail})" if detail else ""))
        self.message, self.status, self.detail, self.request_id = message, status, detail, request_id


class InvalidImage(FaceServiceError):
    code = "INVALID_IMAGE"


class NoFaceDetected(FaceServiceError):
    code = "NO_FACE_DETECTED"


class MultipleFacesDetected(FaceServiceError):
    code = "MULTIPLE_FACES_DETECTED"


class ImageTooLarge(FaceServiceError):
    code = "IMAGE_TOO_LARGE"


class UnsupportedFormat(FaceServiceError):
    code = "UNSUPPORTED_FORMAT"


class ModelNotLoaded(FaceServiceError):
    code = "MODEL_NOT_LOADED"


class InvalidEmbedding(FaceServiceError):
    code = "INVALID_EMBEDDING"


class ProcessingError(FaceServiceError):
    code = "PROCESSING_ERROR"


class LowQuality(FaceServiceError):
    code = "LOW_QUALITY"


class ModelMismatch(FaceServiceError):
    code = "MODEL_MISMATCH"


class Unauthorized(FaceServiceError):
    code = "UNAUTHORIZED"


class NotFound(FaceServiceError):
    code = "NOT_FOUND"


class MethodNotAllowed(FaceServiceError):
    code = "METHOD_NOT_ALLOWED"


class InvalidRequest(FaceServiceError):
    code = "INVALID_REQUEST"


class UnsupportedMediaType(FaceServiceError):
    code = "UNSUPPORTED_MEDIA_TYPE"


class PayloadTooLarge(FaceServiceError):
    code = "PAYLOAD_TOO_LARGE"


class ImageSourceForbidden(FaceServiceError):
    code = "IMAGE_SOURCE_FORBIDDEN"


class ImageNotFound(FaceServiceError):
    code = "IMAGE_NOT_FOUND"


class ServiceBusy(FaceServiceError):
    code = "SERVICE_BUSY"


class TooManyFaces(FaceServiceError):
    code = "TOO_MANY_FACES"


class ResponseTooLarge(FaceServiceError):
    code = "RESPONSE_TOO_LARGE"


class GalleryNotFound(FaceServiceError):
    code = "GALLERY_NOT_FOUND"


class GalleryForbidden(FaceServiceError):
    code = "GALLERY_FORBIDDEN"


class InvalidGallery(FaceServiceError):
    code = "INVALID_GALLERY"


class StorageUnavailable(FaceServiceError):
    """S3 or the service's gallery cache failed (503: retried like SERVICE_BUSY)."""

    code = "STORAGE_UNAVAILABLE"


class StorageFull(FaceServiceError):
    """The service's gallery cache folder is full (507: for its operator)."""

    code = "STORAGE_FULL"


class Unreachable(FaceServiceError):
    """No answer after the retries: the connection failed or timed out each time."""

    code = "UNREACHABLE"


ERRORS: dict[str, type[FaceServiceError]] = {
    cls.code: cls for cls in FaceServiceError.__subclasses__() if cls.code in ErrorCode.__members__
}


def _image_fields(image: Image | None, image_s3_uri: str | None) -> dict[str, Any]:
    if image_s3_uri is not None:
        return {"image_s3_uri": image_s3_uri}
    if image is None:
        return {}
    if isinstance(image, Path):
        image = image.read_bytes()
    if isinstance(image, bytes):
        return {"image": base64.b64encode(image).decode()}
    return {"image": image}


def _options(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if v is not None}


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: dict[str, Any] | None = None


def health() -> Call:
    return Call("GET", paths.HEALTH)


def model_info() -> Call:
    return Call("GET", paths.MODEL_INFO)


def embed(image: Image | None = None, *, image_s3_uri: str | None = None, **options: Any) -> Call:
    return Call("POST", paths.EMBED, {**_image_fields(image, image_s3_uri), **_options(options)})


def embed_batch(images: Mapping[str, Image], **options: Any) -> Call:
    items = [{"id": key, **_image_fields(value, None)} for key, value in images.items()]
    return Call("POST", paths.EMBED_BATCH, {"images": items, **_options(options)})


def verify(
    image: Image | None = None,
    *,
    references: Sequence[Mapping[str, Any]],
    embedding: Sequence[float] | str | None = None,
    image_s3_uri: str | None = None,
    **options: Any,
) -> Call:
    refs = [{k: r[k] for k in ("id", "embedding", "model") if k in r} for r in references]
    probe = _image_fields(image, image_s3_uri) or {"embedding": embedding}
    return Call("POST", paths.VERIFY, {**probe, "references": refs, **_options(options)})


def compare(
    query_embedding: Sequence[float] | str, references: Sequence[Mapping[str, Any]], **options: Any
) -> Call:
    refs = [{k: r[k] for k in ("id", "embedding", "model") if k in r} for r in references]
    body = {"query_embedding": query_embedding, "reference_embeddings": refs, **_options(options)}
    return Call("POST", paths.COMPARE, body)


def identify(
    image: Image | None = None,
    *,
    gallery: str,
    embedding: Sequence[float] | str | None = None,
    image_s3_uri: str | None = None,
    references: Sequence[Mapping[str, Any]] = (),
    exclude_ids: Sequence[str] = (),
    **options: Any,
) -> Call:
    """``gallery``: ``s3://bucket/key`` (under Lambda) or a file name in the server's GALLERY_DIR."""
    probe = _image_fields(image, image_s3_uri) or {"embedding": embedding}
    body = {**probe, "gallery": gallery, **_options(options)}
    if references:
        body["references"] = [{k: r[k] for k in ("id", "embedding", "model") if k in r} for r in references]
    if exclude_ids:
        body["exclude_ids"] = list(exclude_ids)
    return Call("POST", paths.IDENTIFY, body)


def raise_for(response: httpx.Response) -> dict[str, Any]:
    """The answer, or its error as the typed exception."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code < 400 and isinstance(body, dict):
        return body
    shaped = isinstance(body, dict) and "error_code" in body
    cls = ERRORS.get(str(body.get("error_code")), FaceServiceError) if shaped else FaceServiceError
    raise cls(
        str(body.get("error", response.reason_phrase)) if shaped else f"HTTP {response.status_code}",
        status=response.status_code,
        detail=body.get("detail") if shaped else None,
        request_id=response.headers.get("x-request-id"),
    )


class _Policy:
    """When to try a call again, and how long to wait first."""

    def __init__(
        self, retries: int, timeout: float, backoff: float, on_retry: Callable[[int, str], None] | None
    ):
        self.retries, self.timeout, self.backoff, self.on_retry = retries, timeout, backoff, on_retry

    def wait(
        self, attempt: int, started: float, response: httpx.Response | None, reason: str
    ) -> float | None:
        """Seconds to wait before the next attempt, or None to give up."""
        if attempt >= self.retries:
            return None
        delay = random.uniform(0, self.backoff * 2**attempt)  # full jitter
        if response is not None:
            after = response.headers.get("retry-after", "")
            if after.isdigit():
                delay = max(delay, float(after))
        delay = min(delay, MAX_WAIT_S)
        if time.monotonic() - started + delay > self.timeout:
            return None
        if self.on_retry is not None:
            self.on_retry(attempt + 1, reason)
        return delay

    def settle(
        self, attempt: int, started: float, response: httpx.Response | None, reason: str
    ) -> tuple[dict[str, Any] | None, float]:
        """After one attempt: ``(answer, 0)`` when it is final, ``(None, delay)``
        to try again after ``delay`` seconds; the error raised when it is one."""
        if response is not None and not _retryable(response):
            return raise_for(response), 0.0
        delay = self.wait(attempt, started, response, reason)
        if delay is None:
            if response is not None:
                return raise_for(response), 0.0
            raise Unreachable(f"no answer after {attempt + 1} attempts", status=0, detail=reason)
        return None, delay


def _retryable(response: httpx.Response) -> bool:
    return response.status_code in RETRY_STATUSES


class FaceClient:
    """Synchronous client; a context manager (closes its connections)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.25,
        on_retry: Callable[[int, str], None] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"x-api-key": api_key} if api_key else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, transport=transport)
        self._policy = _Policy(retries, timeout, backoff, on_retry)

    def __enter__(self) -> FaceClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def send(self, call: Call) -> dict[str, Any]:
        started, attempt = time.monotonic(), 0
        while True:
            response: httpx.Response | None = None
            try:
                response = self._http.request(call.method, call.path, json=call.body)
                reason = f"HTTP {response.status_code}"
            except httpx.TransportError as exc:
                reason = type(exc).__name__
            answer, delay = self._policy.settle(attempt, started, response, reason)
            if answer is not None:
                return answer
            time.sleep(delay)
            attempt += 1

    def health(self) -> HealthResult:
        return cast(HealthResult, self.send(health()))

    def model_info(self) -> ModelInfoResult:
        return cast(ModelInfoResult, self.send(model_info()))

    def embed(self, image: Image | None = None, **kwargs: Any) -> EmbedResult:
        return cast(EmbedResult, self.send(embed(image, **kwargs)))

    def embed_batch(self, images: Mapping[str, Image], **options: Any) -> BatchResult:
        return cast(BatchResult, self.send(embed_batch(images, **options)))

    def verify(self, image: Image | None = None, **kwargs: Any) -> VerifyResult:
        return cast(VerifyResult, self.send(verify(image, **kwargs)))

    def compare(
        self, query_embedding: Sequence[float] | str, references: Sequence[Mapping[str, Any]], **options: Any
    ) -> CompareResult:
        return cast(CompareResult, self.send(compare(query_embedding, references, **options)))

    def identify(self, image: Image | None = None, **kwargs: Any) -> IdentifyResult:
        return cast(IdentifyResult, self.send(identify(image, **kwargs)))


class AsyncFaceClient:
    """The same calls for asyncio; an async context manager."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.25,
        on_retry: Callable[[int, str], None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"x-api-key": api_key} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport
        )
        self._policy = _Policy(retries, timeout, backoff, on_retry)

    async def __aenter__(self) -> AsyncFaceClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(self, call: Call) -> dict[str, Any]:
        started, attempt = time.monotonic(), 0
        while True:
            response: httpx.Response | None = None
            try:
                response = await self._http.request(call.method, call.path, json=call.body)
                reason = f"HTTP {response.status_code}"
            except httpx.TransportError as exc:
                reason = type(exc).__name__
            answer, delay = self._policy.settle(attempt, started, response, reason)
            if answer is not None:
                return answer
            await asyncio.sleep(delay)
            attempt += 1

    async def health(self) -> HealthResult:
        return cast(HealthResult, await self.send(health()))

    async def model_info(self) -> ModelInfoResult:
        return cast(ModelInfoResult, await self.send(model_info()))

    async def embed(self, image: Image | None = None, **kwargs: Any) -> EmbedResult:
        return cast(EmbedResult, await self.send(embed(image, **kwargs)))

    async def embed_batch(self, images: Mapping[str, Image], **options: Any) -> BatchResult:
        return cast(BatchResult, await self.send(embed_batch(images, **options)))

    async def verify(self, image: Image | None = None, **kwargs: Any) -> VerifyResult:
        return cast(VerifyResult, await self.send(verify(image, **kwargs)))

    async def compare(
        self, query_embedding: Sequence[float] | str, references: Sequence[Mapping[str, Any]], **options: Any
    ) -> CompareResult:
        return cast(CompareResult, await self.send(compare(query_embedding, references, **options)))

    async def identify(self, image: Image | None = None, **kwargs: Any) -> IdentifyResult:
        return cast(IdentifyResult, await self.send(identify(image, **kwargs)))
