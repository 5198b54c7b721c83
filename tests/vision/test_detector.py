"""BlazeFace on real images: keypoints against a known truth, counts, and anchors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from device.vision.align import ARCFACE_TEMPLATE_4
from device.vision.detector import DetectorVariant, FaceDetector, FaceDetectorOptions, ssd_anchors
from device.vision.imageio import read_image
from tests.conftest import read_bgr, require_shared


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector.create()


def celebrity_crops(limit_per_person: int = 3) -> list[Path]:
    root = require_shared("data/celebrity112")
    return [
        p
        for person in sorted(root.iterdir())
        for p in sorted(person.glob("*.png"))[:limit_per_person]
    ]


def test_anchor_counts_match_the_models() -> None:
    assert len(ssd_anchors(128, (8, 16, 16, 16), 2)) == 896
    assert len(ssd_anchors(192, (4,), 1)) == 2304


def test_keypoints_land_on_the_template_of_prealigned_faces(detector: FaceDetector) -> None:
    """celebrity112 crops are aligned to the ArcFace template: the detector must find it again.

    Each crop is padded to 224x224 so the face is at the scale BlazeFace expects.
    """
    errors = []
    for path in celebrity_crops():
        crop = cv2.cvtColor(read_bgr(path), cv2.COLOR_BGR2RGB)
        padded = cv2.copyMakeBorder(crop, 56, 56, 56, 56, cv2.BORDER_CONSTANT, value=0)
        faces = detector.detect(padded)
        assert faces, f"no face found in {path}"
        face = max(faces, key=lambda f: f.score)
        keypoints = face.keypoints[:4] - 56.0
        errors.append(np.linalg.norm(keypoints - ARCFACE_TEMPLATE_4, axis=1))
    errors_px = np.array(errors)
    # Eyes within a few pixels of the template (inter-ocular distance is 35 px).
    assert np.median(errors_px[:, :2]) < 3.0
    assert np.percentile(errors_px[:, :2], 90) < 6.0
    # Nose tip and mouth centre are looser landmarks in BlazeFace.
    assert np.median(errors_px[:, 2:]) < 6.0


def test_box_contains_keypoints_on_lfw(detector: FaceDetector) -> None:
    image = read_image(require_shared("data/lfw/images/Abel_Pacheco/Abel_Pacheco_0001.jpg"))
    faces = detector.detect(image)
    assert len(faces) == 1
    face = faces[0]
    x0, y0, x1, y1 = face.box
    # LFW's deep-funnelled images centre the face in the 250x250 frame.
    assert abs((x0 + x1) / 2 - 125) < 25 and abs((y0 + y1) / 2 - 125) < 30
    assert 70 < face.width < 160
    for x, y in face.keypoints[:4]:
        assert x0 <= x <= x1 and y0 <= y <= y1
    left_eye, right_eye = face.keypoints[0], face.keypoints[1]
    assert left_eye[0] < right_eye[0], "keypoint 0 must be the eye on the image's left"


def test_no_face_in_a_faceless_image(detector: FaceDetector) -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
    gradient = np.tile(np.linspace(0, 255, 640, dtype=np.uint8)[None, :, None], (360, 1, 3))
    assert detector.detect(noise) == []
    assert detector.detect(gradient) == []
    assert detector.detect(np.zeros((480, 640, 3), dtype=np.uint8)) == []


def test_two_faces_side_by_side(detector: FaceDetector) -> None:
    first = read_image(require_shared("data/lfw/images/Abel_Pacheco/Abel_Pacheco_0001.jpg"))
    second = read_image(require_shared("data/lfw/images/Akhmed_Zakayev/Akhmed_Zakayev_0001.jpg"))
    frame = np.hstack([first, second])
    faces = detector.detect(frame)
    assert len(faces) == 2
    centres = sorted((f.box[0] + f.box[2]) / 2 for f in faces)
    assert centres[0] < 250 < centres[1]


def test_letterbox_maps_back_to_frame_coordinates(detector: FaceDetector) -> None:
    """The same face placed in a wide frame is found at the same place, shifted."""
    face_image = read_image(require_shared("data/lfw/images/Abel_Pacheco/Abel_Pacheco_0001.jpg"))
    wide = np.zeros((250, 750, 3), dtype=np.uint8)
    wide[:, 400:650] = face_image
    alone = detector.detect(face_image)[0]
    placed = detector.detect(wide)
    assert len(placed) == 1
    shift = placed[0].keypoints[:4] - alone.keypoints[:4] - np.array([400.0, 0.0])
    # The wide frame reaches the 128 px model at 1/5.9 scale: allow two model pixels.
    model_pixel = 750 / 128
    assert np.abs(shift).max() < 2 * model_pixel
    # A letterbox bug (padding or scale ignored) would be off by tens of pixels.
    assert np.abs(shift.mean(axis=0)).max() < model_pixel


def test_full_range_model_finds_small_faces() -> None:
    detector = FaceDetector.create(FaceDetectorOptions(variant=DetectorVariant.FULL_RANGE))
    image = read_image(require_shared("data/lfw/images/Abel_Pacheco/Abel_Pacheco_0001.jpg"))
    frame = np.zeros((720, 1280, 3), dtype=np.uint8)
    small = cv2.resize(image, (125, 125))
    frame[300:425, 600:725] = small
    faces = detector.detect(frame)
    assert len(faces) == 1
    assert 600 < faces[0].box[0] < 690
