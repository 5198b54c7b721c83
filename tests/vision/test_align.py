"""The similarity transform, its rounding and the warp, against transforms known by construction."""

from __future__ import annotations

import math

import cv2
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from device.vision.align import (
    ARCFACE_TEMPLATE,
    ARCFACE_TEMPLATE_4,
    SHIFT_STEP,
    align_face,
    estimate_similarity,
    rounded_similarity,
)


def similarity_matrix(scale: float, angle: float, tx: float, ty: float) -> np.ndarray:
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty]])


@settings(max_examples=200, deadline=None)
@given(
    scale=st.floats(0.2, 5.0),
    angle=st.floats(-math.pi, math.pi),
    tx=st.floats(-500, 500),
    ty=st.floats(-500, 500),
)
def test_recovers_an_exact_similarity(scale: float, angle: float, tx: float, ty: float) -> None:
    matrix = similarity_matrix(scale, angle, tx, ty)
    source = ARCFACE_TEMPLATE * 3 + 17
    target = source @ matrix[:, :2].T + matrix[:, 2]
    assert np.allclose(estimate_similarity(source, target), matrix, atol=1e-6 * max(1, scale * 500))


def test_least_squares_with_noisy_points_is_close() -> None:
    rng = np.random.default_rng(1)
    matrix = similarity_matrix(1.7, 0.3, 40, -12)
    source = ARCFACE_TEMPLATE_4 * 2
    target = source @ matrix[:, :2].T + matrix[:, 2] + rng.normal(0, 0.5, source.shape)
    estimate = estimate_similarity(source, target)
    assert np.allclose(estimate, matrix, atol=0.6)


def test_never_reflects() -> None:
    mirrored = ARCFACE_TEMPLATE_4 * np.array([-1.0, 1.0])
    matrix = estimate_similarity(mirrored, ARCFACE_TEMPLATE_4)
    assert np.linalg.det(matrix[:, :2]) > 0


def test_align_moves_the_landmarks_onto_the_template() -> None:
    """Draw dots at known landmarks in a rotated, scaled frame; after alignment they sit on the template."""
    matrix = similarity_matrix(2.5, math.radians(20), 150, 60)
    points = ARCFACE_TEMPLATE_4 @ matrix[:, :2].T + matrix[:, 2]
    frame = np.zeros((480, 640, 3), dtype=np.uint8)
    for x, y in points:
        cv2.circle(frame, (round(x), round(y)), 6, (255, 255, 255), -1)
    crop = align_face(frame, points)
    assert crop.shape == (112, 112, 3)
    for x, y in ARCFACE_TEMPLATE_4:
        assert crop[round(y), round(x)].min() > 200


@settings(max_examples=300, deadline=None)
@given(
    scale=st.floats(0.2, 5.0),
    angle=st.floats(-math.pi, math.pi),
    x=st.floats(-500, 500),
    y=st.floats(-500, 500),
)
def test_the_rounded_warp_moves_no_crop_pixel_by_a_tenth_of_a_pixel(
    scale: float, angle: float, x: float, y: float
) -> None:
    """Each parameter's rounding moves a crop pixel by under a tenth of a pixel (all three
    together by about a fifth at the crop's corners, a sixteenth at its centre)."""
    centre = np.array([x, y])
    exact = cv2.getRotationMatrix2D((x, y), math.degrees(angle), scale)
    exact[:, 2] += np.array([56.0, 56.0]) - centre
    rounded = rounded_similarity(scale, math.degrees(angle), centre, np.array([56.0, 56.0]))
    corners = np.array([[0.0, 0.0], [111.0, 0.0], [0.0, 111.0], [111.0, 111.0]])
    # The frame points that land on the crop's corners, and where the rounded warp puts them.
    inverse = cv2.invertAffineTransform(exact)
    sources = corners @ inverse[:, :2].T + inverse[:, 2]
    moved = sources @ rounded[:, :2].T + rounded[:, 2]
    assert np.abs(moved - corners).max() < 0.2
    assert np.abs(rounded @ np.array([x, y, 1.0]) - 56.0).max() <= SHIFT_STEP / 2 + 1e-9


def test_two_machines_a_thousandth_of_a_pixel_apart_warp_the_same_crop() -> None:
    """The float face mesh's last bits differ between x86_64 and aarch64; the crop must not."""
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    frame = cv2.GaussianBlur(noise, (0, 0), 2.0)  # a photo's smooth detail, not pure noise
    matrix = similarity_matrix(2.5, math.radians(12), 180, 90)
    same = 0
    for _ in range(50):
        points = ARCFACE_TEMPLATE @ matrix[:, :2].T + matrix[:, 2] + rng.normal(0, 3, (5, 2))
        nudged = points + rng.uniform(-0.001, 0.001, points.shape)
        same += np.array_equal(align_face(frame, points), align_face(frame, nudged))
    # Unrounded, each of these nudges changes some pixels of the crop (none of 50 the same).
    assert same >= 45
