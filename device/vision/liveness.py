"""Liveness evidence per visit: does the face move like a plane (a photo, a screen) or not?

A printed photo or a phone screen held up to the camera is a plane: however it
is shaken, tilted or brought closer, its points between two frames follow one
homography. A head that turns or talks does not. Two signals, well under a
millisecond per frame, from what the pipeline already computed:

- **non-planar motion**: up to 40 corners inside the aligned 112x112 face
  crop are followed from frame to frame with pyramidal Lucas-Kanade optical
  flow on a band-passed grey crop (a glare drifting over a print is smooth, a
  screen's moiré is fine: both drop out). Against where tracking started, the
  median residual after the best homography stays near 0.1-0.3 px for a plane
  and grows for a turning or talking head: ``min_residual`` in
  ``residual_frames`` frames is live. The median residual after the best
  similarity says how far the face moved out of the image plane (alignment
  already removed shift, roll and scale: a face that only slid, rolled or came
  closer shows none and cannot be judged). A frame is planar evidence when that
  motion is at least ``min_motion`` and the homography explains all but
  ``planar_share`` of it; a head leaves 0.7 to 1.3 of it unexplained.
  Two guards against flow that slips on a photo (small faces, blur, glare):
  a residual that rises by more than ``max_jump`` from one frame to the next
  is a slip, not a head turning (on the real clips a turning head's residual
  rose by at most 0.8 px a frame), so tracking starts again from fresh
  corners and that frame counts for nothing; and planar evidence weighs against live evidence: each planar
  frame asks for ``planar_weight`` more non-planar frames before ``live``.
- **blinks**: the eye aspect ratio from the face mesh's eyelid points (gap
  over width) dips below ``blink_drop`` of its median over the visit and
  comes back.

Why image points and not the mesh's own landmarks: the mesh is a learned 3D
face fit, and on a tilted photo it answers partly as if the head had turned;
measured on generated attacks, its landmarks' residual after the best
homography overlapped real faces (docs/benchmarks.md). Texture points on a
plane follow the homography to a few tenths of a pixel.

The verdict is ``live`` (enough non-planar motion, or a blink seen), ``suspect``
(``planar_frames`` planar frames, nothing live) or ``undecided`` (the face
hardly moved out of its plane, or too little to tell). It is evidence, not a
guarantee: a replayed video of a moving face, or a mask, defeats it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import cv2
import numpy as np

# Six eyelid points per eye (corner, upper, upper, corner, lower, lower): the
# eye aspect ratio is (|p2-p6| + |p3-p5|) / (2 |p1-p4|).
_EYES = ((33, 160, 158, 133, 153, 144), (362, 385, 387, 263, 373, 380))
# Where points are followed in the aligned 112x112 crop: between the eyes' outer
# halves and the mouth, so that they stay on the face (never on the background
# or the print's margin) for all but extreme head turns. Only corners are
# followed (Shi-Tomasi): on smooth skin or along a screen's moiré stripes the
# flow slides, and a sliding point looks like a face that is not flat.
_REGION = np.zeros((112, 112), np.uint8)
_REGION[40:96, 34:78] = 255
_MAX_CORNERS, _CORNER_QUALITY, _CORNER_SPACING = 40, 0.05, 5.0
# A crop with too few such corners (a soft print, a face lit flat) is searched again
# for weaker ones rather than giving no evidence at all.
_FALLBACK_QUALITY = 0.02
# Fewer points than this left tracked, or a step longer than this (pixels, median
# over the points: the crop's alignment jumped, or the flow lost the face):
# start again from fresh corners rather than carry a wrong step along.
_MIN_POINTS = 12
_MAX_STEP = 10.0
# The band the flow follows: between these blurs of the crop's grey level.
_FINE_SIGMA, _COARSE_SIGMA = 1.2, 3.0
# Lucas-Kanade window (pixels) and pyramid levels above the crop.
_WINDOW, _LEVELS = 15, 2


class Liveness(StrEnum):
    LIVE = "live"
    SUSPECT = "suspect"
    UNDECIDED = "undecided"


@dataclass(frozen=True)
class LivenessOptions:
    """Thresholds, calibrated on generated attacks against the shared real clips (bench/liveness.py).

    Only development photos were used (the bench's calibration photos and others
    from the first 400 of its shuffles); the bench reports on photos after those.

    Residuals are in pixels of the 112x112 aligned crop (eyes about 38 px apart).
    """

    # Sightings a visit is watched before its verdict is final (unless live sooner).
    frames: int = 30
    # Residual after the best homography that a plane does not reach.
    min_residual: float = 0.8
    # Frames that must exceed min_residual: one tracking glitch is not a live face.
    residual_frames: int = 10
    # A rise of the residual from one frame to the next larger than this is the flow slipping
    # (a turning head's rose by at most 0.8 px a frame on the real clips): start again.
    max_jump: float = 1.0
    # Each planar frame asks for this many more non-planar frames before the face is live.
    planar_weight: int = 2
    # A planar frame: the face moved out of the image plane by at least min_motion (residual
    # after the best similarity), and the homography explains all but planar_share of it
    # (a turning head leaves most of it: 0.7 to 1.3 measured on real faces, 0.3 on attacks).
    min_motion: float = 0.2
    planar_share: float = 0.6
    # Planar frames, and no live evidence, that make a visit suspect.
    planar_frames: int = 2
    # A blink: the eye aspect ratio falls below this share of the visit's median, then recovers.
    blink_drop: float = 0.7


def band_pass(crop_rgb: np.ndarray) -> np.ndarray:
    """The crop's grey level, band-passed (difference of Gaussians), as uint8 for the optical flow.

    The low cut drops smooth light changes such as a glare sliding over a print;
    the high cut drops the finest stripes, where a screen's moiré lives.
    """
    grey = cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    detail = cv2.GaussianBlur(grey, (0, 0), _FINE_SIGMA) - cv2.GaussianBlur(
        grey, (0, 0), _COARSE_SIGMA
    )
    scaled: np.ndarray = np.clip(detail * 3.0 + 128.0, 0, 255).astype(np.uint8)
    return scaled


def similarity_fit(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``source`` mapped by the least-squares similarity transform onto ``target`` (Umeyama)."""
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    centred_source, centred_target = source - source_mean, target - target_mean
    u, singular, vt = np.linalg.svd(centred_target.T @ centred_source)
    sign = np.sign(np.linalg.det(u @ vt)) or 1.0
    rotation = u @ np.diag([1.0, sign]) @ vt
    variance = float(np.sum(centred_source * centred_source))
    scale = float(singular[0] + sign * singular[1]) / variance if variance > 0 else 1.0
    fitted: np.ndarray = scale * centred_source @ rotation.T + target_mean
    return fitted


def homography_fit(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``source`` mapped by the least-squares homography onto ``target`` (normalised DLT)."""
    to_source, to_target = _normaliser(source), _normaliser(target)
    a = _apply(to_source, source)
    b = _apply(to_target, target)
    ones, zeros = np.ones((len(a), 1)), np.zeros((len(a), 3))
    homogeneous = np.hstack([a, ones])
    rows = np.vstack(
        [
            np.hstack([homogeneous, zeros, -b[:, :1] * homogeneous]),
            np.hstack([zeros, homogeneous, -b[:, 1:] * homogeneous]),
        ]
    )
    # The null vector of the rows: the eigenvector of the smallest eigenvalue of rows' rows.
    _, vectors = np.linalg.eigh(rows.T @ rows)
    homography = np.linalg.inv(to_target) @ vectors[:, 0].reshape(3, 3) @ to_source
    return _apply(homography, source)


def _normaliser(points: np.ndarray) -> np.ndarray:
    """Hartley's normalisation: centroid to the origin, mean distance sqrt(2)."""
    centre = points.mean(axis=0)
    spread = float(np.mean(np.linalg.norm(points - centre, axis=1))) or 1.0
    factor = np.sqrt(2.0) / spread
    return np.array([[factor, 0, -factor * centre[0]], [0, factor, -factor * centre[1]], [0, 0, 1]])


def _apply(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    mapped = points @ homography[:, :2].T + homography[:, 2]
    result: np.ndarray = mapped[:, :2] / mapped[:, 2:]
    return result


def residuals(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """(planar, motion): median point residuals after the best homography and the best similarity.

    A plane has a planar residual near 0 whatever its motion; a face that moved
    only in the image plane has both near 0. Points the flow lost track of are
    outliers: the homography is fitted again without those far off the first fit.
    """
    reference, current = reference.astype(np.float64), current.astype(np.float64)
    errors = np.linalg.norm(homography_fit(reference, current) - current, axis=1)
    inliers = errors <= 3.0 * max(float(np.median(errors)), 0.05)
    if inliers.sum() >= _MIN_POINTS and not inliers.all():
        reference, current = reference[inliers], current[inliers]
        errors = np.linalg.norm(homography_fit(reference, current) - current, axis=1)
    planar = float(np.median(errors))
    moved = float(np.median(np.linalg.norm(similarity_fit(reference, current) - current, axis=1)))
    return planar, moved


def eye_aspect_ratio(mesh: np.ndarray) -> float:
    """The mean of both eyes' aspect ratios: about 0.3 open, near 0 closed."""
    ratios = []
    for p1, p2, p3, p4, p5, p6 in _EYES:
        width = float(np.linalg.norm(mesh[p1] - mesh[p4]))
        gap = float(np.linalg.norm(mesh[p2] - mesh[p6]) + np.linalg.norm(mesh[p3] - mesh[p5]))
        ratios.append(gap / (2 * width) if width > 0 else 0.0)
    return float(np.mean(ratios))


def has_blink(ratios: list[float], drop: float) -> bool:
    """An eye aspect ratio below ``drop`` times the median, with open eyes before and after it."""
    if len(ratios) < 3:
        return False
    open_level = float(np.median(ratios))
    closed = [r < drop * open_level for r in ratios]
    if not any(closed):
        return False
    first = closed.index(True)
    last = len(closed) - 1 - closed[::-1].index(True)
    return first > 0 and last < len(closed) - 1


@dataclass
class LivenessEvidence:
    """What one track has seen so far: ``observe`` each sighting with a mesh, ``interrupt`` one without."""

    options: LivenessOptions
    # Sightings so far, and those with a face mesh (the ones that give evidence).
    seen: int = 0
    frames: int = 0
    nonplanar_frames: int = 0
    planar_frames: int = 0
    blinked: bool = False
    ratios: list[float] = field(default_factory=list, repr=False)
    # The last frame's residual after the best homography (0 when tracking starts).
    last_residual: float = 0.0
    # The tracked points: where they started (in the first crop), where they are now
    # (in the last crop), and that crop, band-passed.
    origin: np.ndarray | None = field(default=None, repr=False)
    points: np.ndarray | None = field(default=None, repr=False)
    previous: np.ndarray | None = field(default=None, repr=False)

    def observe(self, mesh: np.ndarray, crop_rgb: np.ndarray) -> None:
        """One frame's evidence: ``mesh`` for the eyelids, ``crop_rgb`` (the aligned face) for the flow."""
        if self.final:
            return
        self.seen += 1
        self.frames += 1
        self.ratios.append(eye_aspect_ratio(mesh))
        self.blinked = self.blinked or has_blink(self.ratios, self.options.blink_drop)
        detail = band_pass(crop_rgb)
        if self.previous is not None:
            self._follow(detail)
        if self.points is None or self.origin is None:
            self._start(detail)
        self.previous = detail

    def _start(self, detail: np.ndarray) -> None:
        """Pick the corners to follow from this crop on (none if it has too few)."""
        corners = cv2.goodFeaturesToTrack(
            detail, _MAX_CORNERS, _CORNER_QUALITY, _CORNER_SPACING, mask=_REGION
        )
        if corners is None or len(corners) < _MIN_POINTS:
            corners = cv2.goodFeaturesToTrack(
                detail, _MAX_CORNERS, _FALLBACK_QUALITY, _CORNER_SPACING, mask=_REGION
            )
        if corners is None or len(corners) < _MIN_POINTS:
            self.origin = self.points = None
            return
        self.last_residual = 0.0
        self.origin = corners.astype(np.float32).reshape(-1, 1, 2)
        self.points = self.origin.copy()

    def _follow(self, detail: np.ndarray) -> None:
        """Optical flow of the points from the last crop to this one; residuals against their start."""
        if self.previous is None or self.points is None or self.origin is None:
            return
        moved, status, _ = cv2.calcOpticalFlowPyrLK(
            self.previous,
            detail,
            self.points,
            self.points.copy(),
            winSize=(_WINDOW, _WINDOW),
            maxLevel=_LEVELS,
        )
        kept = status.ravel() == 1
        step = np.linalg.norm((moved - self.points).reshape(-1, 2)[kept], axis=1)
        if kept.sum() < _MIN_POINTS or float(np.median(step)) > _MAX_STEP:
            self.points = None
            return
        self.origin, self.points = self.origin[kept], moved[kept]
        planar, motion = residuals(self.origin.reshape(-1, 2), self.points.reshape(-1, 2))
        if planar - self.last_residual > self.options.max_jump:
            self.points = None
            return
        self.last_residual = planar
        self.nonplanar_frames += planar >= self.options.min_residual
        self.planar_frames += (
            motion >= self.options.min_motion and planar <= self.options.planar_share * motion
        )

    def interrupt(self) -> None:
        """The face was seen without a mesh: the next frame starts tracking afresh."""
        self.seen += 1
        self.previous = self.points = self.origin = None

    @property
    def live(self) -> bool:
        needed = self.options.residual_frames + self.options.planar_weight * self.planar_frames
        return self.blinked or self.nonplanar_frames >= needed

    @property
    def final(self) -> bool:
        """Live already, or the window is full: later frames cannot change the verdict."""
        return self.live or self.seen >= self.options.frames

    def verdict(self) -> Liveness:
        if self.live:
            return Liveness.LIVE
        if self.planar_frames >= self.options.planar_frames:
            return Liveness.SUSPECT
        return Liveness.UNDECIDED
