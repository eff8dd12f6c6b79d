"""The engine's value types: what a face is at each step, and the span hook."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .quality import Quality

Span = Callable[[str], contextlib.AbstractContextManager[object]]


def no_span(_name: str) -> contextlib.AbstractContextManager[object]:
    return contextlib.nullcontext()


@dataclass(frozen=True)
class PreparedFace:
    """A detected face, aligned and ready for the recogniser."""

    crop: np.ndarray  # (112, 112, 3) uint8 BGR
    detection_score: float
    box: np.ndarray
    landmarks: np.ndarray
    image_shape: tuple[int, ...]


@dataclass(frozen=True)
class FaceEmbedding:
    embedding: np.ndarray  # (512,) float32, unit length
    detection_score: float
    box: np.ndarray  # (4,) x1, y1, x2, y2
    landmarks: np.ndarray | None = None  # (5, 2)
    quality: Quality | None = None
