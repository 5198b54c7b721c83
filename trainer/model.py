"""The embedding network: MobileFaceNet built, Keras checkpoints loaded, crops embedded.

MobileFaceNet (Chen et al., 2018) in Keras 3: 112x112 RGB in, a 128-d embedding out.

The network follows the paper: conv 3x3/2 64, depthwise 3x3 64, inverted-residual
bottlenecks (t, c, n, s) = (2,64,5,2), (4,128,1,2), (2,128,6,1), (4,128,1,2),
(2,128,2,1), conv 1x1 512, a linear global depthwise 7x7 conv, and a linear 1x1
conv to the embedding, with batch norm after every conv. The input is the aligned
crop already normalised as ``(pixel - 127.5) / 128`` (the manifest's mean/std), so
the exported int8 input is the raw pixel shifted by 128.

The activation is configurable because it decides int8 speed: int8 PRELU is not in
XNNPACK's int8 op set, so a PReLU network splits into many delegate partitions,
while ReLU6 is fused into the convolutions and the whole graph stays delegated.
"""

from __future__ import annotations

import enum
import warnings
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
from keras import layers

from device.errors import PeepholeError
from trainer.constants import EMBEDDING_SIZE, INPUT_SIZE, normalise_pixels

# (expansion t, output channels c, repeats n, first stride s)
BOTTLENECKS: tuple[tuple[int, int, int, int], ...] = (
    (2, 64, 5, 2),
    (4, 128, 1, 2),
    (2, 128, 6, 1),
    (4, 128, 1, 2),
    (2, 128, 2, 1),
)


class Activation(enum.StrEnum):
    PRELU = "prelu"
    RELU6 = "relu6"


def _activate(x: keras.KerasTensor, activation: Activation, name: str) -> keras.KerasTensor:
    if activation is Activation.PRELU:
        return layers.PReLU(shared_axes=[1, 2], name=f"{name}_prelu")(x)
    return layers.ReLU(max_value=6.0, name=f"{name}_relu6")(x)


def _batch_norm(
    x: keras.KerasTensor, name: str, activation: Activation | None
) -> keras.KerasTensor:
    """Batch norm after every conv, then the activation (none for linear layers)."""
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
    return _activate(x, activation, name) if activation else x


def _conv_bn(
    x: keras.KerasTensor,
    filters: int,
    kernel: int,
    stride: int,
    name: str,
    activation: Activation | None,
    weight_decay: float,
) -> keras.KerasTensor:
    x = layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding="same",
        use_bias=False,
        kernel_regularizer=keras.regularizers.L2(weight_decay) if weight_decay else None,
        name=f"{name}_conv",
    )(x)
    return _batch_norm(x, name, activation)


def _depthwise_bn(
    x: keras.KerasTensor,
    kernel: int,
    stride: int,
    name: str,
    activation: Activation | None,
    padding: str = "same",
) -> keras.KerasTensor:
    x = layers.DepthwiseConv2D(
        kernel, strides=stride, padding=padding, use_bias=False, name=f"{name}_dw"
    )(x)
    return _batch_norm(x, name, activation)


def _bottleneck(
    x: keras.KerasTensor,
    expansion: int,
    filters: int,
    stride: int,
    name: str,
    activation: Activation,
    weight_decay: float,
) -> keras.KerasTensor:
    channels = x.shape[-1]
    y = _conv_bn(x, channels * expansion, 1, 1, f"{name}_expand", activation, weight_decay)
    y = _depthwise_bn(y, 3, stride, f"{name}_depthwise", activation)
    y = _conv_bn(y, filters, 1, 1, f"{name}_project", None, weight_decay)
    if stride == 1 and channels == filters:
        y = layers.Add(name=f"{name}_add")([x, y])
    return y


def build_mobilefacenet(
    activation: Activation | str = Activation.RELU6,
    embedding_size: int = EMBEDDING_SIZE,
    weight_decay: float = 5e-4,
    name: str = "mobilefacenet",
) -> keras.Model:
    """The embedding network; its output is *not* L2-normalised (losses and device do that)."""
    activation = Activation(activation)
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="crop")
    x = _conv_bn(inputs, 64, 3, 2, "conv1", activation, weight_decay)
    x = _depthwise_bn(x, 3, 1, "conv2", activation)
    for stage, (expansion, filters, repeats, stride) in enumerate(BOTTLENECKS, start=1):
        for block in range(repeats):
            x = _bottleneck(
                x,
                expansion,
                filters,
                stride if block == 0 else 1,
                f"stage{stage}_block{block}",
                activation,
                weight_decay,
            )
    x = _conv_bn(x, 512, 1, 1, "conv_last", activation, weight_decay)
    x = _depthwise_bn(x, 7, 1, "gdconv", None, padding="valid")
    x = _conv_bn(x, embedding_size, 1, 1, "embedding", None, weight_decay)
    outputs = layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, outputs, name=name)


def load_keras_model(path: Path, activation: str = "relu6") -> keras.Model:
    """A ``.keras`` model, or a run's ``.weights.h5`` loaded into a fresh MobileFaceNet."""
    if not path.is_file():
        raise PeepholeError(f"model not found: {path}")
    if path.name.endswith(".weights.h5"):
        model = build_mobilefacenet(activation)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras warns per layer before it raises
            try:
                model.load_weights(path)
            except ValueError:
                raise PeepholeError(
                    f"{path}: these weights do not fit a MobileFaceNet with {activation} "
                    "(wrong --activation?)"
                ) from None
        return model
    if path.suffix != ".keras":
        raise PeepholeError(f"{path}: expected a .keras model or a .weights.h5 checkpoint")
    return keras.models.load_model(path, compile=False)


def keras_embed_fn(model: keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    """Embed aligned RGB uint8 crops with a Keras network, normalised like the device."""

    def embed(crops: np.ndarray) -> np.ndarray:
        vectors = np.asarray(
            model.predict(normalise_pixels(crops), batch_size=64, verbose=0), dtype=np.float32
        )
        return np.asarray(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))

    return embed
