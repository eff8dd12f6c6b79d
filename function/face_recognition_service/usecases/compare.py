"""Compare: a query embedding ranked against references. Both of the HTTP
route's parse paths (``api.compare_parser``) meet here, as arrays; ranking,
optional grouping by id and the model check happen once, for both."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..matching import DistanceMetric, best_per_id, check_models, distance_of, rank


@dataclass(frozen=True)
class CompareArrays:
    query: np.ndarray
    ids: list[str]
    references: np.ndarray
    metric: DistanceMetric
    query_model: str | None = None
    models: list[str | None] = field(default_factory=list)
    group_by_id: bool = False


def compare(arrays: CompareArrays) -> dict[str, Any]:
    check_models(arrays.query_model, arrays.models)
    ranking = rank(arrays.query, arrays.references, arrays.metric)
    ids = arrays.ids
    if arrays.group_by_id:
        ordered_ids = [ids[i] for i in ranking.order.tolist()]
        persons = best_per_id(ordered_ids, ranking.similarities)
        distances = distance_of(persons.similarities, arrays.metric)
        matches: list[dict[str, Any]] = [
            {"id": pid, "distance": d, "similarity": s, "templates": n}
            for pid, d, s, n in zip(
                persons.ids, distances.tolist(), persons.similarities.tolist(), persons.templates, strict=True
            )
        ]
    else:
        matches = [
            {"id": ids[i], "distance": d, "similarity": s}
            for i, d, s in zip(
                ranking.order.tolist(), ranking.distances.tolist(), ranking.similarities.tolist(), strict=True
            )
        ]
    return {"matches": matches, "best_match": matches[0], "distance_metric": arrays.metric.value}
