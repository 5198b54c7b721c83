"""Presentation attacks rendered from still photos: a printed photo or a phone screen held up to the camera.

Each sequence is ``seconds`` long at the camera's frame rate. The photo is a
plane in 3D: a random smooth walk of hand shake (translation and roll), tilt
(rotation about the plane's horizontal and vertical axes) and approach
(distance) gives one homography per frame through a pinhole camera. A print
loses contrast, is blurred and catches a glare that slides over it as it
moves; a screen gets a dark bezel, a gamma curve and a moiré pattern (drawn
on the screen's pixels, so it moves with the screen; a real moiré also drifts
against it, which this generator does not model). The background is a random smooth
colour field with sensor noise on top. Everything comes from one seeded
generator, so a sequence is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import cv2
import numpy as np

FRAME_W, FRAME_H = 640, 480
FOCAL = 700.0  # pixels: about a 50 degree horizontal field of view on 640 px


class Attack(StrEnum):
    PRINT = "print"
    SCREEN = "screen"


@dataclass(frozen=True)
class AttackOptions:
    fps: float = 15.0
    seconds: float = 2.2
    # Width of the photo in the frame, in pixels, at the start (before approach).
    min_width: float = 200.0
    max_width: float = 300.0
    # Largest tilt of the plane, degrees, about each axis.
    max_tilt: float = 20.0
    # Largest in-plane roll of the hand, degrees.
    max_roll: float = 8.0
    # The photo may come this much closer (relative distance) over the sequence.
    max_approach: float = 0.3


def smooth_walk(rng: np.random.Generator, count: int, amplitude: float) -> np.ndarray:
    """A slow random curve in [-amplitude, amplitude]: a hand does not jump between frames."""
    knots = rng.uniform(-amplitude, amplitude, size=4)
    positions = np.linspace(0, 3, count)
    curve = np.interp(positions, np.arange(4), knots)
    shake = rng.normal(0, amplitude * 0.03, size=count)
    return np.asarray(curve + shake)


def plane_homography(
    width: int,
    height: int,
    tilt_x: float,
    tilt_y: float,
    roll: float,
    centre: np.ndarray,
    depth: float,
) -> np.ndarray:
    """Homography from photo pixels to frame pixels for a photo plane posed in front of a pinhole."""
    rx, ry, rz = (math.radians(a) for a in (tilt_x, tilt_y, roll))
    rot_x = np.array([[1, 0, 0], [0, math.cos(rx), -math.sin(rx)], [0, math.sin(rx), math.cos(rx)]])
    rot_y = np.array([[math.cos(ry), 0, math.sin(ry)], [0, 1, 0], [-math.sin(ry), 0, math.cos(ry)]])
    rot_z = np.array([[math.cos(rz), -math.sin(rz), 0], [math.sin(rz), math.cos(rz), 0], [0, 0, 1]])
    rotation = rot_z @ rot_y @ rot_x
    camera = np.array([[FOCAL, 0, FRAME_W / 2], [0, FOCAL, FRAME_H / 2], [0, 0, 1]])
    # The plane's centre sits on the ray through ``centre`` at ``depth``.
    translation = np.array(
        [
            (centre[0] - FRAME_W / 2) * depth / FOCAL,
            (centre[1] - FRAME_H / 2) * depth / FOCAL,
            depth,
        ]
    )
    extrinsic = np.column_stack([rotation[:, 0], rotation[:, 1], translation])
    to_centre = np.array([[1, 0, -width / 2], [0, 1, -height / 2], [0, 0, 1]])
    homography: np.ndarray = camera @ extrinsic @ to_centre
    return np.asarray(homography / homography[2, 2])


def _background(rng: np.random.Generator) -> np.ndarray:
    small = rng.uniform(40, 220, size=(3, 4, 3)).astype(np.float32)
    return cv2.resize(small, (FRAME_W, FRAME_H), interpolation=cv2.INTER_CUBIC)


def _as_print(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Paper: a white margin, contrast loss towards grey, a little blur."""
    margin = int(photo.shape[1] * rng.uniform(0.03, 0.1))
    paper = cv2.copyMakeBorder(
        photo, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=(235, 235, 230)
    )
    contrast = rng.uniform(0.55, 0.85)
    image = paper.astype(np.float32) * contrast + (1 - contrast) * 150.0
    sigma = rng.uniform(0.5, 1.5)
    return np.asarray(cv2.GaussianBlur(image, (0, 0), sigma))


def _as_screen(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A phone: gamma, stripes standing in for the moiré of its pixel grid, a dark bezel."""
    gamma = rng.uniform(0.7, 1.4)
    image = 255.0 * (photo.astype(np.float32) / 255.0) ** gamma
    height, width = image.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    period = rng.uniform(3.0, 8.0)
    wave = np.sin(2 * math.pi * (xx * math.cos(angle) + yy * math.sin(angle)) / period)
    image *= (1.0 + rng.uniform(0.04, 0.12) * wave)[..., np.newaxis]
    image = np.clip(image * rng.uniform(0.85, 1.1) + rng.uniform(0, 20), 0, 255)
    bezel = int(width * rng.uniform(0.04, 0.1))
    return np.asarray(
        cv2.copyMakeBorder(
            image, bezel * 2, bezel * 2, bezel, bezel, cv2.BORDER_CONSTANT, value=(12, 12, 14)
        )
    )


def _glare(
    frame: np.ndarray, rng: np.random.Generator, centre: np.ndarray, strength: float
) -> None:
    radius = rng.uniform(30, 80)
    yy, xx = np.ogrid[0:FRAME_H, 0:FRAME_W]
    blob = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * radius**2))
    frame += (strength * blob)[..., np.newaxis]


def render_attack(
    photo_rgb: np.ndarray, kind: Attack, seed: int, options: AttackOptions | None = None
) -> list[np.ndarray]:
    """RGB frames (FRAME_H x FRAME_W) of ``photo_rgb`` held up to the camera."""
    options = options or AttackOptions()
    rng = np.random.default_rng(seed)
    count = max(2, round(options.fps * options.seconds))
    medium = _as_print(photo_rgb, rng) if kind is Attack.PRINT else _as_screen(photo_rgb, rng)
    height, width = medium.shape[:2]
    start_width = rng.uniform(options.min_width, options.max_width)
    depth0 = FOCAL * width / start_width
    approach = rng.uniform(0, options.max_approach)
    depths = depth0 * (1 - approach * np.linspace(0, 1, count))
    tilt_x = smooth_walk(rng, count, options.max_tilt)
    tilt_y = smooth_walk(rng, count, options.max_tilt)
    roll = smooth_walk(rng, count, options.max_roll)
    centre = np.array([FRAME_W / 2, FRAME_H / 2]) + rng.uniform(-60, 60, size=2)
    shift_x = smooth_walk(rng, count, 25.0)
    shift_y = smooth_walk(rng, count, 20.0)
    background = _background(rng)
    glare = kind is Attack.PRINT or rng.random() < 0.5
    glare_strength = rng.uniform(30, 90)
    glare_start = centre + rng.uniform(-80, 80, size=2)
    frames = []
    for i in range(count):
        where = centre + np.array([shift_x[i], shift_y[i]])
        homography = plane_homography(
            width, height, tilt_x[i], tilt_y[i], roll[i], where, depths[i]
        )
        warped = cv2.warpPerspective(medium, homography, (FRAME_W, FRAME_H), flags=cv2.INTER_LINEAR)
        mask = cv2.warpPerspective(
            np.ones((height, width), np.float32),
            homography,
            (FRAME_W, FRAME_H),
            flags=cv2.INTER_LINEAR,
        )[..., np.newaxis]
        frame: np.ndarray = background * (1 - mask) + warped * mask
        if glare:
            _glare(
                frame, rng, glare_start + np.array([shift_x[i], shift_y[i]]) * 1.5, glare_strength
            )
        frame += rng.normal(0, 2.5, size=frame.shape).astype(np.float32)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames
