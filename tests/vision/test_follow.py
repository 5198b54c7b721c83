"""Which frames run the detector: a still doorstep skips it, a followed face is found from
its mesh, and the detector takes over when the face is lost or jumps."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from bench.doorstep import WALKING, Doorstep, empty_plate
from device.config import Config, MotionConfig, TrackingConfig
from device.service.tracker import iou
from device.vision.follow import FaceFollower, Work
from device.vision.pipeline import FaceAnalysis, FacePipeline
from tests.conftest import require_shared
from tests.vision.test_motion import with_face
from tests.visit_helpers import LIN


@pytest.fixture(scope="module")
def pipeline() -> FacePipeline:
    config = Config()
    config.detector.num_threads = 1
    return FacePipeline.from_config(config)


@pytest.fixture(scope="module")
def door() -> Doorstep:
    return Doorstep(empty_plate(require_shared(WALKING).parents[2]), seed=7)


Scene = Callable[[int], np.ndarray]


def watch(
    follower: FaceFollower, scene: Scene, frames: int
) -> tuple[list[Work], list[list[FaceAnalysis]]]:
    """Each frame's work and faces; a visitor is followed while the last frame had a face
    (the camera loop asks its tracker)."""
    work: list[Work] = []
    seen: list[list[FaceAnalysis]] = []
    for t in range(frames):
        before = follower.work.copy()
        faces = follower.analyse(scene(t), followed=bool(seen and seen[-1]))
        (done,) = (follower.work - before).keys()
        work.append(done)
        seen.append(faces)
    return work, seen


def detected_at(work: list[Work]) -> list[int]:
    return [t for t, done in enumerate(work) if done is Work.DETECT]


def test_a_still_doorstep_skips_the_detector_but_for_the_safety_detection(
    pipeline: FacePipeline, door: Doorstep
) -> None:
    motion = MotionConfig(safety_interval=15)
    follower = FaceFollower(pipeline, motion, TrackingConfig())
    work, seen = watch(follower, door.frame, 60)
    assert detected_at(work) == [0, 15, 30, 45]
    assert not any(seen)


def test_a_face_the_gate_missed_is_found_within_the_safety_interval(
    pipeline: FacePipeline, door: Doorstep
) -> None:
    # A gate that never sees a change: only the safety detection can find the visitor.
    blind = MotionConfig(min_cells=100_000, safety_interval=15)
    follower = FaceFollower(pipeline, blind, TrackingConfig())
    arrives = 20
    face = require_shared(LIN)
    _, seen = watch(
        follower, lambda t: with_face(door.frame(t), face) if t >= arrives else door.frame(t), 40
    )
    found = next(t for t, faces in enumerate(seen) if faces)
    assert arrives <= found < arrives + blind.safety_interval


def test_with_the_gate_a_face_is_found_on_its_first_frame(
    pipeline: FacePipeline, door: Doorstep
) -> None:
    follower = FaceFollower(pipeline, MotionConfig(), TrackingConfig())
    face = require_shared(LIN)
    work, seen = watch(
        follower, lambda t: with_face(door.frame(t), face) if t >= 20 else door.frame(t), 22
    )
    assert work[20] is Work.DETECT and seen[20] and not any(seen[:20])


def test_a_followed_face_is_found_from_its_mesh_and_the_detector_takes_over_when_it_leaves(
    pipeline: FacePipeline, door: Doorstep
) -> None:
    follower = FaceFollower(pipeline, MotionConfig(), TrackingConfig(detect_interval=10))
    face = require_shared(LIN)
    work, seen = watch(
        follower, lambda t: with_face(door.frame(t), face) if t < 25 else door.frame(t), 27
    )
    # The detector on the first frame and every 10th; the mesh alone in between.
    assert detected_at(work[:25]) == [0, 10, 20]
    assert all(done is Work.FOLLOW for t, done in enumerate(work[:25]) if t % 10)
    detected, followed = seen[0][0], seen[1][0]
    assert followed.mesh is not None and followed.accepted
    assert iou(followed.detection.box, detected.detection.box) > 0.7
    assert followed.detection.score == detected.detection.score
    # The face went: the mesh no longer sees it and the detector runs on that frame.
    assert work[25] is Work.DETECT and seen[25] == []


def test_a_face_that_jumps_is_detected_again_where_it_went(
    pipeline: FacePipeline, door: Doorstep
) -> None:
    follower = FaceFollower(pipeline, MotionConfig(), TrackingConfig())
    face = require_shared(LIN)
    work, seen = watch(
        follower, lambda t: with_face(door.frame(t), face, left=40 if t < 3 else 240), 5
    )
    assert work == [Work.DETECT, Work.FOLLOW, Work.FOLLOW, Work.DETECT, Work.FOLLOW]
    assert seen[3][0].detection.box[0] > seen[2][0].detection.box[0] + 150


def test_switched_off_every_frame_runs_the_detector(pipeline: FacePipeline, door: Doorstep) -> None:
    follower = FaceFollower(pipeline, MotionConfig(enabled=False), TrackingConfig(enabled=False))
    face = require_shared(LIN)
    work, _ = watch(
        follower, lambda t: with_face(door.frame(t), face) if t >= 5 else door.frame(t), 10
    )
    assert work == [Work.DETECT] * 10
