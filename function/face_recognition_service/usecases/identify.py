"""Identify: who of a gallery's enrolled people is this (1:N), or who are these
(``face_selection: "all"``, assigned one-to-one)?

The gallery is the caller's snapshot (``gallery`` package); inline
``references`` add people enrolled since it was built, ``exclude_ids`` remove
people deleted since (from the snapshot; an inline reference always counts,
so re-enrolling someone is excluding their old id and sending the new template).
The threshold follows the number of people searched: the snapshot's less those
excluded, plus inline ids it lacks (``matching.identification_threshold``).

One request's cost is bounded whatever the gallery's shape: each face reads
at most MAX_ROWS_PER_FACE rows of the gallery, so a gallery with fewer people
than ``top_k`` among its best rows answers fewer candidates, not a scan of all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import Settings
from ..engine import FaceEmbedding, FaceSelection, ModelState
from ..faces import Include, find_faces
from ..gallery.cache import Gallery, GalleryCache, Served
from ..matching import (
    AMBIGUITY_MARGIN,
    OperatingPoint,
    as_unit_vectors,
    check_models,
    expected_fpir,
    identification_threshold,
)
from .verify import Probe, Reference, pack_of

MAX_TOP_K = 100
# Rows of the gallery one search for a face may read while looking for
# ``top_k`` distinct people (the search widens 4x at a time up to it, so under
# 2.5 times this in all): 4,096 rows are 8 MB of float32 re-scored at most,
# whatever the gallery's size or its number of people.
MAX_ROWS_PER_FACE = 4_096


@dataclass(frozen=True)
class IdentifyInput:
    gallery: str
    probe: Probe
    references: list[Reference] = field(default_factory=list)
    exclude_ids: frozenset[str] = frozenset()
    top_k: int = 5
    threshold: float | None = None
    operating_point: OperatingPoint | None = None


@dataclass(frozen=True)
class Candidates:
    ids: list[str]  # best first, one entry per person
    similarities: list[float]


def _persons(
    ids: list[str], sims: list[float], inline: list[tuple[str, float]], excluded: frozenset[str], limit: int
) -> Candidates:
    """Each person once (their best template), best first, at most ``limit``:
    the snapshot's rows less the excluded ids, and every inline reference."""
    best: dict[str, float] = {}
    for ref_id, sim in zip(ids, sims, strict=True):
        if ref_id not in excluded and sim > best.get(ref_id, -2.0):
            best[ref_id] = sim
    for ref_id, sim in inline:
        if sim > best.get(ref_id, -2.0):
            best[ref_id] = sim
    order = sorted(best, key=lambda k: -best[k])[:limit]
    return Candidates(order, [best[k] for k in order])


def rank_people(
    gallery: Gallery, probes: np.ndarray, request: IdentifyInput, extra: np.ndarray, limit: int
) -> list[Candidates]:
    """For each probe, the ``limit`` best people of the gallery and the inline
    references. More rows are asked of the index until enough distinct people
    remain after exclusions, the whole gallery was seen, or MAX_ROWS_PER_FACE
    rows were read."""
    snapshot, wanted = gallery.snapshot, limit
    out: list[Candidates | None] = [None] * len(probes)
    inline_ids = [r.id for r in request.references]
    inline = (extra @ probes.T).T if len(extra) else np.zeros((len(probes), 0))
    pending = list(range(len(probes)))
    most = min(snapshot.count, MAX_ROWS_PER_FACE)
    rows_asked = min(max(4 * limit + 16, gallery.searcher.fewest_rows), most)
    while pending:
        hits = gallery.searcher.nearest(probes[pending], rows_asked)
        still = []
        for at, found in zip(pending, hits, strict=True):
            ids = [snapshot.ids[r] for r in found.rows.tolist()]
            people = _persons(
                ids,
                found.similarities.tolist(),
                list(zip(inline_ids, inline[at].tolist(), strict=True)),
                request.exclude_ids,
                wanted,
            )
            if len(people.ids) < wanted and rows_asked < most:
                still.append(at)
            else:
                out[at] = people
        pending, rows_asked = still, min(rows_asked * 4, most)
    return [c for c in out if c is not None]


def persons_searched(gallery: Gallery, request: IdentifyInput) -> int:
    """People the probe is searched among: the snapshot's, less those excluded,
    plus the inline ids the snapshot lacks or excluded (an inline reference
    always counts); each person once."""
    known = gallery.person_ids
    excluded = len(request.exclude_ids & known)
    inline = {r.id for r in request.references}
    added = sum(1 for i in inline if i not in known or i in request.exclude_ids)
    return gallery.persons - excluded + added


def _candidates(c: Candidates, top_k: int) -> list[dict[str, Any]]:
    return [
        {"id": i, "similarity": round(s, 6)} for i, s in list(zip(c.ids, c.similarities, strict=True))[:top_k]
    ]


def decide_one(c: Candidates, threshold: float, top_k: int) -> dict[str, Any]:
    best = c.similarities[0] if c.ids else None
    match = best is not None and best >= threshold
    margin = best - c.similarities[1] if best is not None and len(c.ids) > 1 else None
    return {
        "candidates": _candidates(c, top_k),
        "match": match,
        "identity": c.ids[0] if match else None,
        "best_match": None if best is None else {"id": c.ids[0], "similarity": round(best, 6)},
        "margin": None if margin is None else round(margin, 6),
        "ambiguous": bool(match and margin is not None and margin < AMBIGUITY_MARGIN),
    }


def assign(people: list[Candidates], threshold: float) -> list[tuple[str, float] | None]:
    """Faces to people one-to-one: the most similar (face, person) pair above the
    threshold first, then the next among those left (two faces in one photo are
    never the same person)."""
    pairs = sorted(
        (
            (sim, face, person)
            for face, c in enumerate(people)
            for person, sim in zip(c.ids, c.similarities, strict=True)
            if sim >= threshold
        ),
        key=lambda p: -p[0],
    )
    taken: set[str] = set()
    out: list[tuple[str, float] | None] = [None] * len(people)
    for sim, face, person in pairs:
        if out[face] is None and person not in taken:
            out[face] = (person, sim)
            taken.add(person)
    return out


# Inline references made unit length at a time (float64), into float32 rows:
# 10,000 references at once took three float64 copies (123 MB), in steps 20 MB.
INLINE_ROWS_AT_ONCE = 1_024


def _inline(references: list[Reference], size: int) -> np.ndarray:
    """The inline references as unit float32 rows."""
    out = np.empty((len(references), size), np.float32)
    for start in range(0, len(references), INLINE_ROWS_AT_ONCE):
        chunk = np.stack([r.embedding for r in references[start : start + INLINE_ROWS_AT_ONCE]])
        out[start : start + len(chunk)] = as_unit_vectors(chunk, "reference embeddings")
    return out


def attendance(
    faces: list[FaceEmbedding], people: list[Candidates], threshold: float, top_k: int, found: int
) -> dict[str, Any]:
    """``face_selection: "all"``: every face with its candidates and the person
    assigned to it one-to-one (or null); ``faces_left_out`` when the photo held
    more faces than were searched (``max_faces``, ``min_quality``), as /embed says."""
    assigned = assign(people, threshold)
    out: dict[str, Any] = {
        "faces": [
            {
                "bbox": [round(float(v), 1) for v in face.box],
                "detection_score": round(face.detection_score, 6),
                "candidates": _candidates(c, top_k),
                "identity": None if a is None else a[0],
                "similarity": None if a is None else round(a[1], 6),
                "match": a is not None,
            }
            for face, c, a in zip(faces, people, assigned, strict=True)
        ],
        "face_count": len(faces),
    }
    if found > len(faces):
        out["faces_left_out"] = found - len(faces)
    return out


def _probe_faces(
    request: IdentifyInput, model: ModelState, settings: Settings, gallery_model: str
) -> tuple[list[FaceEmbedding], int, str]:
    engine = model.require()
    check_models(engine.model_tag, [gallery_model])  # before any pixel is decoded
    assert request.probe.image is not None
    limits = settings.images
    faces, found = find_faces(request.probe.image.read(limits), engine, limits, request.probe.options)
    return faces, found, engine.model_tag


def _gallery_block(served: Served) -> dict[str, Any]:
    """Which version answered: every id, vector and this hash come from it.
    ``stale``: a newer file was refused (why: ``stale_detail``) and the last
    good version answered."""
    snapshot = served.gallery.snapshot
    block: dict[str, Any] = {
        "size": snapshot.count,
        "persons": served.gallery.persons,
        "hash": snapshot.hash,
        "model": snapshot.model,
        "stale": served.stale is not None,
    }
    if served.stale is not None:
        block["stale_detail"] = served.stale
    return block


def identify(
    request: IdentifyInput, model: ModelState, settings: Settings, galleries: GalleryCache
) -> dict[str, Any]:
    served = galleries.get(request.gallery)
    gallery = served.gallery
    check_models(gallery.model, [r.model for r in request.references])
    faces: list[FaceEmbedding] = []
    found = 0
    asked = request.probe
    if asked.image is not None:
        faces, found, probe_model = _probe_faces(request, model, settings, gallery.model)
        probes = np.stack([f.embedding for f in faces]).astype(np.float32)
    else:
        assert asked.embedding is not None
        probe_model = asked.model or gallery.model
        probes = as_unit_vectors(asked.embedding[None, :], "embedding").astype(np.float32)
    check_models(probe_model, [gallery.model])
    persons = persons_searched(gallery, request)
    threshold, point = _threshold(request, settings, gallery, persons)
    extra = _inline(request.references, probes.shape[1])
    everyone = asked.options.faces.selection is FaceSelection.ALL and asked.image is not None
    limit = max(request.top_k, len(faces) + 1) if everyone else max(request.top_k, 2)
    people = rank_people(gallery, probes, request, extra, limit)
    common = {
        "threshold": threshold,
        "operating_point": point,
        "expected_fpir": float(f"{expected_fpir(threshold, persons):.3g}"),
        "gallery": _gallery_block(served),
        "model": probe_model,
    }
    if everyone:
        return {**attendance(faces, people, threshold, request.top_k, found), **common}
    answer = {**decide_one(people[0], threshold, request.top_k), **common}
    if faces:
        answer["detection_score"] = round(faces[0].detection_score, 6)
        if Include.QUALITY in asked.options.include and faces[0].quality is not None:
            answer["quality"] = faces[0].quality.as_dict()
    return answer


def _threshold(
    request: IdentifyInput, settings: Settings, gallery: Gallery, persons: int
) -> tuple[float, str]:
    if request.threshold is not None:
        return request.threshold, "custom"
    point = request.operating_point or settings.operating_point
    pack = pack_of(gallery.model, settings.model_name)
    return identification_threshold(pack, point, persons), point.value
