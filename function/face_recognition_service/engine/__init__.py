"""Face detection, alignment and embedding on ONNX Runtime, one concern a module:

    runtime     ONNX Runtime sessions, providers, the shared thread pool
    detector    SCRFD: boxes, scores and five landmarks per face
    recognizer  five-point alignment and ArcFace embeddings
    quality     quality verdicts from landmarks, crop, detector score and embedding norm
    selection   which detected faces a request gets (policy, caps, its errors)
    types       PreparedFace, FaceEmbedding: a face at each step
    pipeline    FaceEngine: detection, selection and recognition together
    loading     load_model, ModelState: a ready engine or the reason there is none

The pack catalogue (which files make a pack) is ``face_recognition_service.models``.
"""

from .detector import Detections, Detector, nms
from .loading import ModelState, load_model
from .pipeline import FaceEngine
from .quality import Quality, Verdict
from .recognizer import ARCFACE_REFERENCE, Recognizer, similarity_transform
from .runtime import ModelLoadError, create_shared_pool, open_session, providers_for, session_options
from .selection import FaceOptions, FaceSelection
from .types import FaceEmbedding, PreparedFace, Span

__all__ = [
    "ARCFACE_REFERENCE",
    "Detections",
    "Detector",
    "FaceEmbedding",
    "FaceEngine",
    "FaceOptions",
    "FaceSelection",
    "ModelLoadError",
    "ModelState",
    "PreparedFace",
    "Quality",
    "Recognizer",
    "Span",
    "Verdict",
    "create_shared_pool",
    "load_model",
    "nms",
    "open_session",
    "providers_for",
    "session_options",
    "similarity_transform",
]
