"""Quality verdicts (engine/quality.py) on the labelled photos and on degraded
copies made here: each degradation lowers the score and names its reason; the
untouched photos are not poor; min_quality turns a poor photo into LOW_QUALITY."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from face_recognition_service.engine import FaceEngine, FaceOptions, FaceSelection, Quality
from face_recognition_service.errors import ErrorCode, ServiceError
from face_recognition_service.imaging import decode_image
from tests.support.helpers import assert_error, b64, encode, read, single_face_photos

PHOTOS = [p.name for p in single_face_photos()]


def quality_of(engine: FaceEngine, image: np.ndarray) -> Quality:
    # The largest face: a degraded photo can also show a spurious small detection.
    # Every face counts (min_face_size 0): a shrunk face is judged, not dropped.
    faces = engine.embed_faces(
        image, FaceOptions(selection=FaceSelection.LARGEST, quality=True, min_face_size=0)
    )
    assert faces[0].quality is not None
    return faces[0].quality


def _eyes(engine: FaceEngine, image: np.ndarray) -> tuple[np.ndarray, float]:
    landmarks = engine.detect(image).landmarks[0]
    return landmarks, float(np.linalg.norm(landmarks[1] - landmarks[0]))


def blur(engine: FaceEngine, image: np.ndarray) -> np.ndarray:
    _, iod = _eyes(engine, image)
    return cv2.GaussianBlur(image, (0, 0), max(2.0, iod / 10))


def darken(engine: FaceEngine, image: np.ndarray) -> np.ndarray:
    return (image.astype(np.float32) * 0.12).astype(np.uint8)


def shrink(engine: FaceEngine, image: np.ndarray) -> np.ndarray:
    _, iod = _eyes(engine, image)
    scale = 10.0 / iod  # eyes ten pixels apart: a face a few dozen pixels wide
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    # Back on a canvas the detector can work with, as a distant face in a larger photo.
    canvas = np.full((240, 320, 3), 128, np.uint8)
    h, w = small.shape[:2]
    canvas[: min(h, 240), : min(w, 320)] = small[:240, :320]
    return canvas


def rotate(engine: FaceEngine, image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    side = int(np.hypot(h, w))
    canvas = np.full((side, side, 3), 128, np.uint8)
    canvas[(side - h) // 2 : (side - h) // 2 + h, (side - w) // 2 : (side - w) // 2 + w] = image
    matrix = cv2.getRotationMatrix2D((side / 2, side / 2), 55, 1.0)
    return cv2.warpAffine(canvas, matrix, (side, side), borderValue=(128, 128, 128))


def half_face(engine: FaceEngine, image: np.ndarray) -> np.ndarray:
    landmarks, _ = _eyes(engine, image)
    return image[:, : int(landmarks[2][0])].copy()  # cut at the nose


DEGRADATIONS: dict[str, tuple[Callable[[FaceEngine, np.ndarray], np.ndarray], set[str]]] = {
    "blur": (blur, {"blurry"}),
    "dark": (darken, {"too_dark"}),
    "small": (shrink, {"face_too_small"}),
    "rotated": (rotate, {"pose_roll"}),
    "half": (half_face, {"face_cut_off", "pose_yaw", "low_detection_score"}),
}


@pytest.mark.parametrize("name", PHOTOS)
def test_untouched_photos_are_not_poor(engine: FaceEngine, name: str) -> None:
    quality = quality_of(engine, decode_image(read(name), 40_000_000))
    assert quality.verdict.value != "poor", (name, quality)
    assert 0.0 < quality.score <= 1.0


@pytest.mark.parametrize("degradation", sorted(DEGRADATIONS))
def test_each_degradation_lowers_the_score_with_its_reason(engine: FaceEngine, degradation: str) -> None:
    make, expected = DEGRADATIONS[degradation]
    checked = 0
    for name in PHOTOS:
        image = decode_image(read(name), 40_000_000)
        before = quality_of(engine, image)
        try:
            after = quality_of(engine, make(engine, image))
        except ServiceError as exc:  # a face cut in half or tilted away may not be found at all: also right
            assert exc.code is ErrorCode.NO_FACE_DETECTED and degradation in ("half", "rotated"), (name, exc)
            continue
        assert after.score < before.score, (name, degradation, before, after)
        assert expected & set(after.reasons), (name, degradation, after)
        checked += 1
    # Only a half or tilted face may go undetected; enough faces remain to judge the verdicts.
    assert checked >= (5 if degradation in ("half", "rotated") else len(PHOTOS)), degradation


def test_min_quality_gives_low_quality_with_reasons(client: TestClient) -> None:
    dark = (decode_image(read("obama_1.jpg"), 40_000_000) * 0.12).astype(np.uint8)
    body = assert_error(
        client.post("/api/v1/embed", json={"image": b64(encode(dark, ".jpg")), "min_quality": "acceptable"}),
        422,
        "LOW_QUALITY",
    )
    assert "too_dark" in (body["detail"] or "")
    ok = client.post(
        "/api/v1/embed",
        json={"image": b64(read("obama_1.jpg")), "min_quality": "good", "include": ["quality"]},
    )
    assert ok.status_code == 200 and ok.json()["quality"]["verdict"] == "good"
    assert set(ok.json()["quality"]) >= {
        "score",
        "verdict",
        "reasons",
        "interocular_px",
        "yaw",
        "pitch",
        "roll",
        "sharpness",
        "brightness",
        "contrast",
        "embedding_norm",
    }


def test_quality_is_only_computed_when_asked(client: TestClient) -> None:
    plain = client.post("/api/v1/embed", json={"image": b64(read("obama_1.jpg"))}).json()
    assert "quality" not in plain
