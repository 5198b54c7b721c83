"""The quality gate on real faces and on degraded copies of them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from device.config import Config
from device.vision.imageio import read_image
from device.vision.pipeline import FaceAnalysis, FacePipeline
from device.vision.quality import RejectReason
from tests.conftest import require_shared

SHARP_FACES = [
    "Abel_Pacheco/Abel_Pacheco_0004.jpg",
    "Akhmed_Zakayev/Akhmed_Zakayev_0001.jpg",
    "Aaron_Peirsol/Aaron_Peirsol_0001.jpg",
    "Abdullah_Gul/Abdullah_Gul_0001.jpg",
]


@pytest.fixture(scope="module")
def pipeline() -> FacePipeline:
    return FacePipeline.from_config(Config())


def lfw(name: str) -> np.ndarray:
    return read_image(require_shared(f"data/lfw/images/{name}"))


def only_face(pipeline: FacePipeline, image: np.ndarray) -> FaceAnalysis:
    faces = pipeline.analyse(image, embed=False)
    assert len(faces) == 1
    return faces[0]


@pytest.mark.parametrize("name", SHARP_FACES)
def test_sharp_frontal_faces_pass(pipeline: FacePipeline, name: str) -> None:
    face = only_face(pipeline, lfw(name))
    assert face.accepted, face.quality


@pytest.mark.parametrize("name", SHARP_FACES)
def test_blurred_copies_are_rejected_as_blurry(pipeline: FacePipeline, name: str) -> None:
    image = lfw(name)
    sharp = only_face(pipeline, image)
    # Sigma of 5% of the inter-ocular distance: a slightly out-of-focus face.
    sigma = 0.05 * sharp.detection.eye_distance
    blurred = pipeline.analyse_detection(cv2.GaussianBlur(image, (0, 0), sigma), sharp.detection)
    assert RejectReason.BLURRY in blurred.quality.reasons
    assert blurred.quality.sharpness < sharp.quality.sharpness / 3


def test_small_faces_are_rejected_as_too_small(pipeline: FacePipeline) -> None:
    image = lfw(SHARP_FACES[0])
    frame = np.zeros((200, 200, 3), dtype=np.uint8)
    frame[55:145, 55:145] = cv2.resize(image, (90, 90), interpolation=cv2.INTER_AREA)
    face = only_face(pipeline, frame)
    assert face.detection.eye_distance < Config().quality.min_eye_distance
    assert RejectReason.TOO_SMALL in face.quality.reasons


def test_dark_and_burnt_faces_are_rejected(pipeline: FacePipeline) -> None:
    image = lfw(SHARP_FACES[1])
    face = only_face(pipeline, image)
    dark = pipeline.analyse_detection((image * 0.2).astype(np.uint8), face.detection)
    bright = pipeline.analyse_detection(
        np.clip(image.astype(np.int32) * 3 + 60, 0, 255).astype(np.uint8), face.detection
    )
    assert RejectReason.UNDEREXPOSED in dark.quality.reasons
    assert RejectReason.OVEREXPOSED in bright.quality.reasons


def test_tilted_heads_are_rejected_for_roll(pipeline: FacePipeline) -> None:
    image = lfw(SHARP_FACES[0])
    rotation = cv2.getRotationMatrix2D((125, 125), 50, 1.0)
    tilted = cv2.warpAffine(image, rotation, (250, 250))
    face = only_face(pipeline, tilted)
    assert abs(face.quality.roll) > 35
    assert RejectReason.ROLL in face.quality.reasons


def test_rejected_faces_never_reach_the_embedder(reference_f32: tuple[Path, Path]) -> None:
    from device.vision.embedder import FaceEmbedder

    config = Config()
    config.quality.min_score = 1.01  # nothing can pass
    pipeline = FacePipeline.from_config(config, FaceEmbedder.from_files(*reference_f32))
    faces = pipeline.analyse(lfw(SHARP_FACES[0]))
    assert faces and all(f.embedding is None and not f.accepted for f in faces)
    config.quality.min_score = 0.5
    assert all(f.embedding is not None for f in pipeline.analyse(lfw(SHARP_FACES[0])))
