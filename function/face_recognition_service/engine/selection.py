"""Which of a photo's detected faces a request gets: the selection policy, its
caps, and the errors it answers (no face, several faces where one was asked for).
Pure: detections in, detections out; no model."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from ..errors import ErrorCode, ServiceError
from .detector import Detections


class FaceSelection(StrEnum):
    """Which faces of a photo are embedded."""

    SINGLE = "single"  # exactly one face, else MULTIPLE_FACES_DETECTED (the default)
    LARGEST = "largest"  # the biggest face (a selfie with people behind)
    ALL = "all"  # every face (a class photo), largest first


# Faces one photo can give (the largest kept), and one request across a batch's
# photos: the recogniser's work and the answer's size stay bounded (100 float
# embeddings are ~1.1 MB of JSON; 256, ~2.8 MB, inside Lambda's 6 MB).
MAX_FACES = 100
MAX_FACES_PER_REQUEST = 256


@dataclass(frozen=True)
class FaceOptions:
    """Per-request face options; None means the engine's setting."""

    selection: FaceSelection = FaceSelection.SINGLE
    max_faces: int | None = None
    min_face_size: int | None = None  # pixels, the shorter side of the face box (None: the setting)
    detection_threshold: float | None = None
    quality: bool = False


def select_faces(found: Detections, options: FaceOptions, threshold: float) -> tuple[Detections, int]:
    """The faces ``options`` ask for among ``found`` (detected at ``threshold``),
    and how many there were before the cap (``max_faces``, at most MAX_FACES):
    faces smaller than ``min_face_size`` are not counted; none left is
    NO_FACE_DETECTED; more than one for ``single`` is MULTIPLE_FACES_DETECTED;
    ``largest`` and ``all`` take the largest first."""
    if options.min_face_size and len(found):  # None or 0: every face counts
        sides = np.minimum(found.boxes[:, 2] - found.boxes[:, 0], found.boxes[:, 3] - found.boxes[:, 1])
        found = found.take(np.flatnonzero(sides >= options.min_face_size))
    if len(found) == 0:
        smallest = f" and at least {options.min_face_size} px" if options.min_face_size else ""
        raise ServiceError(
            ErrorCode.NO_FACE_DETECTED,
            "No face was detected in the image.",
            f"No face scored at least the detection threshold ({threshold}){smallest}.",
            faces=0,
        )
    if options.selection is FaceSelection.SINGLE:
        if len(found) > 1:
            raise ServiceError(
                ErrorCode.MULTIPLE_FACES_DETECTED,
                "More than one face was detected in the image.",
                f"{len(found)} faces found; send an image with exactly one face, "
                "or ask for face_selection 'largest' or 'all'.",
                faces=len(found),
            )
        return found, len(found)
    order = np.argsort(-found.areas, kind="stable")
    keep = 1 if options.selection is FaceSelection.LARGEST else min(options.max_faces or MAX_FACES, MAX_FACES)
    return found.take(order[:keep]), len(found)
