"""Queue mode: the same function handles SQS events.

Each message asks for one embedding: ``{"id", "image_s3_uri" | "image", ...options}``
(the options of /embed), or, when it names a ``gallery``, one identification:
``{"id", "gallery", "image_s3_uri" | "image" | "embedding", ...}`` (the fields of
/identify). The result — the answer's fields, or the error in the usual shape —
is written as JSON to RESULTS_S3_URI (``<prefix>/<id>.json``)
or sent to RESULTS_QUEUE_URL, with the caller's id and the message id.

Failures are reported per message (Powertools' batch utility, with
ReportBatchItemFailures): a message that cannot be read, or whose result
cannot be delivered, or that met a transient fault (model not loaded, an
unexpected error), returns to the queue and, after the queue's maxReceiveCount,
goes to the dead-letter queue. A photo that is simply bad (no face, not an
image), or a message with an id but an invalid field (no image, ``max_faces``
0), is an answer, not a failure: its error is delivered like any result. Only
a message without a usable id is poison.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import orjson
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import ValidationError

from .. import aws_clients
from ..api.bodies import describe_errors
from ..api.compare_parser import Refused, load_plain
from ..api.schemas import (
    MAX_ID_LENGTH,
    FaceRequestOptions,
    IdentifyRequest,
    OneImage,
    ReferenceId,
    embed_options,
)
from ..api.translate import identify_input
from ..config import Settings
from ..engine import ModelState
from ..errors import ErrorCode, ServiceError, invalid_request
from ..gallery.cache import GalleryCache
from ..s3_images import parse_s3_uri
from ..usecases.embed import EmbedInput, ImageSource, embed
from ..usecases.identify import identify
from .observability import logger, metrics

# Errors worth another try: the message goes back to the queue.
TRANSIENT = frozenset(
    {
        ErrorCode.MODEL_NOT_LOADED,
        ErrorCode.PROCESSING_ERROR,
        ErrorCode.SERVICE_BUSY,
        ErrorCode.STORAGE_UNAVAILABLE,
        ErrorCode.STORAGE_FULL,
    }
)


class QueueMessage(FaceRequestOptions, OneImage):
    id: ReferenceId


class QueueIdentifyMessage(IdentifyRequest):
    id: ReferenceId


# S3's longest key, in bytes: a result key is the prefix, the percent-encoded id and ".json".
MAX_S3_KEY_BYTES = 1024


def _id_of(body: str) -> tuple[str, ErrorCode] | None:
    """The message's id, if it has a usable one, and the code its invalid fields
    get (INVALID_EMBEDDING for an identification, as /identify answers)."""
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    ref_id = raw.get("id") if isinstance(raw, dict) else None
    if not isinstance(ref_id, str) or not 1 <= len(ref_id) <= MAX_ID_LENGTH:
        return None
    return ref_id, ErrorCode.INVALID_EMBEDDING if "gallery" in raw else ErrorCode.INVALID_IMAGE


def _read(body: str) -> QueueMessage | QueueIdentifyMessage:
    """The message as an embed or (naming a gallery) an identify request. The
    body is parsed once (a message may carry megabytes of base64) by the HTTP
    routes' own parser (``load_plain``: a repeated key is Refused there too),
    then validated as they validate theirs (``api.bodies``)."""
    raw = load_plain(body.encode())
    if isinstance(raw, dict) and "gallery" in raw:
        return QueueIdentifyMessage.model_validate(raw)
    return QueueMessage.model_validate(raw)


def result_key(results_s3_uri: str, ref_id: str) -> tuple[str, str]:
    """(bucket, key) of a message's result. The id percent-encoded into one path
    segment: distinct ids never share a key ('g1' and 'g1.json?x', or '#', or
    'a/b' against 'a' and 'b'). An id whose key would pass S3's 1,024 bytes
    cannot be answered there (UndeliverableError)."""
    bucket, key = parse_s3_uri(f"{results_s3_uri.rstrip('/')}/{quote(ref_id, safe='')}.json")
    if len(key.encode()) > MAX_S3_KEY_BYTES:
        raise UndeliverableError(f"the id makes a result key of {len(key.encode())} bytes (S3 allows 1,024)")
    return bucket, key


class UndeliverableError(RuntimeError):
    """The message cannot be processed now (it returns to the queue)."""


def deliver(result: dict[str, Any], settings: Settings) -> None:
    body = orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    if settings.results_s3_uri:
        bucket, key = result_key(settings.results_s3_uri, result["id"])
        aws_clients.client("s3").put_object(
            Bucket=bucket, Key=key, Body=body.encode(), ContentType="application/json"
        )
    elif settings.results_queue_url:
        aws_clients.client("sqs").send_message(QueueUrl=settings.results_queue_url, MessageBody=body)
    else:
        raise UndeliverableError("neither RESULTS_S3_URI nor RESULTS_QUEUE_URL is set")


def _answer_invalid(record: SQSRecord, exc: ValidationError | Refused, settings: Settings) -> None:
    """A message that is not a valid request: its error is delivered when it has
    an id to answer to (a missing image, ``max_faces`` 0, a repeated key: never
    retried); without one it is poison (back to the queue, then to the
    dead-letter queue)."""
    answerable = _id_of(record.body)
    if answerable is None:
        metrics.add_metric(name="QueuePoisonMessages", unit=MetricUnit.Count, value=1)
        raise UndeliverableError("unreadable message (no usable id)") from None
    if isinstance(exc, Refused):
        detail = str(exc)
    else:
        detail = describe_errors(exc.errors(include_url=False, include_input=False))
    invalid = invalid_request(answerable[1], detail)
    deliver({"id": answerable[0], "message_id": record.message_id, **invalid.to_dict()}, settings)


def _answer(
    message: QueueMessage | QueueIdentifyMessage,
    settings: Settings,
    model: ModelState,
    galleries: GalleryCache,
) -> dict[str, Any]:
    """The message's answer, or its error when that is final; a transient error
    (no model, a fault worth another try) raises UndeliverableError."""
    try:
        if isinstance(message, QueueIdentifyMessage):  # needs the model only for a photo
            return identify(identify_input(message), model, settings, galleries)
        engine = model.require()  # first: without a model the message is retried, whatever its image
        source = ImageSource(base64=message.image, s3_uri=message.image_s3_uri)
        return embed(EmbedInput(source, embed_options(message)), engine, settings)
    except ServiceError as exc:
        if exc.code in TRANSIENT:
            raise UndeliverableError(exc.code.value) from None
        return dict(exc.to_dict())


def build_queue_handler(
    settings: Settings, model: ModelState, galleries: GalleryCache
) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The SQS handler; ``galleries`` is the function's own cache (shared with its HTTP routes)."""
    # A batch whose every message failed is still answered message by message
    # (each returns to the queue), not as a failed invocation.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

    def record_handler(record: SQSRecord) -> None:
        try:
            try:
                message = _read(record.body)
            except (ValidationError, Refused) as exc:
                _answer_invalid(record, exc, settings)
                return
            result = {
                "id": message.id,
                "message_id": record.message_id,
                **_answer(message, settings, model, galleries),
            }
            deliver(result, settings)
            logger.info(
                "queue message",
                extra={"message_id": record.message_id, "error_code": result.get("error_code")},
            )
        except UndeliverableError as exc:
            # Why the message goes back to the queue (then to the dead-letter
            # queue): for the operator, who sees no result for it.
            logger.warning(
                "queue message returned", extra={"message_id": record.message_id, "reason": str(exc)}
            )
            raise

    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        response = process_partial_response(
            event=event,
            record_handler=record_handler,
            processor=processor,
            context=context,
        )
        return dict(response)

    return handle
