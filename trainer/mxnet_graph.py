"""Read MXNet face-embedding networks (graph JSON + NDArray params) with numpy alone.

MXNet is unmaintained and has no wheels for current Pythons, so peephole reads its
two files directly:

- the graph (``*-symbol.json``): a list of nodes, each an operator with string
  attributes and inputs by node index;
- the weights (``*-0000.params``): MXNet's NDArray list format, little-endian:
  a list magic, the arrays (each with its own magic, storage type, shape, device
  context, dtype and raw data), then the names (``arg:conv1_weight``,
  ``aux:bn1_moving_mean``).

Only the operators a MobileNet-style embedder needs are known; any other one is
refused by name. ``numpy_forward`` runs the graph as MXNet defines it (NCHW,
symmetric padding, channel-first flatten) so it can check the Keras replica that
``trainer.mxnet_keras`` builds independently.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from device.errors import ModelError

LIST_MAGIC = 0x112
NDARRAY_V2_MAGIC = 0xF993FAC9
NDARRAY_V1_MAGIC = 0xF993FAC8
DENSE_STORAGE = 0
DTYPES: dict[int, type[np.generic]] = {
    0: np.float32,
    1: np.float64,
    2: np.float16,
    3: np.uint8,
    4: np.int32,
    5: np.int8,
    6: np.int64,
}
# MXNet's BatchNorm default when the graph does not say.
BATCHNORM_EPS = 1e-3
KNOWN_OPS = frozenset(
    {
        "null",
        "_minus_scalar",
        "_mul_scalar",
        "Convolution",
        "BatchNorm",
        "_maximum_scalar",
        "_minimum_scalar",
        "elemwise_add",
        "Flatten",
        "FullyConnected",
    }
)


class _Reader:
    """Sequential little-endian reads that name the file and offset when data runs out."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = path.read_bytes()
        self.offset = 0

    def take(self, size: int, what: str) -> bytes:
        if size < 0 or self.offset + size > len(self.data):
            raise ModelError(
                f"{self.path}: truncated MXNet params file ({what} at byte {self.offset} "
                f"needs {size} bytes, {len(self.data) - self.offset} left)"
            )
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple[Any, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))


def read_params(path: Path) -> dict[str, np.ndarray]:
    """Every named array of an MXNet ``.params`` file, names without ``arg:``/``aux:``."""
    if not path.is_file():
        raise ModelError(f"MXNet params file not found: {path}")
    reader = _Reader(path)
    magic, _reserved = reader.unpack("QQ", "header")
    if magic != LIST_MAGIC:
        raise ModelError(f"{path}: not an MXNet params file (magic {magic:#x})")
    (count,) = reader.unpack("Q", "array count")
    arrays = [_read_ndarray(reader, index) for index in range(count)]
    (name_count,) = reader.unpack("Q", "name count")
    if name_count != count:
        raise ModelError(f"{path}: {count} arrays but {name_count} names")
    params: dict[str, np.ndarray] = {}
    for index in range(name_count):
        (length,) = reader.unpack("Q", f"name {index} length")
        raw = reader.take(length, f"name {index}")
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ModelError(f"{path}: name {index} is not text") from None
        params[name.split(":", 1)[1] if ":" in name else name] = arrays[index]
    if reader.offset != len(reader.data):
        raise ModelError(f"{path}: {len(reader.data) - reader.offset} unexpected trailing bytes")
    return params


def _read_ndarray(reader: _Reader, index: int) -> np.ndarray:
    what = f"array {index}"
    (magic,) = reader.unpack("I", what)
    if magic == NDARRAY_V2_MAGIC:
        (storage,) = reader.unpack("i", what)
        if storage != DENSE_STORAGE:
            raise ModelError(f"{reader.path}: {what} is sparse (storage type {storage})")
    elif magic != NDARRAY_V1_MAGIC:
        raise ModelError(f"{reader.path}: {what} has an unknown NDArray magic {magic:#x}")
    (ndim,) = reader.unpack("I", what)
    if ndim > 8:
        raise ModelError(f"{reader.path}: {what} claims {ndim} dimensions")
    shape = reader.unpack(f"{ndim}q", what)
    if ndim == 0:
        return np.zeros((0,), dtype=np.float32)
    if any(side < 0 for side in shape):
        raise ModelError(f"{reader.path}: {what} has a negative dimension {shape}")
    reader.unpack("ii", what)  # device type and id: where it lived, irrelevant here
    (type_flag,) = reader.unpack("i", what)
    if type_flag not in DTYPES:
        raise ModelError(f"{reader.path}: {what} has an unknown dtype flag {type_flag}")
    dtype = np.dtype(DTYPES[type_flag]).newbyteorder("<")
    size = int(np.prod(shape)) * dtype.itemsize
    data = np.frombuffer(reader.take(size, what), dtype=dtype).reshape(shape)
    return data.astype(np.float32) if dtype.kind == "f" else data.copy()


@dataclass(frozen=True)
class Node:
    op: str
    name: str
    attrs: dict[str, str]
    inputs: tuple[int, ...]

    def int_tuple(self, key: str, default: tuple[int, ...] = ()) -> tuple[int, ...]:
        text = self.attrs.get(key)
        if text is None:
            return default
        return tuple(int(part) for part in text.strip("()[] ").split(",") if part.strip())

    def number(self, key: str, default: float) -> float:
        return float(self.attrs.get(key, default))

    def flag(self, key: str, default: bool = False) -> bool:
        return self.attrs.get(key, str(default)).lower() in ("true", "1")


@dataclass(frozen=True)
class MxnetGraph:
    """An MXNet symbol: nodes in topological order and the index of the output node."""

    nodes: tuple[Node, ...]
    output: int

    def consumers(self, index: int) -> list[int]:
        return [i for i, node in enumerate(self.nodes) if index in node.inputs]


def read_graph(path: Path) -> MxnetGraph:
    """An MXNet ``-symbol.json`` graph with one output; unknown operators are refused."""
    if not path.is_file():
        raise ModelError(f"MXNet graph file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        nodes = tuple(
            Node(
                op=str(raw["op"]),
                name=str(raw["name"]),
                attrs={
                    str(k): str(v) for k, v in (raw.get("attrs") or raw.get("param") or {}).items()
                },
                inputs=tuple(int(entry[0]) for entry in raw["inputs"]),
            )
            for raw in data["nodes"]
        )
        heads = data["heads"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"{path}: not a readable MXNet graph ({error})") from None
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise ModelError(f"{path}: not an MXNet graph (missing or malformed {error})") from None
    unknown = sorted({node.op for node in nodes} - KNOWN_OPS)
    if unknown:
        raise ModelError(f"{path}: operator {', '.join(unknown)} is not supported by the importer")
    if len(heads) != 1:
        raise ModelError(f"{path}: expected one output, the graph has {len(heads)}")
    for index, node in enumerate(nodes):
        if any(not 0 <= i < index for i in node.inputs):
            raise ModelError(f"{path}: node {node.name} has an input that is not before it")
    return MxnetGraph(nodes, int(heads[0][0]))


@dataclass(frozen=True)
class MxnetNetwork:
    """A graph with its weights, and the input normalisation its first nodes perform."""

    graph: MxnetGraph
    params: dict[str, np.ndarray]
    mean: float
    std: float
    first_layer: int

    @classmethod
    def load(cls, symbol: Path, params: Path) -> MxnetNetwork:
        graph = read_graph(symbol)
        weights = read_params(params)
        for node in graph.nodes:
            if node.op == "null" and node.name != "data" and node.name not in weights:
                raise ModelError(f"{params}: no weights for {node.name} of the graph {symbol}")
        mean, std, first = _input_normalisation(graph)
        return cls(graph, weights, mean, std, first)

    def inputs_of(self, node: Node) -> list[str]:
        """Names of a node's weight inputs (its ``null`` inputs other than data)."""
        return [
            self.graph.nodes[i].name
            for i in node.inputs
            if self.graph.nodes[i].op == "null" and self.graph.nodes[i].name != "data"
        ]

    def data_inputs(self, node: Node) -> list[int]:
        return [i for i in node.inputs if self.graph.nodes[i].op != "null"]


def _input_normalisation(graph: MxnetGraph) -> tuple[float, float, int]:
    """``(x - mean) * scale`` on the raw pixels at the graph's head, as (mean, 1/scale)."""
    nodes = graph.nodes
    if not nodes or nodes[0].name != "data":
        raise ModelError("the MXNet graph does not start with its 'data' input")
    mean, scale, first = 0.0, 1.0, 1
    if len(nodes) > 1 and nodes[1].op == "_minus_scalar" and nodes[1].inputs == (0,):
        mean, first = nodes[1].number("scalar", 0.0), 2
    if len(nodes) > first and nodes[first].op == "_mul_scalar":
        scale, first = nodes[first].number("scalar", 1.0), first + 1
    if scale == 0:
        raise ModelError("the MXNet graph multiplies its input by zero")
    for node in nodes[first:]:
        if node.op in ("_minus_scalar", "_mul_scalar"):
            raise ModelError(f"{node.op} is only supported as the input normalisation")
    return mean, 1.0 / scale, first - 1


def numpy_forward(network: MxnetNetwork, crops: np.ndarray) -> np.ndarray:
    """Run the graph on RGB uint8 crops (N, H, W, 3) the way MXNet defines it: (N, embedding)."""
    graph, params = network.graph, network.params
    x = np.transpose(crops.astype(np.float32), (0, 3, 1, 2))
    values: dict[int, np.ndarray] = {network.first_layer: (x - network.mean) / network.std}
    for index in range(network.first_layer + 1, len(graph.nodes)):
        node = graph.nodes[index]
        if node.op == "null":
            continue
        ins = [values[i] for i in network.data_inputs(node)]
        weights = [params[name] for name in network.inputs_of(node)]
        values[index] = _forward_op(node, ins, weights)
    return values[graph.output]


def _forward_op(node: Node, ins: list[np.ndarray], weights: list[np.ndarray]) -> np.ndarray:
    if node.op == "Convolution":
        bias = weights[1] if len(weights) > 1 and not node.flag("no_bias") else None
        return _convolution(ins[0], weights[0], bias, node)
    if node.op == "BatchNorm":
        gamma, beta, mean, var = weights
        if node.flag("fix_gamma", True):
            gamma = np.ones_like(gamma)
        shape = (1, -1) + (1,) * (ins[0].ndim - 2)
        eps = node.number("eps", BATCHNORM_EPS)
        scale = (gamma / np.sqrt(var + eps)).reshape(shape)
        return np.asarray((ins[0] - mean.reshape(shape)) * scale + beta.reshape(shape))
    if node.op == "_maximum_scalar":
        return np.asarray(np.maximum(ins[0], node.number("scalar", 0.0)))
    if node.op == "_minimum_scalar":
        return np.asarray(np.minimum(ins[0], node.number("scalar", 0.0)))
    if node.op == "elemwise_add":
        return np.asarray(ins[0] + ins[1])
    if node.op == "Flatten":
        return ins[0].reshape(len(ins[0]), -1)
    if node.op == "FullyConnected":
        out = ins[0].reshape(len(ins[0]), -1) @ weights[0].T
        return (
            np.asarray(out + weights[1]) if len(weights) > 1 and not node.flag("no_bias") else out
        )
    raise ModelError(f"operator {node.op} cannot be run by the numpy forward pass")


def _convolution(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, node: Node
) -> np.ndarray:
    kh, kw = node.int_tuple("kernel")
    sh, sw = node.int_tuple("stride", (1, 1))
    ph, pw = node.int_tuple("pad", (0, 0))
    groups = int(node.attrs.get("num_group", "1"))
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    windows = sliding_window_view(padded, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    if groups == x.shape[1] == weight.shape[0] and weight.shape[1] == 1:  # depthwise
        out = np.asarray(np.einsum("nchwij,cij->nchw", windows, weight[:, 0], optimize=True))
        return out + bias.reshape(1, -1, 1, 1) if bias is not None else out
    per_group = x.shape[1] // groups
    outputs = []
    filters_per_group = weight.shape[0] // groups
    for g in range(groups):
        patch = windows[:, g * per_group : (g + 1) * per_group]
        kernel = weight[g * filters_per_group : (g + 1) * filters_per_group]
        outputs.append(np.einsum("nchwij,fcij->nfhw", patch, kernel, optimize=True))
    out = np.concatenate(outputs, axis=1) if groups > 1 else outputs[0]
    return out + bias.reshape(1, -1, 1, 1) if bias is not None else out
