"""Which work a frame of the door needs: nothing, following the faces, or the detector.

- **skip**: nobody is followed and the motion gate (``device.vision.motion``)
  saw no change: the doorstep is as it was, and the frame has no faces. The
  gate sees every frame but the followed ones.
- **follow**: a visitor is followed and every face of the last frame had a
  face mesh: each is found again from its last mesh (``FacePipeline.follow``),
  as MediaPipe's face-mesh graph does, and the detector does not run.
- **detect**: otherwise, and whenever following fails (the mesh lost a face or
  it moved too far), and at least every ``[tracking] detect_interval`` frames
  while following and every ``[motion] safety_interval`` frames while skipping.

``identify`` and ``enroll`` call ``FacePipeline.analyse`` on each photo and
never come here: the gate and tracking are the camera loop's alone.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Sequence

import numpy as np

from device.config import MotionConfig, TrackingConfig
from device.vision.detector import Detection
from device.vision.motion import MotionGate
from device.vision.pipeline import FaceAnalysis, FacePipeline


class Work(enum.Enum):
    """What a frame cost: the detector ran, the faces were followed, or nothing ran."""

    DETECT = "detect"
    FOLLOW = "follow"
    SKIP = "skip"


class FaceFollower:
    """The camera loop's per-frame vision: ``FacePipeline`` with the gate and tracking."""

    def __init__(
        self, pipeline: FacePipeline, motion: MotionConfig, tracking: TrackingConfig
    ) -> None:
        self.pipeline = pipeline
        self.motion = motion
        self.tracking = tracking
        self.gate = MotionGate(motion) if motion.enabled else None
        # How many frames had each kind of work (benchmarks, the tests).
        self.work: Counter[Work] = Counter()
        self._last: Sequence[FaceAnalysis] = ()
        self._since_detect = 0

    def analyse(
        self, image_rgb: np.ndarray, followed: bool, detect_rgb: np.ndarray | None = None
    ) -> list[FaceAnalysis]:
        """This frame's faces, largest first. ``followed``: a visitor's track is open."""
        self._since_detect += 1
        if followed and self._last:
            faces = self._follow(image_rgb)
            if faces is not None:
                return self._done(faces, Work.FOLLOW)
        # Not on a followed frame: its answer would go unused, and the background is not
        # to learn the visitor (the first frame the detector finds empty becomes it).
        changed = True
        if self.gate is not None:
            changed = self.gate.changed(image_rgb if detect_rgb is None else detect_rgb)
        if not followed and not changed and self._since_detect < self.motion.safety_interval:
            return self._done([], Work.SKIP)
        self._since_detect = 0
        faces = self.pipeline.analyse(image_rgb, detect_rgb=detect_rgb)
        if not faces and self.gate is not None:
            self.gate.empty()
        return self._done(faces, Work.DETECT)

    def _follow(self, image_rgb: np.ndarray) -> list[FaceAnalysis] | None:
        """Every face of the last frame found again, or None when the detector must run."""
        tracking = self.tracking
        if not tracking.enabled or self._since_detect >= tracking.detect_interval:
            return None
        faces = []
        for previous in self._last:
            face = self.pipeline.follow(image_rgb, previous, tracking.min_presence)
            if face is None:
                return None
            if moved_by(previous.detection, face.detection) > tracking.max_shift:
                return None
            faces.append(face)
        faces.sort(key=lambda f: f.detection.width * f.detection.height, reverse=True)
        return faces

    def _done(self, faces: list[FaceAnalysis], work: Work) -> list[FaceAnalysis]:
        self.work[work] += 1
        self._last = faces
        return faces


def moved_by(before: Detection, after: Detection) -> float:
    """How far a face's centre moved, in units of its earlier size (mean of width and height)."""
    x0, y0, x1, y1 = before.box
    u0, v0, u1, v1 = after.box
    shift = float(np.hypot((u0 + u1 - x0 - x1) / 2, (v0 + v1 - y0 - y1) / 2))
    return shift / max((before.width + before.height) / 2, 1.0)
