"""An empty doorstep as a camera sees it, for the motion gate's tests and ``bench/door_day.py``.

- ``empty_plate``: the hall of Intel's walking clip with its people painted out
  (the per-pixel median of its frames, the three figures standing in all of
  them filled in from around them by OpenCV's inpainting): the lamp, the walls,
  the glass door; no detector finds a face in it.
- ``Doorstep``: that plate, frame after frame, with a camera sensor's noise
  (shot noise growing with the signal plus read noise, independent per pixel
  and frame), a slow light change (a global gain and a drifting gradient, as
  the sun moves) and, where asked, a patch of the scene swaying in a corner (a
  plant in the wind).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from bench.frame_sets import read_clip

WALKING = "data/video/face-demographics-walking-and-pause.gif"
# Sensor noise in grey levels: variance SHOT * level + READ**2 (a small CMOS camera at
# indoor light; about 6.5 levels at mid-grey, visible grain at full size).
SHOT = 0.3
READ = 2.0


# The three people's figures in the walking clip's median frame (x0, y0, x1, y1): from the
# full-range detector's face boxes there, 0.9 face widths either side, a third above, down
# to the bottom.
FIGURES = ((1, 67, 166, 270), (140, 53, 308, 270), (286, 80, 458, 270))


def empty_plate(shared: Path) -> np.ndarray:
    """The walking clip's hall without its people, RGB uint8 (480x270)."""
    frames = np.stack(read_clip(shared / WALKING))
    median = np.median(frames, axis=0).astype(np.uint8)
    mask = np.zeros(median.shape[:2], dtype=np.uint8)
    for x0, y0, x1, y1 in FIGURES:
        mask[y0:y1, x0:x1] = 255
    plate: np.ndarray = cv2.inpaint(median, mask, 7, cv2.INPAINT_TELEA)
    return plate


@dataclass
class Doorstep:
    """Frames of an empty doorstep: the light ``light_drop`` darker (a share) after
    ``light_frames`` frames; a patch swaying ``sway`` pixels either way every
    ``sway_period`` frames (0: none)."""

    plate: np.ndarray
    seed: int = 0
    light_drop: float = 0.0
    light_frames: int = 1
    sway: float = 0.0
    sway_period: int = 45
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        height, width = self.plate.shape[:2]
        ramp = np.linspace(-1.0, 1.0, width, dtype=np.float32)
        self._gradient = np.broadcast_to(ramp, (height, width))[..., np.newaxis]
        side = height // 4
        # The hall's lamp and the ceiling's edge: the plate's most textured corner of the top.
        self._patch = self.plate[:side, width // 2 : width // 2 + side].copy()
        margin = math.ceil(self.sway) + 1
        self._patch_at = (height - side - margin, width - side - margin)

    def gain(self, t: int) -> np.ndarray:
        """The light at frame ``t``: a drop of ``light_drop`` over ``light_frames`` frames,
        brighter on one side than the other by a share drifting with it."""
        progress = min(t / max(self.light_frames, 1), 1.0)
        level = 1.0 - self.light_drop * progress
        tilt = 0.1 * self.light_drop * math.sin(math.pi * progress)
        return np.asarray(level * (1.0 + tilt * self._gradient), dtype=np.float32)

    def frame(self, t: int) -> np.ndarray:
        """The doorstep at frame ``t``, RGB uint8, with fresh noise."""
        scene = self.plate.astype(np.float32)
        if self.sway:
            scene = self._swayed(scene, t)
        return add_noise(scene * self.gain(t), self._rng)

    def _swayed(self, scene: np.ndarray, t: int) -> np.ndarray:
        shift = round(self.sway * math.sin(2 * math.pi * t / self.sway_period))
        top, left = self._patch_at
        side = self._patch.shape[0]
        scene[top : top + side, left + shift : left + shift + side] = self._patch
        return scene


def add_noise(scene: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A sensor's noise on a scene of float grey levels: shot plus read noise, clipped."""
    sigma = np.sqrt(SHOT * np.clip(scene, 0.0, 255.0) + READ**2)
    noisy = scene + sigma * rng.standard_normal(scene.shape, dtype=np.float32)
    return np.asarray(np.clip(noisy, 0, 255).astype(np.uint8))
