"""Face alignment: a least-squares similarity transform to the ArcFace template.

The transform's rotation, scale and translation are rounded to a fine grid
(``ANGLE_STEP``, ``SCALE_STEP``, ``SHIFT_STEP``: each moves a crop's pixel
by a tenth of a pixel at most) before the warp. The int8 embedder turns a
one-grey-level change on half a percent of a crop's pixels into a cosine change
of about 0.007, and the float face mesh's last bits differ between machines
(x86_64 and aarch64 run other kernels): unrounded, those differences reach the
warp and then every similarity. Rounded, two machines whose points differ by
thousandths of a pixel warp the same crop, nearly always (on the Hamilton clip,
125 of 132 crops bit for bit between x86_64 and emulated aarch64; the others
one grid step apart, where the mesh had followed the face from its own last
points and the difference had grown to tenths of a pixel).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

CROP_SIZE = 112

# ArcFace 112x112 template: eye on the image's left, eye on the image's right,
# nose tip, left and right mouth corners.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)

# BlazeFace gives one mouth point (its centre), so the 4-point template uses
# the midpoint of the two mouth corners.
ARCFACE_TEMPLATE_4 = np.vstack([ARCFACE_TEMPLATE[:3], ARCFACE_TEMPLATE[3:].mean(axis=0)])


def estimate_similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """2x3 matrix of the similarity transform mapping source onto target.

    Umeyama's closed-form least-squares solution (rotation, uniform scale,
    translation; no reflection), as ``skimage.transform.SimilarityTransform``.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 2:
        raise ValueError("source and target must both be (N, 2) arrays")
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centred, target_centred = source - source_mean, target - target_mean
    covariance = target_centred.T @ source_centred / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    # The 2x2 determinants' signs by hand (u and vt are orthogonal: each is +-1), and the
    # reflection diag(1, -1) as a sign flip of vt's second row: the same numbers as
    # np.linalg.det and u @ diag(1, -1) @ vt, for a fraction of numpy's calls' cost.
    reflected = (u[0, 0] * u[1, 1] - u[0, 1] * u[1, 0]) * (
        vt[0, 0] * vt[1, 1] - vt[0, 1] * vt[1, 0]
    ) < 0
    if reflected:
        vt = vt * np.array([[1.0], [-1.0]])
    rotation = u @ vt
    source_variance = source_centred.var(axis=0).sum()
    if source_variance <= 0:
        raise ValueError("source points are degenerate")
    trace = singular[0] - singular[1] if reflected else singular[0] + singular[1]
    scale = float(trace / source_variance)
    translation = target_mean - scale * rotation @ source_mean
    return np.hstack([scale * rotation, translation[:, np.newaxis]])


# The grid a warp's parameters are rounded to (see the module's docstring): far
# finer than a face's landmarks are known (the mesh moves them by a pixel from frame
# to frame), far coarser than two machines' float differences on the same frame
# (thousandths of a pixel).
ANGLE_STEP = 0.125  # degrees: 0.0625 at most, under a tenth of a pixel at the crop's corners
SCALE_STEP = 0.002  # natural log of the scale: 0.1% at most, under a tenth at the corners
SHIFT_STEP = 0.125  # output pixels: a sixteenth at most


def on_grid(value: float, step: float) -> float:
    """``value`` rounded to the nearest multiple of ``step``."""
    return round(value / step) * step


def rounded_similarity(
    scale: float, angle: float, source_centre: np.ndarray, target_centre: np.ndarray
) -> np.ndarray:
    """2x3 matrix of the similarity that maps ``source_centre`` onto (nearly) ``target_centre``
    with ``scale`` and ``angle`` (degrees, counter-clockwise in image axes as
    ``cv2.getRotationMatrix2D``), each parameter rounded to the grid above."""
    scale = math.exp(on_grid(math.log(scale), SCALE_STEP))
    radians = math.radians(on_grid(angle, ANGLE_STEP))
    cos, sin = scale * math.cos(radians), scale * math.sin(radians)
    linear = np.array([[cos, sin], [-sin, cos]])
    shift = np.asarray(target_centre, dtype=np.float64) - linear @ np.asarray(source_centre)
    shift = np.array([on_grid(float(v), SHIFT_STEP) for v in shift])
    return np.hstack([linear, shift[:, np.newaxis]])


def template_for(points: int) -> np.ndarray:
    """The ArcFace template for 4 (BlazeFace) or 5 (eyes, nose, mouth corners) points."""
    if points == 4:
        return ARCFACE_TEMPLATE_4
    if points == 5:
        return ARCFACE_TEMPLATE
    raise ValueError(f"alignment needs 4 or 5 points, got {points}")


def align_face(image: np.ndarray, points: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Warp the face whose landmarks are ``points`` into a ``size`` x ``size`` crop."""
    template = template_for(len(points)) * (size / CROP_SIZE)
    fitted = estimate_similarity(points, template)
    scale = math.hypot(fitted[0, 0], fitted[1, 0])
    angle = math.degrees(math.atan2(fitted[0, 1], fitted[0, 0]))
    points = np.asarray(points, dtype=np.float64)
    matrix = rounded_similarity(scale, angle, points.mean(axis=0), template.mean(axis=0))
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)
