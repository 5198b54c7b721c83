"""Face-mesh refinement: the five ArcFace points found again on pre-aligned faces."""

from __future__ import annotations

import cv2
import numpy as np

from device.vision.align import ARCFACE_TEMPLATE
from device.vision.detector import FaceDetector
from device.vision.landmarks import FaceMesh
from tests.conftest import read_bgr, require_shared


def test_five_points_land_on_the_template_of_prealigned_faces() -> None:
    detector, mesh = FaceDetector.create(), FaceMesh.create()
    root = require_shared("data/celebrity112")
    errors = []
    for person in sorted(root.iterdir()):
        for path in sorted(person.glob("*.png"))[:2]:
            crop = cv2.cvtColor(read_bgr(path), cv2.COLOR_BGR2RGB)
            padded = cv2.copyMakeBorder(crop, 56, 56, 56, 56, cv2.BORDER_CONSTANT, value=0)
            detection = max(detector.detect(padded), key=lambda d: d.score)
            points = mesh.five_points(padded, detection)
            assert points is not None, path
            errors.append(np.linalg.norm(points - 56.0 - ARCFACE_TEMPLATE, axis=1))
    median = np.median(np.array(errors), axis=0)
    # Eye centres and mouth corners within a few pixels (inter-ocular distance 35 px).
    assert median[[0, 1, 3, 4]].max() < 4.5
    # The mesh's nose tip sits lower than the template's nose point on most faces.
    assert median[2] < 9.0


def test_no_mesh_on_a_faceless_patch() -> None:
    from device.vision.detector import Detection

    mesh = FaceMesh.create()
    wall = np.full((300, 300, 3), 90, dtype=np.uint8)
    fake = Detection(
        box=(100.0, 100.0, 200.0, 200.0),
        keypoints=np.array(
            [[130, 130], [170, 130], [150, 150], [150, 175], [110, 140], [190, 140]],
            dtype=np.float32,
        ),
        score=0.9,
    )
    assert mesh.five_points(wall, fake) is None
