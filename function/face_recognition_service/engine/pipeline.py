"""The pipeline: detection, face selection and recognition tied together, and
loading a pack into it.

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

import numpy as np

from ..config import Settings
from ..errors import ErrorCode, ServiceError
from ..packs import MODEL_PACKS
from .detector import Detections, Detector
from .recognizer import Recognizer
from .runtime import ModelLoadError, create_shared_pool, open_session, providers_for

logger = logging.getLogger(__name__)

Span = Callable[[str], contextlib.AbstractContextManager[object]]


def _no_span(_name: str) -> contextlib.AbstractContextManager[object]:
    return contextlib.nullcontext()


@dataclass(frozen=True)
class FaceEmbedding:
    embedding: np.ndarray  # (512,) float32, unit length
    detection_score: float
    box: np.ndarray  # (4,)


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
        det_size: int = 640,
        det_retry_size: int = 160,
        threshold: float = 0.5,
        span: Span = _no_span,
    ) -> FaceEngine:
        """Open the pack in ``model_path`` (a folder named after the pack)."""
        model_name = model_path.name
        pack = MODEL_PACKS.get(model_name)
        if pack is None:
            raise ModelLoadError(
                f"unknown model pack {model_name!r}; known packs: {', '.join(sorted(MODEL_PACKS))}"
            )
        missing = [f for f in pack.files if not (model_path / f).is_file()]
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
        )

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
