"""The quality gate: which detected faces are good enough to embed, and why not.

Every measure is taken where it is comparable between cameras: sharpness,
brightness and clipping on the aligned 112x112 grey crop (the pixels the
embedder will see), size and pose from the detector's keypoints in the frame.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from device.config import QualityConfig

if TYPE_CHECKING:
    from device.vision.detector import Detection

# The face region of an aligned 112x112 crop: brows to chin, cheek to cheek.
# Exposure is judged here so that background and padding do not count.
_FACE_ROWS = slice(30, 104)
_FACE_COLS = slice(24, 88)

# Nose-tip depth in front of the eyes relative to half the inter-ocular
# distance, used to turn the nose's sideways shift into a yaw angle.
_NOSE_DEPTH_RATIO = 0.7


class RejectReason(enum.StrEnum):
    LOW_SCORE = "low_score"
    BLURRY = "blurry"
    TOO_SMALL = "too_small"
    ROLL = "roll"
    YAW = "yaw"
    UNDEREXPOSED = "underexposed"
    OVEREXPOSED = "overexposed"


@dataclass(frozen=True)
class QualityReport:
    """Every measure of one face and the reasons it was rejected (none: accepted)."""

    score: float
    sharpness: float
    eye_distance: float
    roll: float
    yaw: float
    brightness: float
    reasons: tuple[RejectReason, ...]

    @property
    def accepted(self) -> bool:
        return not self.reasons

    @property
    def verdict(self) -> str:
        return "ok" if self.accepted else ",".join(reason.value for reason in self.reasons)

    @staticmethod
    def reasons_of(verdict: str) -> tuple[RejectReason, ...]:
        """The reasons a ``verdict`` text names (the inverse of :attr:`verdict`)."""
        return () if verdict == "ok" else tuple(RejectReason(r) for r in verdict.split(","))

    @property
    def quality(self) -> float:
        """One number in [0, 1] to rank a track's frames: detector score times sharpness term."""
        return float(
            self.score * min(1.0, self.sharpness / 200.0) * math.cos(math.radians(self.yaw))
        )


def laplacian_variance(grey: np.ndarray) -> float:
    """Variance of the 3x3 Laplacian: low when the image has no fine detail (blur)."""
    import cv2  # where pixels are measured: the records above are read without OpenCV

    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def roll_and_yaw(keypoints: np.ndarray) -> tuple[float, float]:
    """Head roll and yaw in degrees estimated from the eyes and nose tip."""
    left_eye, right_eye, nose = keypoints[0], keypoints[1], keypoints[2]
    eye_vector = right_eye - left_eye
    eye_distance = float(np.linalg.norm(eye_vector))
    if eye_distance < 1e-6:
        return 0.0, 90.0
    roll = math.degrees(math.atan2(float(eye_vector[1]), float(eye_vector[0])))
    axis = eye_vector / eye_distance
    shift = float(np.dot(nose - (left_eye + right_eye) / 2.0, axis)) / (eye_distance / 2.0)
    yaw = math.degrees(math.atan(shift / _NOSE_DEPTH_RATIO))
    return roll, yaw


def assess(
    detection: Detection, aligned_rgb: np.ndarray, thresholds: QualityConfig
) -> QualityReport:
    import cv2  # as in laplacian_variance

    grey = cv2.cvtColor(aligned_rgb, cv2.COLOR_RGB2GRAY)
    roll, yaw = roll_and_yaw(detection.keypoints)
    measured = QualityReport(
        score=detection.score,
        sharpness=laplacian_variance(grey),
        eye_distance=detection.eye_distance,
        roll=roll,
        yaw=yaw,
        brightness=float(grey[_FACE_ROWS, _FACE_COLS].mean()),
        reasons=(),
    )
    return judge(measured, thresholds)


def judge(measured: QualityReport, thresholds: QualityConfig) -> QualityReport:
    """The measures with the reasons ``thresholds`` reject them for: at capture, and again
    later with the thresholds as they are then (a stored visit's face being named)."""
    reasons = []
    if measured.score < thresholds.min_score:
        reasons.append(RejectReason.LOW_SCORE)
    if measured.eye_distance < thresholds.min_eye_distance:
        reasons.append(RejectReason.TOO_SMALL)
    if abs(measured.roll) > thresholds.max_roll:
        reasons.append(RejectReason.ROLL)
    if abs(measured.yaw) > thresholds.max_yaw:
        reasons.append(RejectReason.YAW)
    if measured.brightness < thresholds.min_brightness:
        reasons.append(RejectReason.UNDEREXPOSED)
    elif measured.brightness > thresholds.max_brightness:
        reasons.append(RejectReason.OVEREXPOSED)
    if measured.sharpness < thresholds.min_sharpness:
        reasons.append(RejectReason.BLURRY)
    return dataclasses.replace(measured, reasons=tuple(reasons))
