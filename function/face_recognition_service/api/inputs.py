"""How an image reaches /embed: JSON (base64 or an S3 URI), a raw image body
with the options in the query string, or a multipart form with an `image` file
field. Whatever the transport, the result is the same: the image's bytes (or
its S3 URI) and the face options. Nothing is written to disk."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import Headers, UploadFile
from starlette.requests import Request

from ..errors import ErrorCode, ServiceError, image_too_large, invalid_request
from .bodies import describe_errors, require_json, validate_json
from .schemas import EmbedRequest, FaceRequestOptions

# Raw image bodies: what `curl --data-binary @photo.jpg -H 'content-type: image/jpeg'` sends.
# The OpenAPI document lists these (docs.py); "image/jpg" is taken as an alias.
DOCUMENTED_IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "application/octet-stream")
IMAGE_TYPES = frozenset({*DOCUMENTED_IMAGE_TYPES, "image/jpg"})
ACCEPTED = "application/json, image/jpeg, image/png, image/webp, image/bmp, application/octet-stream or multipart/form-data"


@dataclass(frozen=True)
class ImageInput:
    options: FaceRequestOptions
    data: bytes | None = None  # the image file's bytes
    image: str | None = None  # base64 / data URI, decoded in the worker thread
    s3_uri: str | None = None
    json_body: bytes | None = None  # a JSON body, read but not parsed yet (parse_json_input)


def media_type(request: Request) -> str | None:
    value = request.headers.get("content-type")
    return value.split(";", 1)[0].strip().lower() if value else None


def _options(values: dict[str, Any]) -> FaceRequestOptions:
    try:
        return FaceRequestOptions.model_validate(values)
    except ValidationError as exc:
        detail = describe_errors(exc.errors(include_url=False, include_input=False))
        raise invalid_request(ErrorCode.INVALID_IMAGE, detail) from None


# Query and form values are strings; the options take numbers and booleans
# strictly (a JSON body's "5" is refused), so these are read as literals here.
_NUMBERS = frozenset({"max_faces", "min_face_size", "detection_threshold"})
_BOOLEANS = {
    "true": True,
    "1": True,
    "yes": True,
    "on": True,
    "false": False,
    "0": False,
    "no": False,
    "off": False,
}


def _literal(key: str, value: str) -> Any:
    if key in _NUMBERS:
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return value  # refused by validation, naming the field
    if key == "aligned":
        return _BOOLEANS.get(value.strip().lower(), value)
    return value


def _multi(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Query or form fields as option values: `include` may repeat or be a comma list."""
    values: dict[str, Any] = {}
    for key, value in pairs:
        if key == "include":
            values.setdefault("include", []).extend(v for v in value.split(",") if v)
        else:
            values[key] = _literal(key, value)
    return values


async def read_image_input(request: Request, max_image_bytes: int) -> ImageInput:
    """The image and options of an /embed request, from any of its transports.
    JSON is only read here; it is validated in the worker thread (parse_json_input)."""
    media = media_type(request)
    if media in IMAGE_TYPES or (media or "").startswith("image/"):
        data = await request.body()
        if len(data) > max_image_bytes:
            raise _too_large(max_image_bytes)
        return ImageInput(_options(_multi(list(request.query_params.multi_items()))), data=data)
    if media == "multipart/form-data":
        return await _read_form(request, max_image_bytes)
    require_json(request, accepted=ACCEPTED)
    return ImageInput(FaceRequestOptions(), json_body=await request.body())


def parse_json_input(raw: bytes) -> ImageInput:
    body = validate_json(raw, EmbedRequest, ErrorCode.INVALID_IMAGE)
    return ImageInput(body, image=body.image, s3_uri=body.image_s3_uri)


async def _read_form(request: Request, max_image_bytes: int) -> ImageInput:
    # Imported on the first form: python-multipart is not needed to start.
    from starlette.formparsers import MultiPartException, MultiPartParser

    class InMemoryMultiPartParser(MultiPartParser):
        # Starlette spools file parts over 1 MB to a temporary file; an image
        # stays in memory (the body limit bounds it): nothing sent hits disk.
        spool_max_size = 1 << 62

    parser = InMemoryMultiPartParser(
        Headers(scope=request.scope), request.stream(), max_files=1, max_fields=16, max_part_size=64 * 1024
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ServiceError(
            ErrorCode.INVALID_IMAGE, "The multipart form could not be read.", str(exc)[:200]
        ) from None
    upload = form.get("image")
    fields = [(k, v) for k, v in form.multi_items() if k != "image" and isinstance(v, str)]
    options = _options(_multi(fields))
    if isinstance(upload, UploadFile):
        data = await upload.read()
        await upload.close()
        if len(data) > max_image_bytes:
            raise _too_large(max_image_bytes)
        return ImageInput(options, data=data)
    if isinstance(upload, str) and upload:
        return ImageInput(options, image=upload)  # a base64 text field, as in JSON
    raise ServiceError(
        ErrorCode.INVALID_IMAGE,
        "The form has no image.",
        "Send the photo as a file field named 'image' (curl -F image=@photo.jpg).",
        status=422,
    )


def _too_large(max_bytes: int) -> ServiceError:
    return image_too_large(f"Maximum image size is {max_bytes} bytes.")
