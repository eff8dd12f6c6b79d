"""Five-point alignment and the ArcFace recogniser: a face to a unit-length embedding."""

from __future__ import annotations

import math

import cv2
import numpy as np
import onnxruntime as ort

from ..errors import ErrorCode, ServiceError
from .runtime import ModelLoadError

# ArcFace's reference landmark positions in a 112x112 crop (InsightFace's arcface_dst).
ARCFACE_REFERENCE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


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

    def align(self, image: np.ndarray, landmarks: np.ndarray, *, antialias: bool = False) -> np.ndarray:
        """The crop: the face warped so its landmarks land on the reference.

        ``antialias``: where the warp would shrink the face more than twofold,
        the region it covers is first averaged over k x k blocks (the smallest
        whole k that leaves the warp shrinking it no more than twofold), since
        bilinear sampling alone would skip most pixels and alias."""
        matrix = similarity_transform(landmarks, self.reference)
        scale = float(np.hypot(matrix[0, 0], matrix[0, 1]))
        if antialias and scale < 0.5:
            image, landmarks = self._shrunk_region(image, landmarks, matrix, math.ceil(0.5 / scale))
            matrix = similarity_transform(landmarks, self.reference)
        return cv2.warpAffine(image, matrix, (self.size, self.size), borderValue=0.0)

    def _shrunk_region(
        self, image: np.ndarray, landmarks: np.ndarray, matrix: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The part of ``image`` the crop covers, each k x k block averaged, and
        the landmarks in its pixels (pixel centres kept where they are)."""
        corners = np.array(
            [[0, 0, 1], [self.size, 0, 1], [0, self.size, 1], [self.size, self.size, 1]], float
        )
        source = corners @ cv2.invertAffineTransform(matrix).T
        height, width = image.shape[:2]
        left, top = (max(0, int(v) - k) for v in source.min(axis=0))
        right = min(width, int(source[:, 0].max()) + 2 * k)
        bottom = min(height, int(source[:, 1].max()) + 2 * k)
        # Whole blocks only: OpenCV averages them exactly and fast.
        right, bottom = right - (right - left) % k, bottom - (bottom - top) % k
        if right - left < k or bottom - top < k:
            return image, landmarks
        region = image[top:bottom, left:right]
        small = cv2.resize(region, ((right - left) // k, (bottom - top) // k), interpolation=cv2.INTER_AREA)
        moved = (landmarks - np.array([left, top]) + 0.5) / k - 0.5
        return small, moved.astype(np.float32)

    def embed_batch(self, crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Unit-length embeddings (n, 512) float32 and the raw norms (n,) of
        several aligned crops, in one network run.

        The norm before normalisation is the recogniser's own signal of how
        recognisable a face is (low for blurred, tiny or occluded faces).
        """
        blob = cv2.dnn.blobFromImages(
            crops, 1.0 / self.std, (self.size, self.size), (self.mean,) * 3, swapRB=True
        )
        vectors = self.session.run([self.output_name], {self.input_name: blob})[0].astype(np.float32)
        norms = np.linalg.norm(vectors, axis=1)
        if not np.isfinite(norms).all() or (norms == 0.0).any():
            raise ServiceError(ErrorCode.PROCESSING_ERROR, "The model produced no usable embedding.")
        unit: np.ndarray = vectors / norms[:, None]
        return unit, norms

    def embed(self, crop: np.ndarray) -> np.ndarray:
        """The unit-length embedding of one aligned crop."""
        unit, _ = self.embed_batch([crop])
        vector: np.ndarray = unit[0]
        return vector
