"""The motion gate on an empty doorstep with a sensor's noise, light changes and a visitor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.doorstep import WALKING, Doorstep, empty_plate
from device.config import MotionConfig
from device.vision.imageio import read_image
from device.vision.motion import MotionGate
from tests.conftest import require_shared
from tests.visit_helpers import LIN


@pytest.fixture(scope="module")
def plate() -> np.ndarray:
    return empty_plate(require_shared(WALKING).parents[2])  # made from the walking clip


def with_face(frame: np.ndarray, photo: Path, left: int = 140, top: int = 30) -> np.ndarray:
    """The frame with the photo's face standing in it (the photo's own pixels)."""
    face = read_image(photo)[::3, ::3]
    height = min(face.shape[0], frame.shape[0] - top)
    width = min(face.shape[1], frame.shape[1] - left)
    shown = frame.copy()
    shown[top : top + height, left : left + width] = face[:height, :width]
    return shown


def changes(gate: MotionGate, frames: list[np.ndarray]) -> list[int]:
    return [t for t, frame in enumerate(frames) if gate.changed(frame)]


def test_a_still_doorstep_with_sensor_noise_does_not_change(plate: np.ndarray) -> None:
    door = Doorstep(plate, seed=1)
    gate = MotionGate(MotionConfig())
    # The first frame is the background's start: it always counts as a change.
    assert changes(gate, [door.frame(t) for t in range(300)]) == [0]


def test_a_slow_light_change_does_not_trigger(plate: np.ndarray) -> None:
    # Half the light in 20 s at 15 fps, brighter on one side as it goes.
    door = Doorstep(plate, seed=2, light_drop=0.5, light_frames=300)
    gate = MotionGate(MotionConfig())
    assert changes(gate, [door.frame(t) for t in range(400)]) == [0]


def test_a_cloud_dimming_the_whole_frame_at_once_does_not_trigger(plate: np.ndarray) -> None:
    door = Doorstep(plate, seed=3)
    gate = MotionGate(MotionConfig())
    frames = [door.frame(t) for t in range(30)]
    frames += [(frame * 0.7).astype(np.uint8) for frame in (door.frame(t) for t in range(30))]
    assert changes(gate, frames) == [0]


def test_a_visitor_stepping_in_is_a_change(plate: np.ndarray) -> None:
    door = Doorstep(plate, seed=4)
    gate = MotionGate(MotionConfig())
    changes(gate, [door.frame(t) for t in range(30)])
    assert gate.changed(with_face(door.frame(30), require_shared(LIN)))


def test_a_lamp_swinging_a_hand_either_way_is_a_change(plate: np.ndarray) -> None:
    # 20 pixels of 480 either way every 3 s: the gate sees it while it moves fast.
    door = Doorstep(plate, seed=5, sway=20.0)
    gate = MotionGate(MotionConfig())
    assert len(changes(gate, [door.frame(t) for t in range(90)])) > 10
