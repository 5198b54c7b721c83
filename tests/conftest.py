"""Shared fixtures: where the shared data is, and the reference models with manifests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"

# The Mosquitto broker fixtures (broker, module_broker, mosquitto_path, pki) for every module.
pytest_plugins = ["tests.broker"]


def shared_root() -> Path:
    return Path(os.environ.get("PEEPHOLE_SHARED", ROOT.parent / "shared"))


def missing(message: str) -> NoReturn:
    """Something a test needs is absent: a failure on CI (which installs everything), a skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_shared(relative: str) -> Path:
    """A path under the shared data; missing data fails on CI and skips elsewhere."""
    path = shared_root() / relative
    if not path.exists():
        missing(f"shared data missing: {path}")
    return path


def read_bgr(path: Path) -> np.ndarray:
    """``cv2.imread`` (BGR) that fails the test on an unreadable file instead of giving None."""
    image = cv2.imread(str(path))
    assert image is not None, f"cannot read image {path}"
    return image


@pytest.fixture(scope="session")
def shared() -> Path:
    return require_shared(".")


@pytest.fixture(scope="session")
def reference_f32() -> tuple[Path, Path]:
    """(model, manifest) of the reference float MobileFaceNet."""
    model = require_shared("models/reference/mobilefacenet_insightface_f32.tflite")
    return model, FIXTURES / "mobilefacenet_insightface_f32.json"


@pytest.fixture(scope="session")
def reference_uint8() -> tuple[Path, Path]:
    model = require_shared("models/reference/mobilefacenet_insightface_uint8.tflite")
    return model, FIXTURES / "mobilefacenet_insightface_uint8.json"
