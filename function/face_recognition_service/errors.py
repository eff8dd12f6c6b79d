"""The service's error vocabulary: one enum, one exception, one status map.

Every error a caller can see is an ``ErrorCode``; the HTTP status that goes with
each code is decided here and nowhere else.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    INVALID_IMAGE = "INVALID_IMAGE"
    NO_FACE_DETECTED = "NO_FACE_DETECTED"
    MULTIPLE_FACES_DETECTED = "MULTIPLE_FACES_DETECTED"
    IMAGE_TOO_LARGE = "IMAGE_TOO_LARGE"
    UNSUPPORTED_FORMAT = "UNSUPPORTED_FORMAT"
    MODEL_NOT_LOADED = "MODEL_NOT_LOADED"
    INVALID_EMBEDDING = "INVALID_EMBEDDING"
    PROCESSING_ERROR = "PROCESSING_ERROR"
    # The face was found but the photo is not good enough for the quality the
    # request asked for (min_quality); detail names the reasons.
    LOW_QUALITY = "LOW_QUALITY"
    # Embeddings of different models (pack/recogniser) cannot be compared.
    MODEL_MISMATCH = "MODEL_MISMATCH"
    # Transport-level codes: not about images or embeddings, but they keep the
    # one error shape for every answer.
    UNAUTHORIZED = "UNAUTHORIZED"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    # The request itself could not be read (a malformed Lambda event, a header
    # or body the HTTP layer refuses).
    INVALID_REQUEST = "INVALID_REQUEST"
    # The body's Content-Type is not one the route takes.
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    # The request body is over the route's size limit (an image over
    # MAX_IMAGE_SIZE is IMAGE_TOO_LARGE).
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    # image_s3_uri: the bucket is not allowed (or the role may not read it),
    # or the object does not exist.
    IMAGE_SOURCE_FORBIDDEN = "IMAGE_SOURCE_FORBIDDEN"
    IMAGE_NOT_FOUND = "IMAGE_NOT_FOUND"
    # Every worker is busy and the short queue is full: retry after Retry-After seconds.
    SERVICE_BUSY = "SERVICE_BUSY"
    # A batch's earlier photos used up the faces one request may embed.
    TOO_MANY_FACES = "TOO_MANY_FACES"
    # The answer would not fit what the transport can carry (Lambda's 6 MB).
    RESPONSE_TOO_LARGE = "RESPONSE_TOO_LARGE"
    # /identify's gallery snapshot: not there, not allowed (bucket or folder),
    # or not a readable snapshot (corrupt, truncated, over the memory budget).
    GALLERY_NOT_FOUND = "GALLERY_NOT_FOUND"
    GALLERY_FORBIDDEN = "GALLERY_FORBIDDEN"
    INVALID_GALLERY = "INVALID_GALLERY"
    # The storage behind the service failed: S3 unreachable, throttled or without
    # credentials, GALLERY_CACHE_DIR not writable (worth a retry, with backoff),
    # or GALLERY_CACHE_DIR full (the operator frees space or points it elsewhere).
    STORAGE_UNAVAILABLE = "STORAGE_UNAVAILABLE"
    STORAGE_FULL = "STORAGE_FULL"


HTTP_STATUS: dict[ErrorCode, int] = {
    # The request body is not a usable image (bad base64, corrupt data).
    ErrorCode.INVALID_IMAGE: 400,
    # A well-formed image the service understood, but it cannot give one face:
    # 422 says "valid syntax, unprocessable content", which is what the caller fixes.
    ErrorCode.NO_FACE_DETECTED: 422,
    ErrorCode.MULTIPLE_FACES_DETECTED: 422,
    ErrorCode.IMAGE_TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_FORMAT: 415,
    ErrorCode.MODEL_NOT_LOADED: 503,
    ErrorCode.INVALID_EMBEDDING: 422,
    ErrorCode.PROCESSING_ERROR: 500,
    ErrorCode.LOW_QUALITY: 422,
    # 409 Conflict: the request is well-formed but conflicts with the state of
    # the caller's gallery (enrolled under another model); re-enrolling fixes it.
    ErrorCode.MODEL_MISMATCH: 409,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.INVALID_REQUEST: 400,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.SERVICE_BUSY: 503,
    ErrorCode.IMAGE_SOURCE_FORBIDDEN: 403,
    ErrorCode.IMAGE_NOT_FOUND: 404,
    ErrorCode.TOO_MANY_FACES: 422,
    # The request was fine but asks for more than one answer can carry: the
    # caller asks for less (base64 embeddings, fewer faces, a smaller batch).
    ErrorCode.RESPONSE_TOO_LARGE: 413,
    ErrorCode.GALLERY_NOT_FOUND: 404,
    ErrorCode.GALLERY_FORBIDDEN: 403,
    # The snapshot, not the request, is at fault: the caller rebuilds it.
    ErrorCode.INVALID_GALLERY: 422,
    # Not the caller's fault and not a bug: 503 (Retry-After) and 507 Insufficient Storage.
    ErrorCode.STORAGE_UNAVAILABLE: 503,
    ErrorCode.STORAGE_FULL: 507,
}


class ServiceError(Exception):
    """An error with a code the caller can act on.

    ``message`` is the human-readable summary; ``detail`` may say more but never
    echoes what the caller sent (no image bytes, no embedding values).
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        detail: str | None = None,
        *,
        faces: int | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        # A request that fails schema validation answers 422 whatever its code.
        self._status = status
        self.message = message
        self.detail = detail
        # How many faces the detector found, for metrics; never sent to the caller.
        self.faces = faces

    @property
    def status(self) -> int:
        return self._status or HTTP_STATUS[self.code]

    def to_dict(self) -> dict[str, str | None]:
        return {"error": self.message, "error_code": self.code.value, "detail": self.detail}


def image_too_large(detail: str | None) -> ServiceError:
    """An image over MAX_IMAGE_SIZE, MAX_IMAGE_PIXELS or the decode budget."""
    return ServiceError(ErrorCode.IMAGE_TOO_LARGE, "The image exceeds the maximum size.", detail)


def invalid_request(code: ErrorCode, detail: str | None) -> ServiceError:
    """A request that fails its schema: 422, with the route's own code (INVALID_IMAGE,
    INVALID_EMBEDDING, ...) and what was wrong in ``detail`` (never the values sent)."""
    return ServiceError(code, "The request is not valid.", detail, status=422)


def service_busy(detail: str) -> ServiceError:
    """Over a capacity limit (connections, workers and queue): retry later."""
    return ServiceError(ErrorCode.SERVICE_BUSY, "The service is busy.", detail)
