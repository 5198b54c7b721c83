"""Liveness evidence per visit: does the face move like a plane (a photo, a screen) or not?

A printed photo or a phone screen held up to the camera is a plane: however it
is shaken, tilted or brought closer, its points between two frames follow one
homography. A head that turns or talks does not. Two signals, well under a
millisecond per frame, from what the pipeline already computed:

- **non-planar motion**: up to 40 corners inside the aligned 112x112 face
  crop, picked where tracking starts, are found again in each later crop by
  pyramidal Lucas-Kanade optical flow on a band-passed grey level (a glare
  drifting over a print is smooth, a screen's moiré is fine: both drop out).
  Each new crop is matched against the *first* crop warped by the homography
  fitted so far, not against the previous crop: on a plane the warped first
  crop is the new crop, so the points land where the homography says, and
  errors do not add up from frame to frame. (Matching frame to frame let the
  points drift smoothly on small, soft prints, which looks like a head
  turning.) The median residual after the best homography stays near
  0.05-0.15 px for a plane and grows for a turning or talking head:
  ``min_residual`` in ``residual_frames`` frames is live. The median residual
  after the best similarity says how far the face moved out of the image
  plane (alignment already removed shift, roll and scale: a face that only
  slid, rolled or came closer shows none and cannot be judged). A frame is
  planar evidence when that motion is at least ``min_motion`` and the
  homography explains all but ``planar_share`` of it; a head leaves 0.5 to
  1.1 of it unexplained, a plane 0.03 to 0.5. A frame whose residual rises
  by more than ``max_jump`` over the last one, or whose points moved more
  than ``_MAX_STEP``, is a mismatch (the crop's alignment jumped, or the face
  changed too much): it counts for nothing, and after ``_MAX_MISMATCHES`` in a
  row tracking starts again from the current crop. Each planar frame asks
  for ``planar_weight`` more non-planar frames before ``live``.
- **blinks**: the eye aspect ratio from the face mesh's eyelid points (gap
  over width) dips below ``blink_drop`` of its median over the visit, from
  open eyes (at least the median) and back to open eyes. Sightings where the
  mesh did not find the face give motion evidence only.

A sighting turned beyond ``max_yaw`` (a face in profile) is no evidence
either way: its aligned crop shows the side of the head and the background,
so whatever the points or the eyelids do there is a guess, and a guess is
where two machines' float differences flip a verdict (docs/benchmarks.md,
"no evidence from a face in profile").

Why image points and not the mesh's own landmarks: the mesh is a learned 3D
face fit, and on a tilted photo it answers partly as if the head had turned;
measured on generated attacks, its landmarks' residual after the best
homography overlapped real faces (docs/benchmarks.md). Texture points on a
plane follow the homography to a small fraction of a pixel.

The verdict is ``live`` (enough non-planar motion, or a blink seen), ``suspect``
(``planar_frames`` planar frames, nothing live) or ``undecided`` (the face
hardly moved out of its plane, or too little to tell). It is evidence, not a
guarantee: a replayed video of a moving face, or a mask, defeats it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

import cv2
import numpy as np

from device.config import LivenessConfig

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
# Fewer points than this left tracked: start again from fresh corners.
_MIN_POINTS = 12
# A step longer than this (pixels, median over the points, from where the homography
# so far puts them) is a mismatch: the crop's alignment jumped, or the flow lost the face.
_MAX_STEP = 10.0
# Mismatched frames in a row that are skipped before tracking starts again.
_MAX_MISMATCHES = 2
# The band the flow follows: between these blurs of the crop's grey level.
_FINE_SIGMA, _COARSE_SIGMA = 1.2, 3.0
# Lucas-Kanade window (pixels) and pyramid levels above the crop. A wider window
# (21 px) smooths a real head's parallax away and left real visits undecided.
_WINDOW, _LEVELS = 11, 2
_CROP = 112


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

    # Residual after the best homography that a plane does not reach.
    min_residual: float = 0.6
    # Frames that must exceed min_residual: one tracking glitch is not a live face.
    residual_frames: int = 10
    # A rise of the residual from one frame to the next larger than this is a mismatch,
    # not a head turning (a turning head's rose by at most 0.8 px a frame on the real clips).
    max_jump: float = 1.0
    # Each planar frame asks for this many more non-planar frames before the face is live.
    planar_weight: int = 2
    # A planar frame: the face moved out of the image plane by at least min_motion (residual
    # after the best similarity), and the homography explains all but planar_share of it
    # (a turning head leaves most of it: 0.5 to 1.1 measured on real faces, 0.03 to 0.5 on
    # attacks, 5th to 95th percentile).
    min_motion: float = 0.2
    planar_share: float = 0.4
    # Planar frames, and no live evidence, that make a visit suspect.
    planar_frames: int = 2
    # A blink: the eye aspect ratio falls from at least the visit's median to below
    # blink_drop of it, and comes back to the median.
    blink_drop: float = 0.7
    # A sighting turned further than this (degrees of yaw, as the quality gate measures it)
    # is no evidence either way: the aligned crop of a face in profile shows its side, hair
    # and background, so the points followed are not on the face, and the mesh's eyelids
    # are a guess. It also ends the tracking (the next frontal crop starts it again).
    max_yaw: float = 45.0


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
    """``source`` mapped by the least-squares similarity transform onto ``target``.

    In the plane, a rotation and scale is one complex factor, so the least-squares
    fit (Umeyama's, without reflections) has a closed form: cheap enough per frame.
    """
    source_c = source[:, 0] + 1j * source[:, 1]
    target_c = target[:, 0] + 1j * target[:, 1]
    target_mean = target_c.sum() / len(target_c)
    centred = source_c - source_c.sum() / len(source_c)
    variance = float(np.vdot(centred, centred).real)
    factor = np.vdot(centred, target_c - target_mean) / variance if variance > 0 else 1.0
    fitted = factor * centred + target_mean
    return np.column_stack([fitted.real, fitted.imag])


def fit_homography(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The least-squares homography (3x3) that maps ``source`` onto ``target`` (normalised DLT)."""
    source_centre, source_factor = _normalisation(source)
    target_centre, target_factor = _normalisation(target)
    a = (source - source_centre) * source_factor
    b = (target - target_centre) * target_factor
    count = len(a)
    rows = np.zeros((2 * count, 9))
    rows[:count, 0:2], rows[:count, 2] = a, 1.0
    rows[count:, 3:5], rows[count:, 5] = a, 1.0
    rows[:count, 6:8], rows[:count, 8] = -b[:, :1] * a, -b[:, 0]
    rows[count:, 6:8], rows[count:, 8] = -b[:, 1:] * a, -b[:, 1]
    # The null vector of the rows: the eigenvector of the smallest eigenvalue of rows' rows.
    _, vectors = np.linalg.eigh(rows.T @ rows)
    to_source = np.array(
        [
            [source_factor, 0, -source_factor * source_centre[0]],
            [0, source_factor, -source_factor * source_centre[1]],
            [0, 0, 1],
        ]
    )
    from_target = np.array(
        [
            [1 / target_factor, 0, target_centre[0]],
            [0, 1 / target_factor, target_centre[1]],
            [0, 0, 1],
        ]
    )
    homography = from_target @ vectors[:, 0].reshape(3, 3) @ to_source
    normalised: np.ndarray = homography / homography[2, 2]
    return normalised


def _normalisation(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Hartley's normalisation (centre, factor): centroid to the origin, mean distance sqrt(2)."""
    centre = points.sum(axis=0) / len(points)
    spread = float(np.sqrt(((points - centre) ** 2).sum(axis=1)).sum()) / len(points)
    return centre, (np.sqrt(2.0) / spread if spread > 0 else 1.0)


def apply_homography(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    mapped = points @ homography[:, :2].T + homography[:, 2]
    result: np.ndarray = mapped[:, :2] / mapped[:, 2:]
    return result


def _median(values: np.ndarray) -> float:
    """The median of a short 1-D array; ``np.median``'s checks cost more than the sort here."""
    ordered = np.sort(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[middle])
    return float(ordered[middle - 1] + ordered[middle]) / 2


class PlaneFit(NamedTuple):
    """How well one plane explains the points' motion (pixels of the aligned crop)."""

    # Median residual after the best homography: near 0 for a plane, whatever its motion.
    planar: float
    # Median residual after the best similarity: how far the points moved out of the image plane.
    motion: float
    # The best homography, from the reference points to the current ones.
    homography: np.ndarray


def residuals(reference: np.ndarray, current: np.ndarray) -> PlaneFit:
    """The plane that best explains how ``reference`` points moved to ``current``.

    A face that moved only in the image plane has both residuals near 0. Points
    the flow lost track of are outliers: the homography is fitted again without
    those far off the first fit.
    """
    reference, current = reference.astype(np.float64), current.astype(np.float64)
    homography = fit_homography(reference, current)
    errors = np.linalg.norm(apply_homography(homography, reference) - current, axis=1)
    inliers = errors <= 3.0 * max(_median(errors), 0.05)
    if inliers.sum() >= _MIN_POINTS and not inliers.all():
        reference, current = reference[inliers], current[inliers]
        homography = fit_homography(reference, current)
        errors = np.linalg.norm(apply_homography(homography, reference) - current, axis=1)
    moved = np.linalg.norm(similarity_fit(reference, current) - current, axis=1)
    return PlaneFit(_median(errors), _median(moved), homography)


def eye_aspect_ratio(mesh: np.ndarray) -> float:
    """The mean of both eyes' aspect ratios: about 0.3 open, near 0 closed."""
    ratios = []
    for p1, p2, p3, p4, p5, p6 in _EYES:
        width = float(np.linalg.norm(mesh[p1] - mesh[p4]))
        gap = float(np.linalg.norm(mesh[p2] - mesh[p6]) + np.linalg.norm(mesh[p3] - mesh[p5]))
        ratios.append(gap / (2 * width) if width > 0 else 0.0)
    return float(np.mean(ratios))


def has_blink(ratios: list[float], drop: float) -> bool:
    """Eyes open, closed, open again: the eye aspect ratio at or above the visit's median,
    then below ``drop`` times it, then back at or above it.

    The way back up matters: on a photo the mesh's eyelids jitter, and a dip that
    wanders back only part of the way is that jitter, not eyes opening.
    """
    if len(ratios) < 3:
        return False
    level = float(np.median(ratios))
    phase = 0  # 0: waiting for open eyes, 1: open, waiting for a close, 2: closed
    for ratio in ratios:
        if phase == 0 and ratio >= level:
            phase = 1
        elif phase == 1 and ratio < drop * level:
            phase = 2
        elif phase == 2 and ratio >= level:
            return True
    return False


@dataclass
class LivenessEvidence:
    """What one track has seen so far: ``observe`` each sighting.

    ``config`` holds the user's settings (``[liveness] frames``: sightings watched
    before the verdict is final); ``options`` the calibrated thresholds.
    """

    config: LivenessConfig
    options: LivenessOptions = field(default_factory=LivenessOptions)
    # Sightings so far.
    frames: int = 0
    nonplanar_frames: int = 0
    planar_frames: int = 0
    blinked: bool = False
    # Sightings turned too far (beyond max_yaw) to give evidence.
    profile_frames: int = 0
    ratios: list[float] = field(default_factory=list, repr=False)
    # The last frame's residual after the best homography (0 when tracking starts).
    last_residual: float = 0.0
    # Mismatched frames in a row (skipped).
    mismatches: int = 0
    # Where tracking started: the band-passed crop, the corners picked in it, and the
    # homography that maps them into the last crop. None until a crop had enough corners.
    template: np.ndarray | None = field(default=None, repr=False)
    origin: np.ndarray | None = field(default=None, repr=False)
    homography: np.ndarray = field(default_factory=lambda: np.eye(3), repr=False)

    def observe(self, mesh: np.ndarray | None, crop_rgb: np.ndarray, yaw: float = 0.0) -> None:
        """One sighting: ``crop_rgb`` (the aligned face) for the motion, ``mesh`` (if found) for
        blinks; ``yaw`` (degrees) the head's turn, beyond ``max_yaw`` no evidence at all."""
        if self.final:
            return
        self.frames += 1
        if abs(yaw) > self.options.max_yaw:
            self.profile_frames += 1
            self.template = self.origin = None
            return
        if mesh is not None:
            self.ratios.append(eye_aspect_ratio(mesh))
            self.blinked = self.blinked or has_blink(self.ratios, self.options.blink_drop)
        detail = band_pass(crop_rgb)
        if self.template is not None:
            self._follow(detail)
        if self.template is None:
            self._start(detail)

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
            return
        self.template, self.origin = detail, corners.reshape(-1, 2).astype(np.float64)
        self.homography = np.eye(3)
        self.last_residual, self.mismatches = 0.0, 0

    def _follow(self, detail: np.ndarray) -> None:
        """Find the corners in this crop, starting from the first crop warped by the homography so far."""
        if self.template is None or self.origin is None:
            return
        predicted = cv2.warpPerspective(
            self.template, self.homography, (_CROP, _CROP), borderMode=cv2.BORDER_REPLICATE
        )
        start = apply_homography(self.homography, self.origin).astype(np.float32)
        found, status, _ = cv2.calcOpticalFlowPyrLK(
            predicted,
            detail,
            start.reshape(-1, 1, 2),
            start.reshape(-1, 1, 2).copy(),
            winSize=(_WINDOW, _WINDOW),
            maxLevel=_LEVELS,
        )
        found = found.reshape(-1, 2)
        kept = (status.ravel() == 1) & np.all((start >= 0) & (start < _CROP), axis=1)
        if kept.sum() < _MIN_POINTS:
            self.template = self.origin = None
            return
        step = _median(np.linalg.norm(found[kept] - start[kept], axis=1))
        fit = residuals(self.origin[kept], found[kept])
        if step > _MAX_STEP or fit.planar - self.last_residual > self.options.max_jump:
            self.mismatches += 1
            if self.mismatches > _MAX_MISMATCHES:
                self.template = self.origin = None
            return
        self.origin, self.homography = self.origin[kept], fit.homography
        self.last_residual, self.mismatches = fit.planar, 0
        self.nonplanar_frames += fit.planar >= self.options.min_residual
        self.planar_frames += (
            fit.motion >= self.options.min_motion
            and fit.planar <= self.options.planar_share * fit.motion
        )

    @property
    def live(self) -> bool:
        needed = self.options.residual_frames + self.options.planar_weight * self.planar_frames
        return self.blinked or self.nonplanar_frames >= needed

    @property
    def final(self) -> bool:
        """Live already, or the window is full: later frames cannot change the verdict."""
        return self.live or self.frames >= self.config.frames

    def verdict(self) -> Liveness:
        if self.live:
            return Liveness.LIVE
        if self.planar_frames >= self.options.planar_frames:
            return Liveness.SUSPECT
        return Liveness.UNDECIDED
