"""Detection on a small stream (picamera2's lores) with crops from the full frame."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from device.config import Config
from device.vision.embedder import FaceEmbedder
from device.vision.pipeline import FacePipeline
from tests.conftest import require_shared


def clip_frame(index: int) -> np.ndarray:
    capture = cv2.VideoCapture(str(require_shared("data/video/short_hamilton_clip.mp4")))
    capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, bgr = capture.read()
    capture.release()
    assert ok
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def test_faces_found_on_the_small_stream_land_on_the_full_frame(
    reference_f32: tuple[Path, Path],
) -> None:
    pipeline = FacePipeline.from_config(Config(), FaceEmbedder.from_files(*reference_f32))
    full = clip_frame(160)  # Lin-Manuel Miranda, facing the camera
    small = cv2.resize(full, (320, 180), interpolation=cv2.INTER_AREA)
    direct = pipeline.analyse(full)
    via_small = pipeline.analyse(full, detect_rgb=small)
    assert len(direct) == len(via_small) == 1
    assert np.allclose(direct[0].detection.box, via_small[0].detection.box, atol=3.0)
    assert via_small[0].crop.shape == (112, 112, 3)
    assert direct[0].embedding is not None and via_small[0].embedding is not None
    assert float(direct[0].embedding @ via_small[0].embedding) > 0.95
