"""Large JPEGs are decoded at a DCT reduction for detection (engine input is
640 px anyway) and only small faces cost a finer decode; answers stay in the
original photo's pixels and embeddings stay those of the photo."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from face_recognition_service.config import Settings
from face_recognition_service.engine import FaceEngine
from face_recognition_service.faces import EmbedOptions, find_faces, prepare_faces
from face_recognition_service.imaging import area_reduce, dct_scalable, decode_image, probe, reduction
from face_recognition_service.testing import phone_size_jpeg
from face_recognition_service.timing import Stages
from tests.support.helpers import encode, make_settings, read, with_exif_orientation


def big_jpeg(name: str, megapixels: float) -> bytes:
    return phone_size_jpeg(read(name), megapixels)


def test_reduction_keeps_the_detector_input(engine: FaceEngine) -> None:
    assert reduction(probe(big_jpeg("obama_1.jpg", 24)), engine.det_size) == 8
    assert reduction(probe(big_jpeg("obama_1.jpg", 12)), engine.det_size) == 4
    assert reduction(probe(read("obama_small.jpg")), engine.det_size) == 1
    # Any format: a PNG is decoded in full and area-averaged to the same size.
    png = probe(encode(np.zeros((3000, 4000, 3), np.uint8), ".png"))
    assert reduction(png, engine.det_size) == 4 and not dct_scalable(png)
    assert dct_scalable(probe(big_jpeg("obama_1.jpg", 12)))


def test_a_phone_size_photo_embeds_like_the_original(engine: FaceEngine, model_dir: Path) -> None:
    settings = make_settings(model_dir, max_image_size=50_000_000)
    original = find_faces(read("obama_1.jpg"), engine, settings.images, EmbedOptions())[0][0]
    data = big_jpeg("obama_1.jpg", 24)
    stages = Stages()
    stages.enabled = True
    prepared, _ = prepare_faces(data, engine, settings.images, EmbedOptions(), stages)
    assert stages.values["reduced"] == 8 and "decode_finer" not in stages.values
    face = engine.embed_prepared(prepared)[0]
    assert float(face.embedding @ original.embedding) > 0.98
    # Box and landmarks in the big photo's own pixels.
    info = probe(data)
    scale = info.width / decode_image(read("obama_1.jpg"), 10**9).shape[1]
    np.testing.assert_allclose(face.box, original.box * scale, rtol=0.05, atol=20)
    full = settings.model_copy(update={"reduced_decode": False})
    reference = find_faces(data, engine, full.images, EmbedOptions())[0][0]
    assert float(face.embedding @ reference.embedding) > 0.97


# How a phone stores a photo taken in another orientation: the pixels as the
# sensor read them, and the EXIF tag that says how to turn them for display.
STORED_AS = {
    6: cv2.ROTATE_90_COUNTERCLOCKWISE,  # "rotate 90 CW to display"
    8: cv2.ROTATE_90_CLOCKWISE,
    3: cv2.ROTATE_180,
}


def stored_by_a_phone(upright: np.ndarray, orientation: int) -> bytes:
    if orientation == 1:
        return encode(upright, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 92])
    stored = encode(cv2.rotate(upright, STORED_AS[orientation]), ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 92])
    return with_exif_orientation(stored, orientation)


def test_a_phone_photo_stored_sideways_is_turned_after_the_reduced_decode(
    engine: FaceEngine, model_dir: Path
) -> None:
    settings = make_settings(model_dir, max_image_size=50_000_000)
    upright = decode_image(big_jpeg("obama_1.jpg", 12), 10**9)
    expected = find_faces(stored_by_a_phone(upright, 1), engine, settings.images, EmbedOptions())[0][0]
    for orientation in STORED_AS:
        stages = Stages()
        stages.enabled = True
        data = stored_by_a_phone(upright, orientation)
        assert probe(data).orientation == orientation
        prepared, _ = prepare_faces(data, engine, settings.images, EmbedOptions(), stages)
        # Only the 1/4 decode was turned: no full-size pixels were decoded or rotated.
        assert stages.values["reduced"] == 4 and "decode_finer" not in stages.values
        assert prepared[0].image_shape == upright.shape[:2]
        face = engine.embed_prepared(prepared)[0]
        np.testing.assert_allclose(face.box, expected.box, atol=8)
        assert face.landmarks is not None and expected.landmarks is not None
        np.testing.assert_allclose(face.landmarks, expected.landmarks, atol=8)
        assert float(face.embedding @ expected.embedding) > 0.99, orientation


LEFT, TOP = 2900, 1500


def portrait_in_a_24mp_frame() -> tuple[np.ndarray, int]:
    """obama_1.jpg (eyes ~107 px apart) at (LEFT, TOP) in a grey 6000 x 4000
    frame, and the portrait's width."""
    face = decode_image(read("obama_1.jpg"), 10**9)
    canvas = np.full((4000, 6000, 3), 110, np.uint8)
    canvas[TOP : TOP + face.shape[0], LEFT : LEFT + face.shape[1]] = face
    return canvas, face.shape[1]


@pytest.mark.parametrize("orientation", [1, 6])
def test_a_small_face_in_a_big_photo_gets_a_finer_decode(
    engine: FaceEngine, model_dir: Path, orientation: int
) -> None:
    settings: Settings = make_settings(model_dir, max_image_size=50_000_000)
    # A portrait (eyes ~107 px apart) in a 24 MP frame: at 1/8 its eyes are 13 px
    # apart, too few for a 112 px crop, so it is aligned from a 1/2 decode (also
    # when the phone stored the frame sideways: both decodes are turned upright).
    canvas, face_width = portrait_in_a_24mp_frame()
    data = stored_by_a_phone(canvas, orientation)
    stages = Stages()
    stages.enabled = True
    prepared, _ = prepare_faces(data, engine, settings.images, EmbedOptions(), stages)
    assert stages.values["reduced"] == 8 and stages.values["finer"] == 2
    small = engine.embed_prepared(prepared)[0]
    alone = find_faces(read("obama_1.jpg"), engine, settings.images, EmbedOptions())[0][0]
    full = find_faces(
        data, engine, settings.model_copy(update={"reduced_decode": False}).images, EmbedOptions()
    )[0][0]
    ours, theirs = float(small.embedding @ alone.embedding), float(full.embedding @ alone.embedding)
    # As close to the portrait on its own as the full-resolution pipeline gets, or closer.
    assert ours > 0.97 and ours >= theirs - 0.005, (ours, theirs)
    assert LEFT <= small.box[0] <= LEFT + face_width


@pytest.mark.parametrize("ext", [".png", ".bmp"])
def test_a_big_photo_embeds_alike_whichever_container_it_comes_in(
    engine: FaceEngine, model_dir: Path, ext: str
) -> None:
    """The same pixels as a JPEG (decoded at 1/4) and as a PNG or BMP (decoded
    in full, area-averaged to 1/4): the same face, the same embedding. Cropped
    at full size instead (REDUCED_DECODE=false, FaceAnalysis's way) this photo
    lands at 0.95 to the JPEG and moves to 0.952 against itself when the
    pixels lose one column: a 800 px face warped to 112 px aliases."""
    settings = make_settings(model_dir, max_image_size=60_000_000)
    jpeg = big_jpeg("alex_lacamoire_2.jpg", 12)
    pixels = decode_image(jpeg, 10**9)
    other = encode(pixels, ext, [cv2.IMWRITE_PNG_COMPRESSION, 1] if ext == ".png" else None)
    stages = Stages()
    stages.enabled = True
    prepared, _ = prepare_faces(other, engine, settings.images, EmbedOptions(), stages)
    assert stages.values["reduced"] == 4 and "decode_finer" not in stages.values
    assert prepared[0].image_shape == pixels.shape[:2]
    face = engine.embed_prepared(prepared)[0]
    expected = find_faces(jpeg, engine, settings.images, EmbedOptions())[0][0]
    np.testing.assert_allclose(face.box, expected.box, atol=8)
    assert face.landmarks is not None and expected.landmarks is not None
    np.testing.assert_allclose(face.landmarks, expected.landmarks, atol=6)
    assert float(face.embedding @ expected.embedding) > 0.99
    narrower = encode(np.ascontiguousarray(pixels[:, :-1]), ext)
    assert (
        float(find_faces(narrower, engine, settings.images, EmbedOptions())[0][0].embedding @ face.embedding)
        > 0.99
    )
    # REDUCED_DECODE=false keeps the full-size crop for every format.
    legacy = settings.model_copy(update={"reduced_decode": False})
    stages = Stages()
    stages.enabled = True
    full_size = find_faces(other, engine, legacy.images, EmbedOptions(), stages)[0][0]
    assert stages.values["reduced"] == 1 and float(full_size.embedding @ face.embedding) < 0.98


def test_a_small_face_in_a_big_png_is_cropped_from_the_full_pixels(
    engine: FaceEngine, model_dir: Path
) -> None:
    """A PNG is not decoded twice: its full-size pixels serve the finer crop."""
    settings = make_settings(model_dir, max_image_size=80_000_000)
    canvas, face_width = portrait_in_a_24mp_frame()
    stages = Stages()
    stages.enabled = True
    data = encode(canvas, ".png", [cv2.IMWRITE_PNG_COMPRESSION, 1])
    small = engine.embed_prepared(prepare_faces(data, engine, settings.images, EmbedOptions(), stages)[0])[0]
    assert stages.values["reduced"] == 8 and stages.values["finer"] == 2
    as_jpeg = find_faces(stored_by_a_phone(canvas, 1), engine, settings.images, EmbedOptions())[0][0]
    assert float(small.embedding @ as_jpeg.embedding) > 0.99
    assert LEFT <= small.box[0] <= LEFT + face_width


def test_the_antialiased_crop_keeps_the_landmarks_where_they_are(engine: FaceEngine) -> None:
    """Where the face is no more than twice the crop's size the crop is the
    plain warp; where it is larger, the region is area-averaged first. On a
    smooth (upsampled) face there is nothing to alias, so both crops must match
    pixel for pixel but for rounding: a half-pixel slip in the landmarks'
    mapping would show as edges that do not line up."""
    recognizer = engine.recognizer
    small = decode_image(read("obama_small.jpg"), 10**9)
    found = engine.embed_single(small)
    assert found.landmarks is not None
    for factor in (1, 2, 3, 5, 8):
        smooth = cv2.resize(small, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
        landmarks = (found.landmarks + 0.5) * factor - 0.5
        plain = recognizer.align(smooth, landmarks).astype(np.int16)
        antialiased = recognizer.align(smooth, landmarks, antialias=True).astype(np.int16)
        difference = float(np.abs(plain - antialiased).mean())
        if factor == 1:  # the warp shrinks this face 1.3-fold: a plain warp either way
            assert difference == 0.0
        else:  # measured 1.1-1.8 grey levels; landmarks half a pixel off: 4.6-6.4
            assert 0.0 < difference < 2.5, (factor, difference)


def test_a_big_face_is_cropped_without_aliasing(engine: FaceEngine, model_dir: Path) -> None:
    """At 1/4 this 12 MP photo's face is still ~200 px wide: warped straight to
    112 px, the crop samples a fraction of the pixels and moves when the photo
    moves by a few pixels (cosine 0.978 between the photo and itself shifted by
    3 px and saved again); averaged over 2 x 2 blocks first, it holds (0.994)."""
    settings = make_settings(model_dir, max_image_size=60_000_000)
    pixels = decode_image(big_jpeg("alex_lacamoire_2.jpg", 12), 10**9)
    saved = encode(pixels, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 92])
    moved = encode(np.ascontiguousarray(pixels[3:, 3:]), ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 92])
    a, b = (
        find_faces(data, engine, settings.images, EmbedOptions())[0][0].embedding for data in (saved, moved)
    )
    assert float(a @ b) > 0.99


def test_area_reduce_rounds_up_as_libjpeg_does() -> None:
    assert area_reduce(np.zeros((3001, 4001, 3), np.uint8), 4).shape == (751, 1001, 3)
