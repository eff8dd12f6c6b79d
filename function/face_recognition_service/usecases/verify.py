"""The /verify decision: a probe against enrolled references, grouped by person,
with the threshold of a named operating point (or the caller's own)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..config import Settings
from ..engine import FaceSelection, ModelState
from ..faces import EmbedOptions, Include, find_faces
from ..matching import (
    OperatingPoint,
    best_per_id,
    check_models,
    decide,
    operating_points_for,
    similarities,
    stack_references,
)
from .embed import ImageSource


@dataclass(frozen=True)
class Reference:
    id: str
    embedding: np.ndarray
    model: str | None = None


def pack_of(model_tag: str | None, default: str) -> str:
    """The pack name of a model tag (``buffalo_sc/w600k_mbf@...`` -> buffalo_sc)."""
    return model_tag.split("/", 1)[0] if model_tag else default


def threshold_for(
    model_name: str,
    threshold: float | None,
    operating_point: OperatingPoint | None,
    default_point: OperatingPoint,
) -> tuple[float, str]:
    """The caller's threshold, else the named operating point's for this model."""
    if threshold is not None:
        return threshold, "custom"
    point = operating_point or default_point
    return operating_points_for(model_name)[point.value], point.value


def decide_references(
    probe: np.ndarray,
    probe_model: str | None,
    references: list[Reference],
    threshold: float,
    operating_point: str,
) -> dict[str, Any]:
    check_models(probe_model, [r.model for r in references])
    matrix = stack_references(probe, [r.embedding for r in references])
    persons = best_per_id([r.id for r in references], similarities(probe, matrix))
    result = decide(persons, threshold)
    model = probe_model or next((r.model for r in references if r.model), None)
    return {
        "match": result.match,
        "similarity": round(result.similarity, 6),
        "threshold": threshold,
        "operating_point": operating_point,
        "best_match": {"id": result.best_id, "similarity": round(result.similarity, 6)},
        "runner_up": None
        if result.runner_up_id is None
        else {"id": result.runner_up_id, "similarity": round(result.runner_up_similarity or 0.0, 6)},
        "margin": None if result.margin is None else round(result.margin, 6),
        "ambiguous": result.ambiguous,
        "model": model,
    }


@dataclass(frozen=True)
class Probe:
    """Who is asked about: a photo (``image``, with the embed options) or an
    embedding (with its model tag, if known)."""

    image: ImageSource | None = None
    options: EmbedOptions = EmbedOptions()
    embedding: np.ndarray | None = None
    model: str | None = None


@dataclass(frozen=True)
class VerifyInput:
    references: list[Reference]
    probe: Probe
    threshold: float | None = None
    operating_point: OperatingPoint | None = None


def verify(request: VerifyInput, model: ModelState, settings: Settings) -> dict[str, Any]:
    """The /verify answer; a photo probe adds its detection score (and quality if asked)."""
    extra: dict[str, Any] = {}
    probe_model: str | None
    asked = request.probe
    if asked.image is not None:
        engine = model.require()
        options = asked.options
        if options.faces.selection is FaceSelection.ALL:  # one probe face, whatever was asked
            options = replace(options, faces=replace(options.faces, selection=FaceSelection.SINGLE))
        faces, _ = find_faces(asked.image.read(settings.images), engine, settings.images, options)
        probe, probe_model = faces[0].embedding.astype(np.float64), engine.model_tag
        extra["detection_score"] = round(faces[0].detection_score, 6)
        if Include.QUALITY in options.include and faces[0].quality is not None:
            extra["quality"] = faces[0].quality.as_dict()
    else:
        assert asked.embedding is not None
        probe, probe_model = asked.embedding, asked.model
    references = request.references
    pack = pack_of(probe_model or next((r.model for r in references if r.model), None), settings.model_name)
    threshold, point = threshold_for(
        pack, request.threshold, request.operating_point, settings.operating_point
    )
    return {**decide_references(probe, probe_model, references, threshold, point), **extra}
