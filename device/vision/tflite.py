"""The TFLite interpreter seam: the only module that imports a TFLite runtime.

Runtimes are tried in order: ``ai_edge_litert`` (LiteRT, the supported wheel),
``tflite_runtime`` (older Raspberry Pi installs), then ``tensorflow.lite``. The
CPU kernels of all three use XNNPACK by default; ``num_threads`` sets its pool.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import ModelError

logger = logging.getLogger(__name__)

_RUNTIMES = (
    ("ai_edge_litert.interpreter", "Interpreter"),
    ("tflite_runtime.interpreter", "Interpreter"),
    ("tensorflow.lite", "Interpreter"),
)


def interpreter_class() -> tuple[str, Any]:
    """Return (module name, Interpreter class) of the first runtime installed."""
    for module_name, attribute in _RUNTIMES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        return module_name, getattr(module, attribute)
    raise ModelError("no TFLite runtime installed: pip install ai-edge-litert (or tflite-runtime)")


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor: shape, dtype and affine quantisation."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.dtype in (np.dtype(np.int8), np.dtype(np.uint8)) and self.scale > 0


class TFLiteModel:
    """A loaded .tflite model with its tensors described and a plain ``run``."""

    def __init__(self, path: str | Path, num_threads: int = 2) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"model file not found: {self.path}")
        self.runtime, interpreter_cls = interpreter_class()
        try:
            with runtime_lines_to_log():
                self._interpreter = interpreter_cls(
                    model_path=str(self.path), num_threads=max(1, int(num_threads))
                )
                self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else "invalid"
            raise ModelError(f"cannot load model {self.path}: {first_line}") from None
        self.inputs = [_spec(d) for d in self._interpreter.get_input_details()]
        self.outputs = [_spec(d) for d in self._interpreter.get_output_details()]

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        """Set every input in order, invoke, and return copies of every output."""
        if len(inputs) != len(self.inputs):
            raise ValueError(f"model takes {len(self.inputs)} inputs, got {len(inputs)}")
        for spec, array in zip(self.inputs, inputs, strict=True):
            self._interpreter.set_tensor(spec.index, array)
        self._interpreter.invoke()
        return [self._interpreter.get_tensor(spec.index).copy() for spec in self.outputs]


@contextlib.contextmanager
def runtime_lines_to_log() -> Iterator[None]:
    """What the runtime's C++ code prints on stderr meanwhile, through logging instead.

    LiteRT prints ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.``
    straight to file descriptor 2 when a model is prepared; routed here it is a
    debug line (``-v`` shows it, ``-q`` and the default do not), and anything
    else it prints becomes a warning.
    """
    sys.stderr.flush()
    with tempfile.TemporaryFile() as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines():
                if line.strip():
                    level = logging.DEBUG if line.startswith("INFO:") else logging.WARNING
                    logger.log(level, f"TFLite: {line.strip()}")


def _spec(detail: dict[str, Any]) -> TensorSpec:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorSpec(
        index=int(detail["index"]),
        name=str(detail["name"]),
        shape=tuple(int(v) for v in detail["shape"]),
        dtype=np.dtype(detail["dtype"]),
        scale=float(scale),
        zero_point=int(zero_point),
    )
