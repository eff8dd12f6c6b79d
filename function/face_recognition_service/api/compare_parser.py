"""A fast path for /compare bodies: simdjson reads each embedding straight into
a float64 buffer, with no Python float per value.

A 500-reference request is 256,000 numbers (5.7 MB of JSON); creating a Python
object for each costs ~16 ms in any JSON library, and building the numpy matrix
from them another ~4 ms. This path takes ~7 ms for both. It accepts only bodies
that plainly satisfy the schema; anything else returns None and goes through
the pydantic path, which produces the same errors as before.
"""

from __future__ import annotations

import binascii
import threading
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import pybase64
import simdjson

from ..matching import EMBEDDING_SIZE, DistanceMetric, decode_embedding, stack_references
from ..usecases.compare import CompareArrays
from .schemas import MAX_ID_LENGTH, MAX_REFERENCES, CompareRequest


def _floats(value: object) -> np.ndarray | None:
    if isinstance(value, str):  # embedding_format=base64: little-endian float32
        try:
            raw = pybase64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
        if not raw or len(raw) % 4:
            return None
        return np.frombuffer(raw, dtype="<f4").astype(np.float64)
    if not isinstance(value, simdjson.Array) or len(value) == 0:
        return None
    return np.frombuffer(value.as_buffer(of_type="d"), dtype=np.float64)


def _count_brackets(body: bytes, limit: int) -> int:
    # bytes.find is memchr (SIMD): ~0.1 ms for 5.7 MB, where bytes.count takes 1.5 ms.
    count, at = 0, body.find(b"[")
    while at != -1 and count < limit:
        count += 1
        at = body.find(b"[", at + 1)
    return count


# One parser for the process, reused under a lock: a fresh parser allocates
# buffers several times the body's size on every call (page faults measured at
# ~8 ms a request for 5.7 MB), and one per worker thread would keep that much
# memory for each of them. Reuse is safe because no simdjson object outlives
# the locked section.
T = TypeVar("T")

_parser = simdjson.Parser()
_parser_lock = threading.Lock()


def _parse(body: bytes) -> object:
    """The document, on the shared parser (call with the lock held)."""
    global _parser
    try:
        return _parser.parse(body)
    except RuntimeError as exc:
        if "re-use" not in str(exc):  # BIGINT_ERROR and the like: not a usable body
            raise ValueError(str(exc)) from None
    # A document still referenced somewhere: start afresh.
    _parser = simdjson.Parser()
    return _parser.parse(body)


def _with_document(body: bytes, use: Callable[[object], T]) -> T | None:
    """``use`` applied to the parsed body under the parser's lock; None when the
    body is not JSON or ``use`` meets something it does not expect."""
    with _parser_lock:
        try:
            return use(_parse(body))
        except (ValueError, TypeError, RuntimeError, KeyError):
            return None


def parse_compare(body: bytes) -> CompareArrays | None:
    return _with_document(body, lambda doc: _arrays(doc, body))


class Refused(ValueError):
    """A body that cannot be a request, with the reason (never its values)."""


# A request body is a few levels deep; its scalars other than numbers in
# vectors are ids, tags and options: 10,000 references need ~20,000.
_MAX_DEPTH = 8
_MAX_SCALARS = 100_000
# Values (one comma each, at most) a request may hold: the largest holds the
# probe and MAX_REFERENCES embeddings of 512 and _MAX_SCALARS other values
# (5.2 million); the rest leaves room for commas inside ids. A body with more
# is refused before it is parsed: simdjson's document takes 16 bytes a value
# (44.7 MB of "0," were 22 million values and a 945 MB peak; 8 million: 375 MB,
# BENCHMARKS "Reliability IV").
_MAX_VALUES = 8_000_000


def load_plain(body: bytes) -> object:
    """``body`` as Python values for pydantic, each array of numbers as one
    float64 numpy array instead of a Python float per value (the worst request
    of 10,000 references of 512 values: ~40 MB here, ~680 MB as floats).

    Refused: a body that is not JSON, a key repeated in one object (otherwise a
    fast path would read the first value and pydantic the last), nesting deeper
    than a request has, an array that starts with a number but holds something
    else, and more than _MAX_SCALARS other values."""
    if len(body) > _MAX_VALUES and body.count(b",") > _MAX_VALUES:
        raise Refused(
            f"the request holds more than {_MAX_VALUES} values; no request of this service has as many"
        )
    with _parser_lock:
        try:
            doc = _parse(body)
        except (ValueError, RuntimeError) as exc:
            raise Refused(f"the request body is not valid JSON ({_reason(exc)})") from None
        walker = _Walker()
        try:
            plain = walker.walk(doc, ())
        except (KeyError, TypeError, RuntimeError, UnicodeError) as exc:  # what simdjson may still raise
            raise Refused(f"the request body could not be read ({type(exc).__name__})") from None
        if walker.vectors and _count_brackets(body, limit=walker.arrays + 1) != walker.arrays:
            # A '[' inside a string, or an array inside an array of numbers
            # (which the buffer would have flattened): check those arrays one by one.
            for loc, array in walker.vectors:
                if any(isinstance(v, (simdjson.Array, simdjson.Object)) for v in array):
                    raise Refused(f"{_where(loc)}: an array of numbers must hold numbers only")
        del doc
        return plain


def _reason(exc: Exception) -> str:
    # simdjson's messages name the problem (NUMBER_ERROR: ...) and never the input.
    return str(exc).split(":", 1)[0].strip().lower() or type(exc).__name__


def _where(loc: tuple[str | int, ...]) -> str:
    return ".".join(str(p) for p in loc) or "body"


class _Walker:
    def __init__(self) -> None:
        self.arrays = 0
        self.scalars = 0
        self.vectors: list[tuple[tuple[str | int, ...], simdjson.Array]] = []

    def walk(self, value: object, loc: tuple[str | int, ...]) -> object:
        if len(loc) > _MAX_DEPTH:
            raise Refused(f"{_where(loc)}: nested deeper than any request")
        if isinstance(value, simdjson.Object):
            keys = list(value.keys())
            if len(keys) != len(set(keys)):
                seen: set[str] = set()
                twice = next(k for k in keys if k in seen or seen.add(k))  # type: ignore[func-returns-value]
                raise Refused(f"the key {twice[:40]!r} appears twice in one object; send each key once")
            if any("\x00" in key for key in keys):  # simdjson looks keys up as C strings
                raise Refused(f"{_where(loc)}: a key holds a NUL character")
            return {key: self.walk(value[key], (*loc, key)) for key in keys}
        if isinstance(value, simdjson.Array):
            self.arrays += 1
            if len(value) and _is_number(value[0]):
                if len(value) != EMBEDDING_SIZE:  # before 8 bytes a value are copied out
                    raise Refused(
                        f"{_where(loc)}: an embedding holds {EMBEDDING_SIZE} numbers (got {len(value)})"
                    )
                try:
                    vector = np.frombuffer(value.as_buffer(of_type="d"), dtype=np.float64)
                except (TypeError, ValueError):
                    raise Refused(f"{_where(loc)}: an array of numbers must hold numbers only") from None
                self.vectors.append((loc, value))
                return vector
            return [self.walk(item, (*loc, i)) for i, item in enumerate(value)]
        self.scalars += 1
        if self.scalars > _MAX_SCALARS:
            raise Refused(f"the request holds more than {_MAX_SCALARS} values besides embeddings")
        return value


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_TOP_KEYS = ("query_embedding", "reference_embeddings", "distance_metric", "query_model", "group_by_id")


def _arrays(doc: object, body: bytes) -> CompareArrays | None:
    # Only bodies made of known keys, each once: anything else (an extra or a
    # repeated key) goes down the pydantic path, which checks it in full.
    if not isinstance(doc, simdjson.Object) or len(doc) != sum(1 for k in _TOP_KEYS if k in doc):
        return None
    metric_value = doc.get("distance_metric", "cosine")
    if metric_value not in ("cosine", "euclidean"):
        return None
    query_ok, query_model = _tag(doc.get("query_model"))
    group_by_id = doc.get("group_by_id", False)
    if not query_ok or not isinstance(group_by_id, bool):
        return None
    query = _floats(doc.get("query_embedding"))
    refs = doc.get("reference_embeddings")
    if (
        query is None
        or query.shape[0] != EMBEDDING_SIZE
        or not isinstance(refs, simdjson.Array)
        or not 1 <= len(refs) <= MAX_REFERENCES
    ):
        return None
    matrix = np.empty((len(refs), query.shape[0]), dtype=np.float64)
    ids: list[str] = []
    models: list[str | None] = []
    lists = 0 if isinstance(doc.get("query_embedding"), str) else 1
    for i, ref in enumerate(refs):
        parsed = _reference(ref, query.shape[0])
        if parsed is None:
            return None
        ids.append(parsed[0])
        matrix[i] = parsed[1]
        models.append(parsed[2])
        lists += parsed[3]
    # as_buffer() flattens nested arrays; a plain body has exactly one '[' per
    # float-list vector plus the references list (a '[' inside an id just sends
    # the body down the pydantic path).
    lists += 1  # the references' own list
    if _count_brackets(body, limit=lists + 2) != lists:
        return None
    return CompareArrays(
        query.copy(), ids, matrix, DistanceMetric(metric_value), query_model, models, group_by_id
    )


def _reference(ref: object, size: int) -> tuple[str, np.ndarray, str | None, int] | None:
    """(id, vector, model, 1 for a float list) of a plain reference, else None."""
    if not isinstance(ref, simdjson.Object):
        return None
    # Two fields (id, embedding) or three (and model), each found by name:
    # a repeated or unknown key makes the count disagree.
    fields = len(ref)
    ref_id = ref.get("id")
    embedding = ref.get("embedding")
    ref_model = None
    if fields == 3:
        model_ok, ref_model = _tag(ref.get("model"))
        if not model_ok or ref_model is None:
            return None
    elif fields != 2:
        return None
    if not isinstance(ref_id, str) or not 1 <= len(ref_id) <= MAX_ID_LENGTH:
        return None
    vector = _floats(embedding)
    if vector is None or vector.shape[0] != size:
        return None
    return ref_id, vector, ref_model, 0 if isinstance(embedding, str) else 1


def _tag(value: object) -> tuple[bool, str | None]:
    """(acceptable, tag): absent, or a string the schema would take."""
    if value is None:
        return True, None
    if isinstance(value, str) and 1 <= len(value) <= 200:
        return True, value
    return False, None


def compare_request_arrays(body: CompareRequest) -> CompareArrays:
    """Arrays from a request pydantic validated (float lists or base64, mixed)."""
    refs = body.reference_embeddings
    query = decode_embedding(body.query_embedding, "query embedding")
    matrix = stack_references(
        query, [decode_embedding(r.embedding, f"reference at position {at}") for at, r in enumerate(refs)]
    )
    return CompareArrays(
        query,
        [r.id for r in refs],
        matrix,
        body.distance_metric,
        body.query_model,
        [r.model for r in refs],
        body.group_by_id,
    )
