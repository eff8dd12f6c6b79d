"""Face quality from what the pipeline already has: the five landmarks and box,
the detector's score, the aligned crop and the recogniser's raw embedding norm.

Each measure maps to a sub-score in (0, 1) through a logistic curve centred on
its "acceptable" bar, so that any degradation lowers the overall score (the
geometric mean of the sub-scores); each measure past a bar adds a stable,
machine-readable reason. The verdict is ``poor`` when any measure is past its
poor bar, ``acceptable`` when any is past its acceptable bar, else ``good``.
The bars are calibrated on the labelled photos and on degraded copies of them
(tests/engine/test_quality.py); the README lists them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

import cv2
import numpy as np


class Verdict(StrEnum):
    GOOD = "good"
    ACCEPTABLE = "acceptable"
    POOR = "poor"

    @property
    def rank(self) -> int:
        return {Verdict.POOR: 0, Verdict.ACCEPTABLE: 1, Verdict.GOOD: 2}[self]


@dataclass(frozen=True)
class Bar:
    """Where a measure stops being good (``acceptable``) and becomes ``poor``.
    ``higher_is_better`` says which side is the good one."""

    reason: str
    acceptable: float
    poor: float
    higher_is_better: bool = True

    def level(self, value: float) -> Verdict:
        sign = 1.0 if self.higher_is_better else -1.0
        if sign * (value - self.poor) < 0:
            return Verdict.POOR
        if sign * (value - self.acceptable) < 0:
            return Verdict.ACCEPTABLE
        return Verdict.GOOD

    def sub_score(self, value: float) -> float:
        # Logistic through 0.5 at the poor bar and ~0.88 at the acceptable bar.
        width = abs(self.acceptable - self.poor) / 2.0 or 1.0
        sign = 1.0 if self.higher_is_better else -1.0
        z = sign * (value - self.poor) / width
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


BARS: dict[str, Bar] = {
    # Distance between the eye centres in the original image: the crop is 112 px
    # with eyes ~35 px apart, so below that the recogniser sees upsampled pixels.
    "interocular_px": Bar("face_too_small", acceptable=28.0, poor=14.0),
    # Head pose estimated from the five landmarks (degrees).
    "yaw": Bar("pose_yaw", acceptable=30.0, poor=50.0, higher_is_better=False),
    "pitch": Bar("pose_pitch", acceptable=25.0, poor=40.0, higher_is_better=False),
    "roll": Bar("pose_roll", acceptable=20.0, poor=40.0, higher_is_better=False),
    # Variance of the Laplacian over the aligned face (112x112 grey), at contrast 50.
    "sharpness": Bar("blurry", acceptable=60.0, poor=20.0),
    # Mean grey level and its spread over the centre of the aligned face.
    "brightness_low": Bar("too_dark", acceptable=70.0, poor=40.0),
    "brightness_high": Bar("too_bright", acceptable=200.0, poor=225.0, higher_is_better=False),
    "contrast": Bar("low_contrast", acceptable=25.0, poor=12.0),
    "detection_score": Bar("low_detection_score", acceptable=0.65, poor=0.55),
    # Share of the face box inside the image, and how far the five landmarks are
    # from the image's edges (in eye distances): a face cut at the nose has a
    # box the detector fits to the visible half, but its nose on the edge.
    "visible_fraction": Bar("face_cut_off", acceptable=0.95, poor=0.8),
    "edge_margin": Bar("face_cut_off", acceptable=0.3, poor=0.1),
    # The recogniser's raw embedding norm (w600k models: ~20+ for clear faces).
    "embedding_norm": Bar("low_recognisability", acceptable=15.0, poor=10.0),
}


@dataclass(frozen=True)
class Quality:
    score: float
    verdict: Verdict
    reasons: list[str]
    measures: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"score": self.score, "verdict": self.verdict.value, "reasons": self.reasons, **self.measures}


def head_pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """Yaw, pitch, roll in degrees from the five points (eyes, nose, mouth corners).

    Roll is the eye line's angle. In the roll-corrected frame, the nose tip's
    offset from the face's midline over the eye distance gives yaw (the nose
    stands about half an eye distance in front of the eyes: offset/iod ~
    0.5 tan(yaw)); its height between the eye and mouth lines gives pitch.
    An estimate (about ±10 degrees), enough to tell frontal from turned.
    """
    left_eye, right_eye, nose, mouth_l, mouth_r = landmarks.astype(np.float64)
    dx, dy = right_eye - left_eye
    roll = math.degrees(math.atan2(dy, dx))
    c, s = math.cos(-math.radians(roll)), math.sin(-math.radians(roll))
    rotate = np.array([[c, -s], [s, c]])
    eyes = (left_eye + right_eye) / 2
    mouth = (mouth_l + mouth_r) / 2
    iod = max(float(np.hypot(dx, dy)), 1e-6)
    nose_r = rotate @ (nose - eyes)
    mouth_r_ = rotate @ (mouth - eyes)
    midline_x = mouth_r_[0] * (nose_r[1] / mouth_r_[1]) if abs(mouth_r_[1]) > 1e-6 else 0.0
    yaw = math.degrees(math.atan(2.0 * (nose_r[0] - midline_x) / iod))
    ratio = nose_r[1] / mouth_r_[1] if abs(mouth_r_[1]) > 1e-6 else 0.5
    # Frontal faces put the nose tip ~0.55 of the way from the eye line to the mouth line.
    pitch = math.degrees(math.atan(2.4 * (ratio - 0.55)))
    return yaw, pitch, roll


def crop_measures(crop: np.ndarray) -> tuple[float, float, float]:
    """Brightness, contrast and sharpness of the aligned 112 px crop."""
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    centre = grey[24:104, 24:88]  # eyes to chin, inside the cheeks
    brightness = float(centre.mean())
    contrast = float(centre.std())
    # Laplacian variance grows with the square of contrast: rescale it to a
    # contrast of 50 so that a dark or flat but sharp face does not read as blurred.
    # Only over pixels that came from the image: where the face runs off the
    # photo, the crop has a black border whose edge is not detail.
    region = grey[16:112, 16:96]
    inside = cv2.erode((region > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    lap = cv2.Laplacian(region, cv2.CV_64F)
    laplacian = float(lap[inside].var()) if inside.sum() > 100 else 0.0
    return brightness, contrast, laplacian * (50.0 / max(contrast, 5.0)) ** 2


def assess(
    landmarks: np.ndarray,
    box: np.ndarray,
    image_shape: tuple[int, ...],
    detection_score: float,
    crop: np.ndarray,
    embedding_norm: float,
) -> Quality:
    height, width = image_shape[:2]
    iod = float(np.linalg.norm(landmarks[1] - landmarks[0]))
    yaw, pitch, roll = head_pose(landmarks)
    brightness, contrast, sharpness = crop_measures(crop)
    x1, y1, x2, y2 = (float(v) for v in box)
    area = max((x2 - x1) * (y2 - y1), 1e-6)
    visible = max(0.0, min(x2, width) - max(x1, 0.0)) * max(0.0, min(y2, height) - max(y1, 0.0))
    margins = np.concatenate(
        [landmarks[:, 0], width - landmarks[:, 0], landmarks[:, 1], height - landmarks[:, 1]]
    )
    edge_margin = float(max(0.0, margins.min()) / max(iod, 1e-6))
    values = {
        "interocular_px": iod,
        "yaw": abs(yaw),
        "pitch": abs(pitch),
        "roll": abs(roll),
        "sharpness": sharpness,
        "brightness_low": brightness,
        "brightness_high": brightness,
        "contrast": contrast,
        "detection_score": detection_score,
        "visible_fraction": min(1.0, visible / area),
        "edge_margin": edge_margin,
        "embedding_norm": embedding_norm,
    }
    verdict = Verdict.GOOD
    reasons = []
    log_sum = 0.0
    for key, value in values.items():
        bar = BARS[key]
        level = bar.level(value)
        if level is not Verdict.GOOD and bar.reason not in reasons:
            reasons.append(bar.reason)
            verdict = min(verdict, level, key=lambda v: v.rank)
        log_sum += math.log(max(bar.sub_score(value), 1e-9))
    score = math.exp(log_sum / len(values))
    measures = {
        "interocular_px": round(iod, 1),
        "yaw": round(yaw, 1),
        "pitch": round(pitch, 1),
        "roll": round(roll, 1),
        "sharpness": round(sharpness, 1),
        "brightness": round(brightness, 1),
        "contrast": round(contrast, 1),
        "visible_fraction": round(values["visible_fraction"], 3),
        "edge_margin": round(edge_margin, 2),
        "embedding_norm": round(embedding_norm, 2),
    }
    return Quality(round(score, 4), verdict, reasons, measures)
