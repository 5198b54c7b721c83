"""What this machine runs the door with, as JSON: the architecture, every installed
distribution's version, and how each of the door's models maps onto XNNPACK.

Run by scripts/arm64/door.sh with the virtual environment's Python, on x86 and
inside the emulated aarch64 root alike. The embedding model must be one
XNNPACK partition (fully delegated) on both; the float detector and face mesh
are reported as they are.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import re
import sys

from device.vision.detector import default_model_dir
from device.vision.embedder import default_model_path
from device.vision.landmarks import MESH_FILE
from device.vision.tflite import interpreter_class


def partitions(path: str) -> int:
    """XNNPACK delegate partitions: each is one DELEGATE node in the execution plan."""
    _, interpreter_cls = interpreter_class()
    interpreter = interpreter_cls(model_path=path, num_threads=1)
    interpreter.allocate_tensors()
    return sum(op["op_name"] == "DELEGATE" for op in interpreter._get_ops_details())


def main() -> None:
    detectors = default_model_dir()
    models = {
        "embedder": str(default_model_path()),
        "detector": str(detectors / "face_detection_short_range.tflite"),
        "face_mesh": str(detectors / MESH_FILE),
    }
    report = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "wheels": {
            re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower(): dist.version
            for dist in importlib.metadata.distributions()
        },
        "models": {name: partitions(path) for name, path in models.items()},
    }
    json.dump(report, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
