"""Build a Keras replica of an imported MXNet network, node by node, with its weights.

The replica takes the aligned crop already normalised as the trainer feeds every
network (``normalise_pixels``), so the graph's own normalisation nodes must match
the trainer's mean and std. Layouts differ from MXNet's and are converted here:

- convolution kernels (F, C, kh, kw) become (kh, kw, C, F), depthwise ones
  (kh, kw, C, 1);
- MXNet pads symmetrically: a stride-2 convolution gets an explicit
  ``ZeroPadding2D`` and ``valid`` padding, since Keras's ``same`` pads an even input
  only at the bottom and right;
- MXNet flattens channel-first, Keras channel-last, so the first fully connected
  layer's columns are reordered;
- ``max(x, 0)`` followed by ``min(x, c)`` is one ``ReLU(max_value=c)``, which the
  int8 converter fuses into the convolution before it.
"""

from __future__ import annotations

import re

import keras
import numpy as np
from keras import layers

from device.errors import ModelError
from trainer.constants import INPUT_SIZE, MEAN, STD
from trainer.mxnet_graph import BATCHNORM_EPS, MxnetNetwork, Node


def _layer_name(node: Node) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", node.name)


def build_keras(network: MxnetNetwork, name: str = "mobileface_v2") -> keras.Model:
    """The network in Keras (NHWC), input normalised like the trainer's, output not normalised."""
    if not (np.isclose(network.mean, MEAN) and np.isclose(network.std, STD)):
        raise ModelError(
            f"the MXNet graph normalises its input as (x - {network.mean:g}) / {network.std:g}; "
            f"the trainer feeds (x - {MEAN:g}) / {STD:g}"
        )
    graph = network.graph
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="crop")
    tensors: dict[int, keras.KerasTensor] = {network.first_layer: inputs}
    # fully connected layers that follow a Flatten: the (C, H, W) shape flattened there
    flattened: dict[int, tuple[int, int, int]] = {}
    assignments: list[tuple[layers.Layer, list[np.ndarray]]] = []
    for index in range(network.first_layer + 1, len(graph.nodes)):
        node = graph.nodes[index]
        if node.op == "null":
            continue
        sources = network.data_inputs(node)
        x = tensors[sources[0]]
        weights = [network.params[n] for n in network.inputs_of(node)]
        if node.op == "_minimum_scalar" and graph.nodes[sources[0]].op == "_maximum_scalar":
            # already emitted as ReLU(max_value) with the maximum before it
            tensors[index] = x
            continue
        layer: layers.Layer
        if node.op == "Convolution":
            x, layer, values = _convolution(node, x, weights)
        elif node.op == "BatchNorm":
            gamma, beta, mean, var = weights
            if node.flag("fix_gamma", True):
                gamma = np.ones_like(gamma)
            layer = layers.BatchNormalization(
                epsilon=node.number("eps", BATCHNORM_EPS),
                momentum=node.number("momentum", 0.9),
                name=_layer_name(node),
            )
            values = [gamma, beta, mean, var]
        elif node.op == "_maximum_scalar":
            layer, values = _relu(network, index, node), []
        elif node.op == "elemwise_add":
            layer, values = layers.Add(name=_layer_name(node)), []
            tensors[index] = layer([x, tensors[sources[1]]])
            continue
        elif node.op == "Flatten":
            _, h, w, c = x.shape
            for consumer in graph.consumers(index):
                flattened[consumer] = (int(c), int(h), int(w))
            layer, values = layers.Flatten(name=_layer_name(node)), []
        elif node.op == "FullyConnected":
            kernel = weights[0]
            if index in flattened:
                c, h, w = flattened[index]
                kernel = kernel.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(len(kernel), -1)
            use_bias = len(weights) > 1 and not node.flag("no_bias")
            layer = layers.Dense(len(kernel), use_bias=use_bias, name=_layer_name(node))
            values = [kernel.T] + ([weights[1]] if use_bias else [])
        else:
            raise ModelError(f"operator {node.op} has no Keras equivalent in the importer")
        tensors[index] = layer(x)
        if values:
            assignments.append((layer, values))
    model = keras.Model(inputs, tensors[graph.output], name=name)
    for layer, values in assignments:
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if expected != [v.shape for v in values]:
            raise ModelError(
                f"layer {layer.name}: weights of shape {[v.shape for v in values]} "
                f"do not fit {expected}"
            )
        layer.set_weights([v.astype(np.float32) for v in values])
    return model


def _convolution(
    node: Node, x: keras.KerasTensor, weights: list[np.ndarray]
) -> tuple[keras.KerasTensor, layers.Layer, list[np.ndarray]]:
    kernel = weights[0]
    filters, per_group, kh, kw = kernel.shape
    stride = node.int_tuple("stride", (1, 1))
    pad = node.int_tuple("pad", (0, 0))
    groups = int(node.attrs.get("num_group", "1"))
    channels = int(x.shape[-1])
    use_bias = len(weights) > 1 and not node.flag("no_bias")
    same = stride == (1, 1) and pad == ((kh - 1) // 2, (kw - 1) // 2) and kh % 2 == kw % 2 == 1
    if not same and any(pad):
        x = layers.ZeroPadding2D(pad, name=f"{_layer_name(node)}_pad")(x)
    padding = "same" if same else "valid"
    layer: layers.Layer
    if groups == 1:
        layer = layers.Conv2D(
            filters, (kh, kw), strides=stride, padding=padding, use_bias=use_bias,
            name=_layer_name(node),
        )  # fmt: skip
        values = [kernel.transpose(2, 3, 1, 0)]
    elif groups == channels == filters and per_group == 1:
        layer = layers.DepthwiseConv2D(
            (kh, kw), strides=stride, padding=padding, use_bias=use_bias, name=_layer_name(node)
        )
        values = [kernel.transpose(2, 3, 0, 1)]
    else:
        raise ModelError(f"{node.name}: grouped convolution with {groups} groups is not supported")
    if use_bias:
        values.append(weights[1])
    return x, layer, values


def _relu(network: MxnetNetwork, index: int, node: Node) -> layers.Layer:
    """``max(x, 0)``, fused with a following ``min(x, c)`` into a capped ReLU."""
    if node.number("scalar", 0.0) != 0.0:
        raise ModelError(f"{node.name}: only max(x, 0) is supported, not max(x, {node.attrs})")
    consumers = network.graph.consumers(index)
    cap = None
    if len(consumers) == 1 and network.graph.nodes[consumers[0]].op == "_minimum_scalar":
        cap = network.graph.nodes[consumers[0]].number("scalar", 0.0)
    elif any(network.graph.nodes[c].op == "_minimum_scalar" for c in consumers):
        raise ModelError(f"{node.name}: a clipped value is also used unclipped")
    return layers.ReLU(max_value=cap, name=_layer_name(node))
