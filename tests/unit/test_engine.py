"""Detection, alignment and embedding on the real buffalo_sc model and real photos."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from face_recognition_service.engine import (
    FaceEngine,
    ModelLoadError,
    load_model,
    providers_for,
    session_options,
    similarity_transform,
)
from face_recognition_service.errors import ErrorCode, ServiceError
from face_recognition_service.imaging import decode_image
from tests.support.helpers import (
    FACES,
    cosine,
    encode,
    make_settings,
    no_face_image,
    read,
    single_face_photos,
    with_exif_orientation,
)

MAX_PIXELS = 40_000_000


def embed_file(engine: FaceEngine, name: str) -> np.ndarray:
    return engine.embed_single(decode_image(read(name), MAX_PIXELS)).embedding


@pytest.fixture(scope="module")
def embeddings(engine: FaceEngine) -> dict[str, tuple[str, np.ndarray]]:
    return {p.path.name: (p.person, embed_file(engine, p.path.name)) for p in single_face_photos()}


def test_embedding_is_512_unit_float32(embeddings: dict[str, tuple[str, np.ndarray]]) -> None:
    for _, vector in embeddings.values():
        assert vector.shape == (512,) and vector.dtype == np.float32
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_same_person_pairs_are_closer_than_every_different_person_pair(
    embeddings: dict[str, tuple[str, np.ndarray]],
) -> None:
    same: list[tuple[float, str, str]] = []
    different: list[tuple[float, str, str]] = []
    for (a, (pa, va)), (b, (pb, vb)) in itertools.combinations(embeddings.items(), 2):
        if {a, b} == {"obama_1.jpg", "obama_240p.jpg"} or {a, b} == {"obama_2.jpg", "rgba_32bit.png"}:
            continue  # the same photograph twice says nothing about identity
        (same if pa == pb else different).append((cosine(va, vb), a, b))
    assert len(same) >= 10 and len(different) >= 100
    worst_same = min(same)
    best_different = max(different)
    assert worst_same[0] > best_different[0], (worst_same, best_different)
    # And with a margin that a threshold can sit in.
    assert worst_same[0] - best_different[0] > 0.1


def test_two_people_is_refused_before_embedding(engine: FaceEngine) -> None:
    with pytest.raises(ServiceError) as err:
        engine.embed_single(decode_image(read("two_people.jpg"), MAX_PIXELS))
    assert err.value.code is ErrorCode.MULTIPLE_FACES_DETECTED
    assert err.value.faces == 2


def test_group_photo_counts_every_face(engine: FaceEngine) -> None:
    found = engine.detect(decode_image(read("obama_and_biden.jpg"), MAX_PIXELS))
    assert len(found) == 3


def test_image_without_a_face(engine: FaceEngine) -> None:
    with pytest.raises(ServiceError) as err:
        engine.embed_single(no_face_image())
    assert err.value.code is ErrorCode.NO_FACE_DETECTED


def test_rgba_png_matches_its_plain_jpeg(embeddings: dict[str, tuple[str, np.ndarray]]) -> None:
    assert cosine(embeddings["rgba_32bit.png"][1], embeddings["obama_2.jpg"][1]) >= 0.99


def test_exif_rotated_jpeg_matches_upright(engine: FaceEngine) -> None:
    upright = decode_image(read("obama_1.jpg"), MAX_PIXELS)
    # Stored rotated 90 degrees counter-clockwise, tagged "rotate 90 CW to display" (6).
    stored = cv2.rotate(upright, cv2.ROTATE_90_COUNTERCLOCKWISE)
    tagged = with_exif_orientation(encode(stored, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95]), 6)
    decoded = decode_image(tagged, MAX_PIXELS)
    assert decoded.shape == upright.shape
    reference = engine.embed_single(upright).embedding
    assert cosine(engine.embed_single(decoded).embedding, reference) >= 0.99
    # Without the tag the face is sideways: proof the tag, not luck, did the work.
    sideways = decode_image(encode(stored, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95]), MAX_PIXELS)
    assert sideways.shape != upright.shape


@pytest.mark.parametrize("ext", [".png", ".webp", ".bmp"])
def test_other_formats_give_the_same_embedding(engine: FaceEngine, ext: str) -> None:
    image = decode_image(read("obama_1.jpg"), MAX_PIXELS)
    params = [cv2.IMWRITE_WEBP_QUALITY, 101] if ext == ".webp" else []
    again = decode_image(encode(image, ext, params), MAX_PIXELS)
    assert cosine(engine.embed_single(again).embedding, engine.embed_single(image).embedding) >= 0.99


def test_sixteen_bit_and_grey_png(engine: FaceEngine) -> None:
    image = decode_image(read("obama_1.jpg"), MAX_PIXELS)
    deep = decode_image(encode(image.astype(np.uint16) * 257, ".png"), MAX_PIXELS)
    assert deep.dtype == np.uint8 and deep.shape == image.shape
    assert cosine(engine.embed_single(deep).embedding, engine.embed_single(image).embedding) >= 0.99
    grey = decode_image(encode(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), ".png"), MAX_PIXELS)
    assert grey.shape == image.shape
    # A grey photo is a different input, but still the same person.
    assert cosine(engine.embed_single(grey).embedding, engine.embed_single(image).embedding) >= 0.8


def test_face_filling_the_frame_is_found_by_the_retry(engine: FaceEngine) -> None:
    image = decode_image(read("obama_1.jpg"), MAX_PIXELS)
    x1, y1, x2, y2 = engine.detect(image).boxes[0].astype(int)
    tight = np.ascontiguousarray(image[max(0, y1 - 5) : y2 + 5, max(0, x1 - 5) : x2 + 5])
    found_first_pass = engine.detector.detect(tight, engine.det_size, engine.threshold)
    assert len(found_first_pass) == 0, "the crop no longer shows the known miss at the main size"
    face = engine.embed_single(tight)
    assert cosine(face.embedding, engine.embed_single(image).embedding) >= 0.7


def test_parity_with_insightface_face_analysis(
    model_dir: Path, engine: FaceEngine, embeddings: dict[str, tuple[str, np.ndarray]]
) -> None:
    from insightface.app import FaceAnalysis

    # Its sessions join this process's shared ORT thread pool (ORT requires it);
    # numerics are unaffected by threading.
    reference = FaceAnalysis(
        name=str(model_dir / "buffalo_sc"),
        providers=["CPUExecutionProvider"],
        sess_options=session_options(2),
    )
    reference.prepare(ctx_id=-1, det_size=(640, 640), det_thresh=0.5)
    for name, (_, ours) in embeddings.items():
        faces = reference.get(decode_image(read(name), MAX_PIXELS))
        assert len(faces) == 1, name
        assert cosine(ours, faces[0].normed_embedding) >= 0.99, name
        ours_score = engine.embed_single(decode_image(read(name), MAX_PIXELS)).detection_score
        assert abs(ours_score - float(faces[0].det_score)) < 0.02, name


def test_alignment_matches_scikit_image() -> None:
    from skimage.transform import SimilarityTransform

    rng = np.random.default_rng(0)
    src = rng.uniform(0, 500, (5, 2))
    dst = rng.uniform(0, 112, (5, 2))
    tform = SimilarityTransform()  # type: ignore[no-untyped-call]
    tform.estimate(src, dst)
    np.testing.assert_allclose(similarity_transform(src, dst), tform.params[:2], atol=1e-6)


def test_missing_pack_is_a_state_not_a_crash(tmp_path: Path) -> None:
    state = load_model(make_settings(tmp_path).engine)
    assert state.engine is None
    assert state.error is not None and "provision" in state.error


def test_unknown_pack_is_named(tmp_path: Path) -> None:
    state = load_model(make_settings(tmp_path, model_name="antelope_zzz").engine)
    assert state.engine is None and "unknown model pack" in (state.error or "")


def test_corrupt_model_file_is_reported(tmp_path: Path) -> None:
    pack = tmp_path / "buffalo_sc"
    pack.mkdir()
    (pack / "det_500m.onnx").write_bytes(b"not a model")
    (pack / "w600k_mbf.onnx").write_bytes(b"not a model")
    state = load_model(make_settings(tmp_path).engine)
    assert state.engine is None and "det_500m.onnx" in (state.error or "")


def test_cuda_without_gpu_runtime_says_so() -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert providers_for("cuda")[0] == "CUDAExecutionProvider"
        return
    with pytest.raises(ModelLoadError, match="onnxruntime-gpu"):
        providers_for("cuda")


def test_labels_cover_the_copied_photos() -> None:
    listed = {p.path.name for p in single_face_photos()}
    assert {"obama_1.jpg", "biden_1.jpg", "rgba_32bit.png"} <= listed
    assert all((FACES / name).is_file() for name in listed)


@pytest.mark.parametrize("size", [(480, 640), (640, 512), (37, 61), (640, 640)])
def test_detector_input_is_exactly_what_blob_from_image_makes(
    engine: FaceEngine, size: tuple[int, int]
) -> None:
    """The detector's own input (a table lookup per plane, padded in place) is
    bit for bit OpenCV's blobFromImage of the black-padded image."""
    image = decode_image(read("obama_1.jpg"), 40_000_000)
    resized = cv2.resize(image, (size[1], size[0]))
    pad_h, pad_w = -(-size[0] // 32) * 32, -(-size[1] // 32) * 32
    canvas = np.zeros((pad_h, pad_w, 3), np.uint8)
    canvas[: size[0], : size[1]] = resized
    expected = cv2.dnn.blobFromImage(canvas, 1 / 128.0, (pad_w, pad_h), (127.5,) * 3, swapRB=True)
    assert np.array_equal(engine.detector.blob(resized, pad_h, pad_w), expected)
