"""Can a coarse pass plus a window of the 640 pass's input keep today's
landmarks? For each labelled single-face photo: the 640 pass (today's path),
a 320 pass to find the face, then the detector on a window of the 640 pass's
own input (the same resize, the same zero padding) around that face, its edges
on the network's 32-px grid and ``margin`` pixels of context around the box.
Reports the embeddings' cosine to the 640 path, the landmarks' largest move
and the time of each step (medians).

    .venv/bin/python -m bench.detection_window

Writes bench/results/detection_window.json.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from face_recognition_service.config import Settings
from face_recognition_service.engine import Detector, load_model
from face_recognition_service.imaging import decode_image
from face_recognition_service.provision import provision
from face_recognition_service.testing import labelled_photos

from .common import ROOT

MARGINS = (32, 64, 96, 128, 160)
THRESHOLD = 0.5


def canvas_of(image: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """The detector's input at ``size``, as Detector.detect builds it."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, int(width * scale)), max(1, int(height * scale))
    canvas = np.zeros((-(-new_h // 32) * 32, -(-new_w // 32) * 32, 3), np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h))
    return canvas, new_h / height


def windowed(detector: Detector, image: np.ndarray, box: np.ndarray, margin: int) -> np.ndarray:
    """Landmarks (n, 5, 2) found on a 32-px-aligned window of the 640 input."""
    canvas, scale = canvas_of(image, 640)
    x1, y1, x2, y2 = box * scale
    left, top = max(0, int((x1 - margin) // 32 * 32)), max(0, int((y1 - margin) // 32 * 32))
    right = min(canvas.shape[1], int(-(-(x2 + margin) // 32) * 32))
    bottom = min(canvas.shape[0], int(-(-(y2 + margin) // 32) * 32))
    part = np.ascontiguousarray(canvas[top:bottom, left:right])
    blob = cv2.dnn.blobFromImage(
        part, 1.0 / detector.std, (part.shape[1], part.shape[0]), (detector.mean,) * 3, swapRB=True
    )
    outputs = detector.session.run(detector.output_names, {detector.input_name: blob})
    found = detector._decode(outputs, part.shape[0], part.shape[1], 1.0, THRESHOLD)
    landmarks: np.ndarray = (found.landmarks + np.array([left, top], np.float32)) / scale
    return landmarks


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        provision("buffalo_sc", Path(tmp))
        settings = Settings(_env_file=None, model_dir=Path(tmp), model_name="buffalo_sc", ort_threads=2)  # type: ignore[call-arg]
        engine = load_model(settings.engine).engine
        assert engine is not None
        detector, recognizer = engine.detector, engine.recognizer
        times: dict[str, list[float]] = {"640": [], "320": [], **{f"window_{m}": [] for m in MARGINS}}
        rows: dict[int, list[tuple[float, float]]] = {m: [] for m in MARGINS}
        for photo in labelled_photos(ROOT / "tests" / "data" / "faces", single_face=True):
            image = decode_image(photo.data, 40_000_000)
            started = time.perf_counter()
            full = detector.detect(image, 640, THRESHOLD)
            times["640"].append(time.perf_counter() - started)
            started = time.perf_counter()
            coarse = detector.detect(image, 320, THRESHOLD)
            times["320"].append(time.perf_counter() - started)
            reference = full.landmarks[int(np.argmax(full.areas))]
            embedding = recognizer.embed_batch([recognizer.align(image, reference)])[0][0]
            box = coarse.boxes[int(np.argmax(coarse.areas))]
            for margin in MARGINS:
                started = time.perf_counter()
                found = windowed(detector, image, box, margin)
                times[f"window_{margin}"].append(time.perf_counter() - started)
                nearest = found[int(np.argmin(np.linalg.norm(found.mean(1) - reference.mean(0), axis=1)))]
                moved = recognizer.embed_batch([recognizer.align(image, nearest)])[0][0]
                rows[margin].append((float(moved @ embedding), float(np.abs(nearest - reference).max())))
        results: dict[str, Any] = {
            "command": ".venv/bin/python -m bench.detection_window",
            "date": time.strftime("%Y-%m-%d"),
            "photos": len(rows[MARGINS[0]]),
            "median_ms": {k: round(float(np.median(v)) * 1000, 2) for k, v in times.items()},
            "margins": {
                str(m): {
                    "cosine_min": round(min(c for c, _ in r), 5),
                    "cosine_median": round(float(np.median([c for c, _ in r])), 5),
                    "landmark_max_px": round(max(d for _, d in r), 3),
                }
                for m, r in rows.items()
            },
        }
    out = ROOT / "bench" / "results" / "detection_window.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
