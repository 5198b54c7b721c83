"""Start a Keras MobileFaceNet from an exported TFLite model (``trainer train --init X.tflite``).

The shipped model is the only copy of the previous run's weights that travels
with the project, so continuing its training needs them back in Keras. Export
folded every batch norm into the convolution before it and quantised the
weights per channel; this module dequantises each convolution's kernel and
bias and writes them into the matching Keras layer (the 62 convolutions appear
in the same order in both graphs; shapes are checked one by one).

Batch norm is then *unfolded* so that it reproduces the folded convolution in
inference mode and, approximately, in training mode too: with the
convolution's output statistics ``mu`` and ``var`` measured on real crops,
``moving_mean = mu``, ``moving_variance = var``, ``gamma = sqrt(var + eps)``
and ``beta = mu + bias`` give ``BN(z) = z + bias`` exactly in inference, and
nearly so on a training batch whose statistics are close to ``mu`` and ``var``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from device.errors import PeepholeError
from device.vision.tflite import interpreter_class
from trainer.constants import normalise_pixels

_CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")
_STATISTICS_BATCH = 32


@dataclass(frozen=True)
class FoldedConv:
    """One convolution of the TFLite graph, dequantised: Keras kernel layout and bias."""

    kernel: np.ndarray
    bias: np.ndarray


def _dequantize(tensor: np.ndarray, details: dict[str, Any]) -> np.ndarray:
    params = details["quantization_parameters"]
    scales = np.asarray(params["scales"], dtype=np.float64)
    zeros = np.asarray(params["zero_points"], dtype=np.float64)
    values = tensor.astype(np.float64)
    if not scales.size:
        return values.astype(np.float32)
    shape = [1] * values.ndim
    if scales.size > 1:
        shape[params["quantized_dimension"]] = scales.size
    return ((values - zeros.reshape(shape)) * scales.reshape(shape)).astype(np.float32)


def read_folded_convs(path: Path) -> list[FoldedConv]:
    """Every convolution of a TFLite file, in graph order, as float Keras-layout weights."""
    if not path.is_file():
        raise PeepholeError(f"model file not found: {path}")
    _, interpreter_cls = interpreter_class()
    try:
        interpreter = interpreter_cls(model_path=str(path))
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as error:
        raise PeepholeError(f"{path}: not a TFLite model ({error})") from None
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    convs = []
    for op in interpreter._get_ops_details():
        if op["op_name"] not in _CONV_OPS:
            continue
        weight_index, bias_index = op["inputs"][1], op["inputs"][2]
        weights = _dequantize(interpreter.get_tensor(weight_index), details[weight_index])
        bias = _dequantize(interpreter.get_tensor(bias_index), details[bias_index])
        # CONV_2D [out, kh, kw, in] -> Keras [kh, kw, in, out];
        # DEPTHWISE_CONV_2D [1, kh, kw, channels] -> Keras [kh, kw, channels, 1]
        convs.append(FoldedConv(weights.transpose(1, 2, 3, 0), bias))
    return convs


def _conv_layers(model: keras.Model) -> list[tuple[keras.layers.Layer, keras.layers.Layer]]:
    """(convolution, its batch norm) pairs of a MobileFaceNet, in graph order."""
    pairs = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D):
            bn_name = layer.name.rsplit("_", 1)[0] + "_bn"
            pairs.append((layer, model.get_layer(bn_name)))
    return pairs


def load_tflite_weights(model: keras.Model, path: Path, crops: np.ndarray) -> None:
    """Fill ``model`` with the weights of the TFLite file ``path`` (see the module docstring).

    ``crops`` are aligned RGB uint8 crops (a few hundred) used to measure each
    convolution's output statistics for the batch-norm unfolding.
    """
    convs = read_folded_convs(path)
    pairs = _conv_layers(model)
    if len(convs) != len(pairs):
        raise PeepholeError(
            f"{path}: {len(convs)} convolutions, the network has {len(pairs)}; "
            "not a MobileFaceNet export of this trainer"
        )
    for (layer, _), conv in zip(pairs, convs, strict=True):
        expected = tuple(layer.kernel.shape)
        if expected != conv.kernel.shape:
            raise PeepholeError(
                f"{path}: layer {layer.name} wants a {expected} kernel, the file has "
                f"{conv.kernel.shape}; export the same --activation and architecture"
            )
        layer.kernel.assign(conv.kernel)
    # First pass: batch norm as "add the bias", exact in inference mode.
    for (_, bn), conv in zip(pairs, convs, strict=True):
        eps = bn.epsilon
        bn.moving_mean.assign(np.zeros_like(conv.bias))
        bn.moving_variance.assign(np.ones_like(conv.bias))
        bn.gamma.assign(np.full_like(conv.bias, np.sqrt(1.0 + eps)))
        bn.beta.assign(conv.bias)
    # Second pass: measure each convolution's output and centre the batch norm on it.
    # Statistics are accumulated batch by batch: all 62 outputs of 512 crops at once
    # would take about 20 GB.
    probe = keras.Model(model.inputs, [layer.output for layer, _ in pairs])
    sums = [np.zeros(conv.bias.shape, np.float64) for conv in convs]
    squares = [np.zeros(conv.bias.shape, np.float64) for conv in convs]
    positions = [0] * len(convs)
    for start in range(0, len(crops), _STATISTICS_BATCH):
        batch = normalise_pixels(crops[start : start + _STATISTICS_BATCH])
        for index, output in enumerate(probe(batch, training=False)):
            values = np.asarray(output, dtype=np.float64)
            channels = values.reshape(-1, values.shape[-1])
            sums[index] += channels.sum(axis=0)
            squares[index] += np.square(channels).sum(axis=0)
            positions[index] += len(channels)
    for index, ((_, bn), conv) in enumerate(zip(pairs, convs, strict=True)):
        mean = sums[index] / positions[index]
        variance = np.maximum(squares[index] / positions[index] - np.square(mean), 0.0)
        bn.moving_mean.assign(mean.astype(np.float32))
        bn.moving_variance.assign(variance.astype(np.float32))
        bn.gamma.assign(np.sqrt(variance + bn.epsilon).astype(np.float32))
        bn.beta.assign((mean + conv.bias).astype(np.float32))
