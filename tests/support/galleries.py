"""Gallery helpers shared by the identification tests: real enrolled people,
synthetic strangers, JSON Lines input for the builder."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


def enrolled_rows(engine: FaceEngine, settings: Settings) -> list[dict[str, Any]]:
    """The builder's input lines for ENROLLED: one real embedding each."""
    return [
        {"id": person, "embedding": embedding_of(engine, settings, photo).tolist(), "model": engine.model_tag}
        for person, photo in ENROLLED.items()
    ]


def grid_jpeg(side: int = 11) -> bytes:
    """``side`` x ``side`` copies of one small portrait: a class photo of
    side² faces (121 by default, over the 100 one request embeds)."""
    import cv2

    tile = cv2.imread(str(Path(__file__).resolve().parents[1] / "data" / "faces" / "obama_small.jpg"))
    assert tile is not None
    ok, encoded = cv2.imencode(".jpg", np.tile(tile, (side, side, 1)))
    assert ok
    return encoded.tobytes()


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


def newer_answer(ask: Callable[[], Any], old_hash: str, timeout: float = 30.0) -> dict[str, Any]:
    """The first answer from a version other than ``old_hash``: a replaced
    snapshot is loaded in the background while the old version answers.
    Every answer until then must come from the old version whole."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = ask().json()
        if body["gallery"]["hash"] != old_hash or time.monotonic() > deadline:
            return body
        time.sleep(0.02)


@contextmanager
def quick_index() -> Iterator[None]:
    """PQ indexes built meanwhile learn their rotation in 2 iterations, not 20
    (1.2 s, not 9 s, at 1,100 rows): for tests of what an index is (its
    layout, exact re-scoring, refusals), not of how well it finds rows."""
    import pytest

    from face_recognition_service.gallery import search

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(search, "ROTATION_ITERATIONS", 2)
        yield
