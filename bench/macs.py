"""Multiply-accumulate count of a .tflite graph, and a Raspberry Pi time estimate from it.

MACs are counted from the tensor shapes of the graph's convolution,
depthwise-convolution and fully-connected ops (the rest is under 1%). The Pi
estimate divides them by a published effective MAC rate of a comparable model
on the Pi's CPU: an estimate, never a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.vision.tflite import TFLiteModel


@dataclass(frozen=True)
class PublishedFigure:
    """A published Pi CPU time of a TFLite model whose MAC count is known."""

    board: str
    model: str
    macs: float
    milliseconds: float
    source: str

    @property
    def macs_per_second(self) -> float:
        return self.macs / (self.milliseconds / 1000)


MOBILENET_V1_MACS = 569e6  # MobileNet v1 1.0_224 (Howard et al. 2017, table 8)
PI4_MOBILENET = PublishedFigure(
    board="Raspberry Pi 4 (Cortex-A72, 1.5 GHz)",
    model="MobileNet v1 1.0_224, TFLite float, CPU",
    macs=MOBILENET_V1_MACS,
    milliseconds=87.0,
    source="https://dev.to/tildalice/mobilenet-vs-efficientnet-lite-pi-4-first-model-38ms-gap-3l84",
)
# Raspberry Pi Ltd's launch figure for the Pi 5 (Cortex-A76, 2.4 GHz): "two to three
# times" the Pi 4's CPU performance; the low end is taken.
PI5_SPEEDUP_OVER_PI4 = 2.0
PI5_SOURCE = "https://www.raspberrypi.com/news/introducing-raspberry-pi-5/"


def count_macs(path: Path) -> int:
    """Multiply-accumulates of one inference, from the op list and tensor shapes."""
    model = TFLiteModel(path, num_threads=1)
    interpreter = model._interpreter
    shapes = {
        t["index"]: tuple(int(v) for v in t["shape"]) for t in interpreter.get_tensor_details()
    }
    total = 0
    for op in interpreter._get_ops_details():
        name = op["op_name"]
        if name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        output = shapes[int(op["outputs"][0])]
        weights = shapes[int(op["inputs"][1])]
        if name == "CONV_2D":  # weights [out_c, kh, kw, in_c]
            total += int(np.prod(output)) * int(np.prod(weights[1:]))
        elif name == "DEPTHWISE_CONV_2D":  # weights [1, kh, kw, out_c]
            total += int(np.prod(output)) * weights[1] * weights[2]
        else:  # weights [units, inputs]
            total += int(np.prod(output)) * weights[1]
    return total


def pi_estimate_ms(macs: float, figure: PublishedFigure = PI4_MOBILENET) -> float:
    return macs / figure.macs_per_second * 1000
