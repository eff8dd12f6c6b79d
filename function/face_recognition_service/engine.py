"""Face detection (SCRFD), 5-point alignment and ArcFace embedding on ONNX Runtime.

Only a pack's detector and recogniser are ever loaded: the landmark and
attribute models in a buffalo pack cost memory and cold-start time and
contribute nothing to an embedding.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from .config import Settings
from .errors import ErrorCode, ServiceError

logger = logging.getLogger(__name__)

Span = Callable[[str], contextlib.AbstractContextManager[object]]


def _no_span(_name: str) -> contextlib.AbstractContextManager[object]:
    return contextlib.nullcontext()


@dataclass(frozen=True)
class ModelPack:
    detector: str
    recognizer: str


# File names inside InsightFace's released packs (the zip files of model_zoo).
MODEL_PACKS: dict[str, ModelPack] = {
    "buffalo_l": ModelPack("det_10g.onnx", "w600k_r50.onnx"),
    "buffalo_m": ModelPack("det_2.5g.onnx", "w600k_r50.onnx"),
    "buffalo_s": ModelPack("det_500m.onnx", "w600k_mbf.onnx"),
    "buffalo_sc": ModelPack("det_500m.onnx", "w600k_mbf.onnx"),
}

# ArcFace's reference landmark positions in a 112x112 crop (InsightFace's arcface_dst).
ARCFACE_REFERENCE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
     [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


class ModelLoadError(RuntimeError):
    """The model pack is missing, incomplete or cannot run on this device."""


@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray  # (n, 4) x1, y1, x2, y2 in image pixels
    scores: np.ndarray  # (n,)
    landmarks: np.ndarray  # (n, 5, 2)

    def __len__(self) -> int:
        return int(self.scores.shape[0])


@dataclass(frozen=True)
class FaceEmbedding:
    embedding: np.ndarray  # (512,) float32, unit length
    detection_score: float
    box: np.ndarray  # (4,)


def providers_for(device: str) -> list[str]:
    available = ort.get_available_providers()
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise ModelLoadError(
                "DEVICE=cuda, but this onnxruntime has no CUDAExecutionProvider "
                f"(available: {', '.join(available)}). Install onnxruntime-gpu with "
                "CUDA and cuDNN libraries, or set DEVICE=cpu."
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


# One intra-op thread pool for the process, shared by the detector and the
# recogniser. With a pool per session, the idle pool's threads spin while the
# other session runs, and on a 2-vCPU function both fight for the same cores.
# Measured here (det + rec, one request): 48 ms with spinning per-session pools,
# 22 ms without spinning, 19.6 ms with one shared pool; see BENCHMARKS.md.
# ONNX Runtime allows it once per process, and once it exists every session in
# the process must use it, so session_options() joins it whenever it is there.
_shared_pool_threads = 0


def create_shared_pool(threads: int) -> int:
    """Create the process-wide pool (first call only); returns its size, 0 if none."""
    global _shared_pool_threads
    if not _shared_pool_threads:
        try:
            from onnxruntime.capi import _pybind_state

            _pybind_state.set_global_thread_pool_sizes(threads, 1)
            _shared_pool_threads = threads
        except (ImportError, AttributeError, RuntimeError):  # an ORT build without it
            logger.warning("no shared ONNX Runtime thread pool; using one per session")
    elif _shared_pool_threads != threads:
        logger.warning("ONNX Runtime pool already has %d threads; %d asked for",
                       _shared_pool_threads, threads)
    return _shared_pool_threads


def session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    if _shared_pool_threads:
        options.use_per_session_threads = False
    else:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    # Spinning keeps cores busy after a run; the next thing to run on them is
    # this request's own Python work (or the other network), so do not spin.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


def open_session(path: Path, providers: list[str], threads: int) -> ort.InferenceSession:
    try:
        session = ort.InferenceSession(str(path), session_options(threads), providers=providers)
    except Exception as exc:  # onnxruntime raises several unrelated types
        raise ModelLoadError(f"{path.name} could not be loaded by ONNX Runtime: {exc}") from exc
    # ONNX Runtime falls back to the CPU on its own when a GPU provider fails to
    # start (missing CUDA or cuDNN libraries); DEVICE=cuda must not do so silently.
    if providers[0] != "CPUExecutionProvider" and session.get_providers()[0] != providers[0]:
        raise ModelLoadError(
            f"{providers[0]} is installed but did not start for {path.name} (check the CUDA and "
            "cuDNN libraries that onnxruntime-gpu needs), or set DEVICE=cpu."
        )
    return session


class Detector:
    """SCRFD with keypoints, as shipped in the buffalo packs."""

    nms_threshold = 0.4
    mean, std = 127.5, 128.0

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name
        outputs = session.get_outputs()
        self.output_names = [o.name for o in outputs]
        self.strides: tuple[int, ...]
        if len(outputs) == 9:
            self.strides, self.anchors = (8, 16, 32), 2
        elif len(outputs) == 15:
            self.strides, self.anchors = (8, 16, 32, 64, 128), 1
        else:
            raise ModelLoadError(
                f"detector has {len(outputs)} outputs; a SCRFD model with keypoints "
                "(9 or 15 outputs) is needed for alignment"
            )
        self.batched = len(outputs[0].shape) == 3
        self._centers: dict[tuple[int, int, int], np.ndarray] = {}

    def detect(self, image: np.ndarray, size: int, threshold: float) -> Detections:
        height, width = image.shape[:2]
        scale = size / max(height, width)
        new_w, new_h = max(1, int(width * scale)), max(1, int(height * scale))
        # Pad only to the network's stride (32), not to a size x size square:
        # the padding is wasted work and SCRFD is fully convolutional.
        pad_w, pad_h = -(-new_w // 32) * 32, -(-new_h // 32) * 32
        canvas = np.zeros((pad_h, pad_w, 3), dtype=np.uint8)
        canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h))
        # Scale from the integer size actually used, as InsightFace does.
        det_scale = new_h / height
        blob = cv2.dnn.blobFromImage(
            canvas, 1.0 / self.std, (pad_w, pad_h), (self.mean,) * 3, swapRB=True
        )
        outputs = self.session.run(self.output_names, {self.input_name: blob})
        return self._decode(outputs, pad_h, pad_w, det_scale, threshold)

    def _decode(
        self, outputs: list[np.ndarray], height: int, width: int, det_scale: float, threshold: float
    ) -> Detections:
        n = len(self.strides)
        scores_all, boxes_all, kps_all = [], [], []
        for i, stride in enumerate(self.strides):
            scores, boxes, kps = outputs[i], outputs[i + n], outputs[i + 2 * n]
            if self.batched:
                scores, boxes, kps = scores[0], boxes[0], kps[0]
            keep = np.flatnonzero(scores.reshape(-1) >= threshold)
            if keep.size == 0:
                continue
            centers = self._anchor_centers(height // stride, width // stride, stride)[keep]
            dist = boxes[keep] * stride
            boxes_all.append(np.hstack([centers - dist[:, :2], centers + dist[:, 2:]]))
            kps_all.append(kps[keep].reshape(-1, 5, 2) * stride + centers[:, None, :])
            scores_all.append(scores.reshape(-1)[keep])
        if not scores_all:
            return Detections(np.empty((0, 4), np.float32), np.empty(0, np.float32),
                              np.empty((0, 5, 2), np.float32))
        scores = np.concatenate(scores_all)
        boxes = np.vstack(boxes_all) / det_scale
        kps = np.vstack(kps_all) / det_scale
        keep_idx = nms(boxes, scores, self.nms_threshold)
        return Detections(boxes[keep_idx].astype(np.float32), scores[keep_idx].astype(np.float32),
                          kps[keep_idx].astype(np.float32))

    def _anchor_centers(self, rows: int, cols: int, stride: int) -> np.ndarray:
        key = (rows, cols, stride)
        centers = self._centers.get(key)
        if centers is None:
            grid = np.stack([*np.mgrid[:rows, :cols][::-1]], axis=-1).astype(np.float32)
            centers = np.repeat((grid * stride).reshape(-1, 2), self.anchors, axis=0)
            if len(self._centers) < 64:
                self._centers[key] = centers
        return centers


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Greedy non-maximum suppression, InsightFace's variant (+1 pixel areas)."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        overlap = inter / (areas[i] + areas[rest] - inter)
        order = rest[overlap <= threshold]
    return keep


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama 1991): the 2x3 matrix taking src to dst.

    The same estimate as scikit-image's SimilarityTransform, without importing it.
    """
    src = src.astype(np.float64)
    dst = dst.astype(np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / src.shape[0]
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0
    rotation = u @ np.diag(d) @ vt
    var = src_c.var(axis=0).sum()
    scale = (s @ d) / var if var > 0 else 1.0
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


class Recognizer:
    """ArcFace: an aligned 112x112 face to a unit-length embedding."""

    mean, std = 127.5, 127.5

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session
        inp = session.get_inputs()[0]
        self.input_name = inp.name
        self.output_name = session.get_outputs()[0].name
        size = inp.shape[2]
        if not isinstance(size, int) or inp.shape[3] != size:
            raise ModelLoadError(f"recogniser input shape {inp.shape} is not (n, 3, s, s)")
        self.size = size
        self.reference = ARCFACE_REFERENCE * (size / 112.0)

    def align(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        matrix = similarity_transform(landmarks, self.reference)
        return cv2.warpAffine(image, matrix, (self.size, self.size), borderValue=0.0)

    def embed(self, crop: np.ndarray) -> np.ndarray:
        blob = cv2.dnn.blobFromImage(
            crop, 1.0 / self.std, (self.size, self.size), (self.mean,) * 3, swapRB=True
        )
        vector = self.session.run([self.output_name], {self.input_name: blob})[0][0]
        vector = vector.astype(np.float32)
        norm = float(np.linalg.norm(vector))
        if not np.isfinite(norm) or norm == 0.0:
            raise ServiceError(ErrorCode.PROCESSING_ERROR, "The model produced no usable embedding.")
        return vector / norm


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
        span: Span = _no_span,
    ) -> None:
        self.detector = detector
        self.recognizer = recognizer
        self.model_name = model_name
        self.device = device
        self.det_size = det_size
        self.det_retry_size = det_retry_size
        self.threshold = threshold
        self.span = span

    @classmethod
    def load(
        cls,
        model_path: Path,
        *,
        device: str = "cpu",
        threads: int = 1,
        **options: object,
    ) -> FaceEngine:
        model_name = model_path.name
        pack = MODEL_PACKS.get(model_name)
        if pack is None:
            raise ModelLoadError(
                f"unknown model pack {model_name!r}; known packs: {', '.join(sorted(MODEL_PACKS))}"
            )
        missing = [f for f in (pack.detector, pack.recognizer) if not (model_path / f).is_file()]
        if missing:
            raise ModelLoadError(
                f"model pack {model_name!r} is not installed in {model_path.parent} "
                f"(missing {', '.join(missing)}); provision it with "
                f"'python -m face_recognition_service.provision {model_name}'"
            )
        providers = providers_for(device)
        threads = create_shared_pool(threads) or threads
        started = time.perf_counter()
        detector = Detector(open_session(model_path / pack.detector, providers, threads))
        recognizer = Recognizer(open_session(model_path / pack.recognizer, providers, threads))
        logger.info(
            "model loaded",
            extra={"model_name": model_name, "device": device, "threads": threads,
                   "load_ms": round((time.perf_counter() - started) * 1000, 1)},
        )
        return cls(detector, recognizer, model_name=model_name, device=device, **options)  # type: ignore[arg-type]

    @property
    def embedding_size(self) -> int:
        return int(self.recognizer.session.get_outputs()[0].shape[-1])

    def detect(self, image: np.ndarray) -> Detections:
        with self.span("detect"):
            found = self.detector.detect(image, self.det_size, self.threshold)
            if len(found) == 0 and self.det_retry_size and self.det_retry_size != self.det_size:
                found = self.detector.detect(image, self.det_retry_size, self.threshold)
        return found

    def embed_single(self, image: np.ndarray) -> FaceEmbedding:
        """The embedding of the one face in ``image``; refuses zero or several faces.

        Faces are counted before any embedding is computed, so a rejected image
        costs detection only.
        """
        found = self.detect(image)
        if len(found) == 0:
            raise ServiceError(
                ErrorCode.NO_FACE_DETECTED,
                "No face was detected in the image.",
                f"No face scored at least the detection threshold ({self.threshold}).",
                faces=0,
            )
        if len(found) > 1:
            raise ServiceError(
                ErrorCode.MULTIPLE_FACES_DETECTED,
                "More than one face was detected in the image.",
                f"{len(found)} faces found; send an image with exactly one face.",
                faces=len(found),
            )
        with self.span("embed"):
            crop = self.recognizer.align(image, found.landmarks[0])
            vector = self.recognizer.embed(crop)
        return FaceEmbedding(vector, float(found.scores[0]), found.boxes[0])

    def warm_up(self) -> None:
        """One pass through both networks so the first request pays no lazy init
        (thread pool start, memory arenas, weight prepacking). A small detector
        input does it as well as a full one, at a fraction of the start-up time."""
        blank = np.full((128, 128, 3), 127, dtype=np.uint8)
        self.detector.detect(blank, 128, self.threshold)
        self.recognizer.embed(np.full((self.recognizer.size, self.recognizer.size, 3), 127, np.uint8))


@dataclass(frozen=True)
class ModelState:
    """What the service has: a ready engine, or the reason it has none."""

    engine: FaceEngine | None
    error: str | None = None


def load_model(settings: Settings, span: Span = _no_span, warm_up: bool = True) -> ModelState:
    """Load the configured pack; a missing or broken pack is a state, not a crash,
    so the service can still start, answer health checks and say what is wrong."""
    try:
        engine = FaceEngine.load(
            settings.model_path,
            device=settings.device.value,
            threads=settings.threads,
            det_size=settings.det_size,
            det_retry_size=settings.det_retry_size,
            threshold=settings.detection_threshold,
            span=span,
        )
        if warm_up:
            engine.warm_up()
    except ModelLoadError as exc:
        logger.error("model not loaded: %s", exc)
        return ModelState(None, str(exc))
    return ModelState(engine)
