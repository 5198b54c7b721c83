"""``trainer write-manifest --model X.tflite``: a manifest for a third-party 112x112 embedder.

A user who brings their own model states how it wants its pixels (``--mean``,
``--std``, ``--color-order``); the quantisation and embedding size are read from
the file. The verification threshold is calibrated by 10-fold cross-validation on
LFW through the device pipeline, and the identification threshold open-set on
celebrity112, exactly as ``trainer export-tflite`` does for peephole's own model.

Not to be confused with ``peephole calibrate``, which picks the naming threshold
for one household's gallery on the device and writes nothing.
"""

from __future__ import annotations

import datetime
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import PeepholeError
from device.vision.embedder import FaceEmbedder
from device.vision.manifest import ModelManifest, file_sha256
from device.vision.tflite import TFLiteModel
from trainer.evaluate import LfwOptions, LfwReport, evaluate_lfw
from trainer.strangers import calibrate_identification

_QUANTIZATION = {
    np.dtype(np.float32): "float32",
    np.dtype(np.int8): "int8",
    np.dtype(np.uint8): "uint8",
}


def draft_embedder(
    model_path: Path,
    name: str,
    mean: float,
    std: float,
    color_order: str = "RGB",
    mirror_average: bool = False,
    threads: int = 1,
) -> FaceEmbedder:
    """A device embedder for a model file, its manifest (without thresholds) checked
    against the file; for a third-party model and for a fresh export alike."""
    model = TFLiteModel(model_path, num_threads=threads)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise PeepholeError(f"{model_path}: an embedder has one input and one output")
    shape = model.inputs[0].shape
    if shape != (1, 112, 112, 3):
        raise PeepholeError(f"{model_path}: input is {shape}, peephole needs [1, 112, 112, 3]")
    quantization = _QUANTIZATION.get(model.inputs[0].dtype)
    if quantization is None:
        raise PeepholeError(f"{model_path}: input type {model.inputs[0].dtype} is not supported")
    manifest = ModelManifest(
        name=name,
        sha256=file_sha256(model_path),
        mean=mean,
        std=std,
        color_order=color_order,
        quantization=quantization,
        embedding_size=int(model.outputs[0].shape[-1]),
        mirror_average=mirror_average,
    )
    manifest.validate(model_path)
    return FaceEmbedder(model, manifest, manifest.sha256)


def with_thresholds(
    draft: ModelManifest,
    verification_threshold: float | None,
    identification: dict[str, Any],
    provenance: dict[str, Any],
) -> ModelManifest:
    """The draft with its calibrated thresholds (``identification``: from
    ``calibrate_identification``, empty without celebrity112) and how they were found."""
    return replace(
        draft,
        verification_threshold=verification_threshold,
        identification_threshold=identification.get("threshold"),
        identification_far_target=identification.get("far_target") if identification else None,
        provenance=provenance,
    )


def write_third_party_manifest(
    model_path: Path,
    output: Path,
    name: str,
    mean: float,
    std: float,
    color_order: str,
    lfw: LfwOptions,
    celebrity: Path | None,
    threads: int = 2,
    mirror_average: bool = False,
) -> tuple[ModelManifest, LfwReport]:
    """The manifest, written to ``output``, and the LFW report its thresholds came from."""
    embedder = draft_embedder(model_path, name, mean, std, color_order, mirror_average)
    pairs, aligned = lfw.load(threads)
    report, _ = evaluate_lfw(pairs, aligned, embedder.embed_many)
    verification = report.verification
    provenance: dict[str, Any] = {
        "calibrated": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
        "verification_threshold": "mean of the LFW fold thresholds through the device pipeline "
        f"(trainer write-manifest): LFW {100 * verification.accuracy_mean:.2f}% "
        f"+- {100 * verification.accuracy_std:.2f} on {report.pairs} pairs",
        "note": "third-party model: licence and training data are the supplier's",
    }
    identification: dict[str, Any] = {}
    if celebrity is not None:
        identification, how = calibrate_identification(
            embedder.embed_many, celebrity, aligned.crops
        )
        if identification.get("threshold") is not None:
            provenance["identification_threshold"] = f"trainer write-manifest: {how}"
    manifest = with_thresholds(
        embedder.manifest, round(verification.threshold, 4), identification, provenance
    )
    manifest.save(output)
    return manifest, report
