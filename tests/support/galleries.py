"""Gallery helpers shared by the identification tests: real enrolled people,
synthetic strangers, JSON Lines input for the builder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson

from face_recognition_service.config import Settings
from face_recognition_service.engine import FaceEngine
from face_recognition_service.faces import EmbedOptions, find_faces
from face_recognition_service.matching import encode_embedding

from .helpers import read

# Enrolled: one photo each. Not enrolled: alex_lacamoire.
ENROLLED = {
    "barack_obama": "obama_1.jpg",
    "joe_biden": "biden_1.jpg",
    "kit_harington": "kit_harington_1.jpg",
    "rose_leslie": "rose_leslie_1.jpg",
    "lin_manuel_miranda": "lin_manuel_miranda.png",
}


def embedding_of(engine: FaceEngine, settings: Settings, name: str) -> np.ndarray:
    faces, _ = find_faces(read(name), engine, settings.images, EmbedOptions())
    return faces[0].embedding


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"\n".join(orjson.dumps(r, option=orjson.OPT_SERIALIZE_NUMPY) for r in rows) + b"\n")
    return path


def distractors(count: int, tag: str, seed: int = 7) -> list[dict[str, Any]]:
    """Random unit vectors: people nobody will look for (synthetic, for size only)."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        {"id": f"synthetic-{i}", "embedding": encode_embedding(v), "model": tag}
        for i, v in enumerate(vectors)
    ]
