"""Build a snapshot from the caller's enrolled embeddings, with a hygiene report.

Input: JSON Lines, one ``{"id", "embedding", "model"}`` a line (``embedding``
a float list or the service's base64 float32), or the JSON that
/api/v1/embed/batch returns (``{"results": [{"id", "embedding", ...}], "model"}``).
Every problem is one line naming where it is; any problem refuses the build.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ..errors import ServiceError
from ..matching import EMBEDDING_SIZE, OperatingPoint, decode_embedding, operating_points_for
from ..usecases.verify import pack_of
from .format import write_snapshot
from .search import EXACT_LIMIT, index_for

# Above this many vectors the hygiene report is off unless asked for: it
# compares every vector with every other (40,000 in ~15 s on 2 cores).
HYGIENE_DEFAULT_LIMIT = 50_000
MAX_PROBLEM_LINES = 50


class BuildError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"{len(problems)} problem(s)")
        self.problems = problems


@dataclass
class Enrolled:
    ids: list[str] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)
    models: set[str] = field(default_factory=set)


def _records(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, record) for each enrolled embedding of the input file."""
    text = path.read_bytes()
    stripped = text.lstrip()
    if stripped.startswith(b"{") and b'"results"' in stripped[:4096]:
        try:
            whole = orjson.loads(text)
        except orjson.JSONDecodeError:
            whole = None
        if isinstance(whole, dict) and isinstance(whole.get("results"), list):
            for number, item in enumerate(whole["results"], 1):
                if isinstance(item, dict) and "model" not in item and "model" in whole:
                    item = {**item, "model": whole["model"]}
                yield f"results[{number - 1}]", item
            return
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield f"line {number}", orjson.loads(line)
            except orjson.JSONDecodeError:
                yield f"line {number}", None


def _vector(where: str, record: Any, problems: list[str]) -> tuple[str, np.ndarray, str] | None:
    if not isinstance(record, dict):
        problems.append(f"{where}: not a JSON object")
        return None
    if "error_code" in record:
        problems.append(f"{where}: an error result ({record.get('error_code')}), not an embedding")
        return None
    ref_id, embedding, model = record.get("id"), record.get("embedding"), record.get("model")
    if not isinstance(ref_id, str) or not ref_id:
        problems.append(f"{where}: no id")
        return None
    if not isinstance(model, str) or not model:
        problems.append(f"{where}: id {ref_id!r} has no model tag")
        return None
    if not isinstance(embedding, str | list):
        problems.append(f"{where}: id {ref_id!r} has no embedding")
        return None
    try:
        vector = decode_embedding(embedding, "embedding")
    except (ServiceError, ValueError, TypeError) as exc:
        problems.append(f"{where}: id {ref_id!r}: {getattr(exc, 'message', 'not a list of numbers')}")
        return None
    if vector.shape != (EMBEDDING_SIZE,):
        problems.append(f"{where}: id {ref_id!r} has {vector.size} values, not {EMBEDDING_SIZE}")
    elif not np.isfinite(vector).all():
        problems.append(f"{where}: id {ref_id!r} contains NaN or infinite values")
    elif not np.any(vector):
        problems.append(f"{where}: id {ref_id!r} is a zero vector")
    else:
        return ref_id, vector, model
    return None


def read_enrolled(path: Path) -> Enrolled:
    problems: list[str] = []
    enrolled = Enrolled()
    first_model: str | None = None
    for where, record in _records(path):
        item = _vector(where, record, problems)
        if item is None:
            continue
        ref_id, vector, model = item
        if first_model is None:
            first_model = model
        elif model != first_model:
            problems.append(f"{where}: id {ref_id!r} is {model}, the gallery is {first_model} (mixed models)")
            continue
        enrolled.ids.append(ref_id)
        enrolled.rows.append(vector / np.linalg.norm(vector))
        enrolled.models.add(model)
    if not enrolled.ids and not problems:
        problems.append("the input holds no embeddings")
    if problems:
        raise BuildError(problems)
    return enrolled


def hygiene(ids: list[str], vectors: np.ndarray, model: str, block: int = 4096) -> dict[str, Any]:
    """Ids that look like one person (a template of each matches at ``strict``)
    and templates of one id that match none of that id's others at ``lenient``."""
    points = operating_points_for(pack_of(model, "buffalo_sc"))
    strict, lenient = points[OperatingPoint.STRICT.value], points[OperatingPoint.LENIENT.value]
    codes = np.unique(np.array(ids, dtype=object), return_inverse=True)[1]
    pairs: dict[tuple[str, str], float] = {}
    for start in range(0, len(vectors), block):
        sims = vectors[start : start + block] @ vectors.T
        rows, cols = np.nonzero(sims >= strict)
        for r, c in zip((rows + start).tolist(), cols.tolist(), strict=True):
            if c > r and codes[r] != codes[c]:
                first, second = sorted((ids[r], ids[c]))
                pairs[first, second] = max(pairs.get((first, second), -1.0), float(sims[r - start, c]))
    by_id: dict[str, list[int]] = defaultdict(list)
    for index, ref_id in enumerate(ids):
        by_id[ref_id].append(index)
    outliers = []
    for ref_id, members in by_id.items():
        if len(members) < 2:
            continue
        own = vectors[members] @ vectors[members].T
        np.fill_diagonal(own, -1.0)
        for position in range(len(members)):
            best = float(own[position].max())
            if best < lenient:
                outliers.append({"id": ref_id, "template": position, "best_similarity": round(best, 4)})
    return {
        "strict_threshold": strict,
        "lenient_threshold": lenient,
        "same_face_under_two_ids": [
            {"ids": list(key), "similarity": round(sim, 4)}
            for key, sim in sorted(pairs.items(), key=lambda kv: -kv[1])
        ],
        "templates_unlike_their_id": outliers,
    }


def build(
    source: Path,
    output: Path,
    *,
    exact_limit: int = EXACT_LIMIT,
    check_hygiene: bool | None = None,
) -> dict[str, Any]:
    """Write the snapshot; return its header and the hygiene report (or None)."""
    enrolled = read_enrolled(source)
    vectors = np.stack(enrolled.rows).astype(np.float32)
    model = next(iter(enrolled.models))
    report = None
    if check_hygiene or (check_hygiene is None and len(vectors) <= HYGIENE_DEFAULT_LIMIT):
        report = hygiene(enrolled.ids, vectors, model)
    blob, info = index_for(vectors, exact_limit)
    built_at = datetime.now(UTC).isoformat(timespec="seconds")
    header = write_snapshot(
        output,
        model=model,
        ids=enrolled.ids,
        vectors=vectors,
        built_at=built_at,
        index_blob=blob,
        index_info=info,
    )
    return {"snapshot": header, "hygiene": report}
