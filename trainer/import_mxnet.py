"""Pretrained MXNet weights to a Keras model, checked for parity.

The Keras replica is compared with the numpy forward pass of the same files
(``trainer.mxnet_graph.numpy_forward``, written apart from the Keras builder) on
real aligned crops; the command fails below ``min_cosine``. The saved ``.keras``
model is what ``export-tflite`` converts, ``train --init`` starts from and
``train --teacher`` runs online. A ``provenance.json`` beside it names the source
files, their sha256 and the parity measured, and ``export-tflite`` copies it into
the model's manifest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import ModelError
from device.vision.manifest import file_sha256
from trainer.constants import normalise_pixels
from trainer.mxnet_graph import MxnetNetwork, numpy_forward

PROVENANCE_FILE = "provenance.json"


@dataclass(frozen=True)
class ImportReport:
    output: Path
    parameters: int
    embedding_size: int
    parity_cosine_min: float
    parity_cosine_mean: float
    crops: int


def unit(vectors: np.ndarray) -> np.ndarray:
    return np.asarray(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))


def parity_cosines(network: MxnetNetwork, model: Any, crops: np.ndarray) -> np.ndarray:
    """Cosine between the numpy forward pass and the Keras replica, per crop."""
    reference = np.concatenate(
        [numpy_forward(network, crops[i : i + 16]) for i in range(0, len(crops), 16)]
    )
    replica = np.asarray(model.predict(normalise_pixels(crops), batch_size=32, verbose=0))
    return np.asarray(np.einsum("ij,ij->i", unit(reference), unit(replica)))


def import_mxnet(
    symbol: Path,
    params: Path,
    output: Path,
    crops: np.ndarray,
    licence: str,
    min_cosine: float = 0.9999,
) -> ImportReport:
    from trainer.mxnet_keras import build_keras

    network = MxnetNetwork.load(symbol, params)
    model = build_keras(network)
    cosines = parity_cosines(network, model, crops)
    if float(cosines.min()) < min_cosine:
        raise ModelError(
            f"the Keras replica drifts from the numpy forward pass: min cosine "
            f"{cosines.min():.6f} < {min_cosine} on {len(crops)} crops"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    model.save(output)
    report = ImportReport(
        output=output,
        parameters=int(model.count_params()),
        embedding_size=int(model.outputs[0].shape[-1]),
        parity_cosine_min=float(cosines.min()),
        parity_cosine_mean=float(cosines.mean()),
        crops=len(crops),
    )
    provenance = {
        "imported_from": f"{symbol.name} (sha256 {file_sha256(symbol)}), "
        f"{params.name} (sha256 {file_sha256(params)})",
        "weights_licence": licence,
        "import_parity": f"Keras vs numpy forward pass of the MXNet graph: min cosine "
        f"{report.parity_cosine_min:.7f}, mean {report.parity_cosine_mean:.7f} on {len(crops)} "
        "real aligned crops",
    }
    (output.parent / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    return report
