"""Validated request bodies (``schemas``) to the use cases' typed requests: the
one translation the HTTP routes and the queue handler share."""

from __future__ import annotations

from ..matching import decode_embedding
from ..usecases.embed import ImageSource
from ..usecases.identify import IdentifyInput
from ..usecases.verify import Probe, Reference, VerifyInput
from .schemas import IdentifyRequest, ProbeRequest, ReferenceEmbedding, VerifyRequest, embed_options


def references(items: list[ReferenceEmbedding]) -> list[Reference]:
    # Named by position, never by id: an error's detail does not echo what was sent.
    return [
        Reference(r.id, decode_embedding(r.embedding, f"reference at position {at}"), r.model)
        for at, r in enumerate(items)
    ]


def probe(body: ProbeRequest, image: ImageSource | None = None) -> Probe:
    if image is None and (body.image is not None or body.image_s3_uri is not None):
        image = ImageSource(base64=body.image, s3_uri=body.image_s3_uri)
    return Probe(
        image=image,
        options=embed_options(body),
        embedding=None if body.embedding is None else decode_embedding(body.embedding, "embedding"),
        model=body.model,
    )


def verify_input(body: VerifyRequest) -> VerifyInput:
    return VerifyInput(
        references=references(body.references),
        probe=probe(body),
        threshold=body.threshold,
        operating_point=body.operating_point,
    )


def identify_input(body: IdentifyRequest, image: ImageSource | None = None) -> IdentifyInput:
    return IdentifyInput(
        gallery=body.gallery,
        references=references(body.references),
        exclude_ids=frozenset(body.exclude_ids),
        top_k=body.top_k,
        probe=probe(body, image),
        threshold=body.threshold,
        operating_point=body.operating_point,
    )
