"""FaceEngine: detection, face selection and recognition tied together.

Only a pack's detector and recogniser are ever loaded: the landmark and
attribute models in a buffalo pack cost memory and cold-start time and
contribute nothing to an embedding.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import ErrorCode, ServiceError
from ..models import PackError, get_pack, model_tag
from .detector import Detections, Detector
from .graph import open_rewritten
from .quality import assess
from .recognizer import Recognizer
from .runtime import ModelLoadError, create_shared_pool, providers_for
from .selection import FaceOptions, select_faces
from .types import FaceEmbedding, PreparedFace, Span, no_span

logger = logging.getLogger(__name__)

# SCRFD finds a face reliably when its box is at least this many pixels in the
# detector's input: bench/detection_scale.py measured every face of the group
# photos and of synthetic class photos found again at 11-12 px and up (at 8-10
# px, 60-90 %). A coarse pass never goes below MIN_DETECTION_SIZE.
DETECTOR_FLOOR_PX = 12
MIN_DETECTION_SIZE = 160
# A face smaller than this in a coarse pass's input gets its landmarks measured
# again on a finer crop (``refine``): at 640 the same face would have had more
# pixels for its landmarks (bench/detection_scale.py, "landmarks").
REFINE_BELOW_PX = 48

# Crops per recogniser run. Measured on 2 cores (bench.worst_requests, BENCHMARKS
# "Worst admitted request"): 256 crops take the same time at 8, 16 or 64 a run
# (3.3-3.6 s), but ONNX Runtime's activations for 64 add ~456 MB to the peak
# against ~116 MB for 16; 22 crops (a team photo) take 0.87x the time at 16.
RECOGNISER_BATCH = 16


class FaceEngine:
    """Detection plus recognition with the service's face-selection policy."""

    def __init__(
        self,
        detector: Detector,
        recognizer: Recognizer,
        *,
        model_name: str,
        device: str,
        det_size: int = 640,
        det_retry_size: int = 160,
        threshold: float = 0.5,
        span: Span = no_span,
        model_tag: str | None = None,
    ) -> None:
        self.detector = detector
        self.recognizer = recognizer
        self.model_name = model_name
        # Identifies the pack and the recogniser file: embeddings of different
        # tags must never be compared (docs/decisions.md#model-identity).
        self.model_tag = model_tag or f"{model_name}/unverified"
        self.device = device
        self.det_size = det_size
        self.det_retry_size = det_retry_size
        self.threshold = threshold
        self.span = span
        # The smallest face counted (the shorter side of its box, in the pixels
        # of the image given), and whether the detector may look at the
        # coarsest scale that still finds it (detection_size).
        self.min_face_size = 0
        self.coarse_detection = False

    @classmethod
    def load(
        cls,
        model_path: Path,
        *,
        device: str = "cpu",
        threads: int = 1,
        det_size: int = 640,
        det_retry_size: int = 160,
        threshold: float = 0.5,
        span: Span = no_span,
        rewrite: bool = True,
    ) -> FaceEngine:
        """Open the pack in ``model_path`` (a folder named after the pack).
        ``rewrite``: on the CPU, run both networks' graphs rewritten for ONNX
        Runtime's kernels (``graph.cpu_graph``: the same functions, faster)."""
        model_name = model_path.name
        try:
            pack = get_pack(model_name)
        except PackError as exc:
            raise ModelLoadError(str(exc)) from None
        missing = [f for f in pack.files if not (model_path / f).is_file()]
        if missing:
            how = (
                f"'python -m face_recognition_service.provision {model_name}'"
                if model_name == "buffalo_sc"
                else f"'MODEL_SOURCE=/path/to/{model_name}.zip MODEL_NAME={model_name} make run' (or "
                f"'python -m face_recognition_service.provision {model_name} --source /path/to/{model_name}.zip')"
            )
            raise ModelLoadError(
                f"model pack {model_name!r} is not installed in {model_path.parent} "
                f"(missing {', '.join(missing)}); provision it with {how}"
            )
        providers = providers_for(device)
        threads = create_shared_pool(threads) or threads
        started = time.perf_counter()
        detector = Detector(open_rewritten(model_path / pack.detector, providers, threads, rewrite))
        recognizer = Recognizer(open_rewritten(model_path / pack.recognizer, providers, threads, rewrite))
        logger.info(
            "model loaded",
            extra={
                "model_name": model_name,
                "device": device,
                "threads": threads,
                "load_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return cls(
            detector,
            recognizer,
            model_name=model_name,
            device=device,
            det_size=det_size,
            det_retry_size=det_retry_size,
            threshold=threshold,
            span=span,
            model_tag=model_tag(model_path, pack),
        )

    @property
    def embedding_size(self) -> int:
        return int(self.recognizer.session.get_outputs()[0].shape[-1])

    def detection_size(self, image_shape: tuple[int, ...], min_face: int) -> int:
        """The detector's input size (longest side): the coarsest at which a face
        of ``min_face`` pixels is still DETECTOR_FLOOR_PX in the detector's input,
        at most DET_SIZE (always DET_SIZE without coarse detection)."""
        if not self.coarse_detection or min_face <= 0:
            return self.det_size
        wanted = -(-max(image_shape[:2]) * DETECTOR_FLOOR_PX // min_face)
        return max(MIN_DETECTION_SIZE, min(self.det_size, -(-wanted // 32) * 32))

    def detect(
        self, image: np.ndarray, threshold: float | None = None, min_face: int | None = None
    ) -> Detections:
        """Every face scoring at least ``threshold`` (default: the setting) and at
        least ``min_face`` pixels (default: the setting), detected at
        ``detection_size``; a second, smaller pass when the first finds nothing
        (frame-filling faces). A face found small in a coarse pass has its
        landmarks measured again at a finer scale (``refine``)."""
        threshold = self.threshold if threshold is None else threshold
        min_face = self.min_face_size if min_face is None else min_face
        size = self.detection_size(image.shape, min_face)
        found, coarse = self._pass(image, size, threshold)
        return self._refined(image, found, size) if coarse else found

    def _pass(self, image: np.ndarray, size: int, threshold: float) -> tuple[Detections, bool]:
        """The detector at ``size``, or at DET_RETRY_SIZE when that finds
        nothing; and whether the faces are a coarse pass's (``_refined``)."""
        with self.span("detect"):
            found = self.detector.detect(image, size, threshold)
            if len(found) == 0 and self.det_retry_size and self.det_retry_size < size:
                return self.detector.detect(image, self.det_retry_size, threshold), False
        return found, size < self.det_size

    def _refined(self, image: np.ndarray, found: Detections, size: int) -> Detections:
        """Landmarks of faces smaller than REFINE_BELOW_PX in a coarse pass's input,
        measured again on a finer crop, so their alignment is as good as at DET_SIZE."""
        scale = size / max(image.shape[:2])
        sides = (
            np.minimum(found.boxes[:, 2] - found.boxes[:, 0], found.boxes[:, 3] - found.boxes[:, 1]) * scale
        )
        small = np.flatnonzero(sides < REFINE_BELOW_PX)
        if small.size == 0:
            return found
        landmarks = found.landmarks.copy()
        for i in small.tolist():
            landmarks[i] = self.refine(image, found.boxes[i], found.landmarks[i])
        return Detections(found.boxes, found.scores, landmarks)

    def embed_single(self, image: np.ndarray) -> FaceEmbedding:
        """The embedding of the one face in ``image``; refuses zero or several faces."""
        return self.embed_faces(image, FaceOptions())[0]

    def select(self, image: np.ndarray, options: FaceOptions) -> tuple[Detections, int]:
        """Detect, then the faces ``options`` ask for (``select_faces``), counted
        and chosen before any embedding, so a refused image costs detection only."""
        threshold = options.detection_threshold if options.detection_threshold is not None else self.threshold
        if options.min_face_size is None:
            options = replace(options, min_face_size=self.min_face_size)
        size = self.detection_size(image.shape, options.min_face_size or 0)
        found, coarse = self._pass(image, size, threshold)
        chosen, total = select_faces(found, options, threshold)
        # Only the faces a request keeps have their landmarks measured again: a
        # group photo's other small faces cost nothing more under ``largest``.
        return (self._refined(image, chosen, size) if coarse else chosen), total

    def prepare(
        self, image: np.ndarray, options: FaceOptions, *, antialias: bool = False
    ) -> tuple[list[PreparedFace], int]:
        """Detect, select and align: what the recogniser needs, without running it,
        and how many faces were found before the cap (``select``).
        The full image is not kept, so many photos can be prepared one after
        another and embedded together (``embed_prepared``). ``antialias``: see
        ``Recognizer.align``."""
        found, total = self.select(image, options)
        return [
            PreparedFace(
                self.align(image, found.landmarks[i], antialias=antialias),
                float(found.scores[i]),
                found.boxes[i],
                found.landmarks[i],
                image.shape[:2],
            )
            for i in range(len(found))
        ], total

    def align(self, image: np.ndarray, landmarks: np.ndarray, *, antialias: bool = False) -> np.ndarray:
        """The recogniser's aligned crop of the face with these five landmarks."""
        return self.recognizer.align(image, landmarks, antialias=antialias)

    def refine(self, image: np.ndarray, box: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Landmarks measured again on a region of a sharper image around a face
        found at low resolution: a face 50 px wide in the detector's input has
        landmarks a pixel or two off, which at four times the resolution would
        misalign the crop. Returns the given landmarks if the region finds no face."""
        x1, y1, x2, y2 = (float(v) for v in box)
        w, h = x2 - x1, y2 - y1
        left, top = max(0, int(x1 - w)), max(0, int(y1 - h))
        right, bottom = min(image.shape[1], int(x2 + w)), min(image.shape[0], int(y2 + h))
        region = image[top:bottom, left:right]
        if region.size == 0:
            return landmarks
        size = min(self.det_size, -(-max(region.shape[:2]) // 32) * 32)
        found = self.detector.detect(region, size, self.threshold)
        if len(found) == 0:
            return landmarks
        centres = found.landmarks.mean(axis=1) + np.array([left, top], np.float32)
        nearest = int(np.argmin(np.linalg.norm(centres - landmarks.mean(axis=0), axis=1)))
        refined: np.ndarray = found.landmarks[nearest] + np.array([left, top], np.float32)
        return refined

    def embed_prepared(self, faces: list[PreparedFace], quality: bool = False) -> list[FaceEmbedding]:
        """Embeddings of prepared faces, RECOGNISER_BATCH crops per network run."""
        out: list[FaceEmbedding] = []
        with self.span("embed"):
            for start in range(0, len(faces), RECOGNISER_BATCH):
                chunk = faces[start : start + RECOGNISER_BATCH]
                vectors, norms = self.recognizer.embed_batch([f.crop for f in chunk])
                for face, vector, norm in zip(chunk, vectors, norms, strict=True):
                    q = None
                    if quality:
                        q = assess(
                            face.landmarks,
                            face.box,
                            face.image_shape,
                            face.detection_score,
                            face.crop,
                            float(norm),
                        )
                    out.append(FaceEmbedding(vector, face.detection_score, face.box, face.landmarks, q))
        return out

    def embed_faces(self, image: np.ndarray, options: FaceOptions) -> list[FaceEmbedding]:
        """Embeddings of the faces ``options`` select, all crops through the
        recogniser in one batched run."""
        return self.embed_prepared(self.prepare(image, options)[0], options.quality)

    def aligned_face(self, crop: np.ndarray) -> PreparedFace:
        """A crop already aligned the ArcFace way (112x112), taken as it is: no detection."""
        size = self.recognizer.size
        if crop.shape[:2] != (size, size):
            raise ServiceError(
                ErrorCode.INVALID_IMAGE,
                "An aligned face must be exactly the recogniser's input size.",
                f"Got {crop.shape[1]}x{crop.shape[0]}; aligned: true needs {size}x{size} "
                "(five-point ArcFace alignment).",
            )
        box = np.array([0.0, 0.0, float(size), float(size)], np.float32)
        return PreparedFace(crop, 1.0, box, self.recognizer.reference.astype(np.float32), crop.shape[:2])

    def warm_up(self) -> None:
        """One pass through both networks so the first request pays no lazy init
        (thread pool start, memory arenas, weight prepacking). A small detector
        input does it as well as a full one, at a fraction of the start-up time."""
        blank = np.full((128, 128, 3), 127, dtype=np.uint8)
        self.detector.detect(blank, 128, self.threshold)
        self.recognizer.embed(np.full((self.recognizer.size, self.recognizer.size, 3), 127, np.uint8))
