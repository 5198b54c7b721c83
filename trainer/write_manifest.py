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
from pathlib import Path

import click
import numpy as np

from device.errors import PeepholeError
from device.vision.embedder import FaceEmbedder
from device.vision.manifest import ModelManifest, file_sha256
from device.vision.tflite import TFLiteModel

_QUANTIZATION = {
    np.dtype(np.float32): "float32",
    np.dtype(np.int8): "int8",
    np.dtype(np.uint8): "uint8",
}


def draft_manifest(
    model_path: Path,
    name: str,
    mean: float,
    std: float,
    color_order: str,
    mirror_average: bool = False,
) -> tuple[ModelManifest, TFLiteModel]:
    """A manifest without thresholds, checked against the model it describes."""
    model = TFLiteModel(model_path, num_threads=1)
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
    return manifest, model


def write_third_party_manifest(
    model_path: Path,
    output: Path,
    name: str,
    mean: float,
    std: float,
    color_order: str,
    lfw_dir: Path,
    pairs_file: Path,
    celebrity: Path | None,
    folds: int | None = None,
    threads: int = 2,
    lfw_cache: Path | None = None,
    mirror_average: bool = False,
) -> tuple[ModelManifest, dict[str, object]]:
    from trainer.evaluate import (
        aligned_lfw,
        evaluate_lfw,
        select_folds,
        tflite_embed_fn,
    )
    from trainer.lfw import read_pairs
    from trainer.strangers import calibrate_identification

    draft, model = draft_manifest(model_path, name, mean, std, color_order, mirror_average)
    embedder = FaceEmbedder(model, draft, draft.sha256)
    pairs = select_folds(read_pairs(pairs_file, lfw_dir), folds)
    aligned = aligned_lfw(pairs, threads, lfw_cache)
    report, _ = evaluate_lfw(pairs, aligned, tflite_embed_fn(embedder))
    verification = report.verification
    facts: dict[str, object] = {
        "lfw_accuracy": round(verification.accuracy_mean, 4),
        "lfw_accuracy_std": round(verification.accuracy_std, 4),
        "lfw_pairs": report.pairs,
    }
    provenance: dict[str, object] = {
        "calibrated": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
        "verification_threshold": "mean of the LFW fold thresholds through the device pipeline "
        f"(trainer write-manifest): LFW {100 * verification.accuracy_mean:.2f}% "
        f"+- {100 * verification.accuracy_std:.2f} on {report.pairs} pairs",
        "note": "third-party model: licence and training data are the supplier's",
    }
    identification: dict[str, object] = {}
    if celebrity is not None:
        identification, how = calibrate_identification(
            embedder.embed_many, celebrity, aligned.crops
        )
        facts["identification"] = identification
        if identification.get("threshold") is not None:
            provenance["identification_threshold"] = f"trainer write-manifest: {how}"
    manifest = ModelManifest(
        **{
            **draft.__dict__,
            "verification_threshold": round(verification.threshold, 4),
            "identification_threshold": identification.get("threshold"),
            "identification_far_target": identification.get("far_target")
            if identification
            else None,
            "provenance": provenance,
        }
    )
    manifest.save(output)
    return manifest, facts


def register(group: click.Group) -> None:
    @group.command("write-manifest")
    @click.option(
        "--model",
        "model_path",
        required=True,
        type=click.Path(path_type=Path),
        help="A 112x112 TFLite face embedder.",
    )
    @click.option(
        "--output",
        type=click.Path(path_type=Path),
        help="Manifest to write [default: beside the model, <stem>.json].",
    )
    @click.option("--name", help="Model name for the manifest [default: file name].")
    @click.option("--mean", default=127.5, show_default=True, help="Pixel mean the model expects.")
    @click.option("--std", default=128.0, show_default=True, help="Pixel scale the model expects.")
    @click.option(
        "--color-order", type=click.Choice(["RGB", "BGR"]), default="RGB", show_default=True
    )
    @click.option("--lfw", "lfw_dir", required=True, type=click.Path(path_type=Path))
    @click.option("--pairs", "pairs_file", required=True, type=click.Path(path_type=Path))
    @click.option("--folds", type=click.IntRange(2, 10), help="Use only the first N LFW folds.")
    @click.option(
        "--lfw-cache",
        type=click.Path(path_type=Path),
        help="Keep the aligned LFW crops in this .npz and reuse them next time.",
    )
    @click.option(
        "--celebrity",
        type=click.Path(path_type=Path),
        help="celebrity112 folder for the identification threshold.",
    )
    @click.option(
        "--mirror-average",
        is_flag=True,
        help="Average each crop's embedding with its mirror image's (twice the "
        "embedding time); the thresholds are calibrated that way.",
    )
    @click.option("--threads", default=2, show_default=True)
    def write_manifest_command(
        model_path: Path, output: Path | None, name: str | None, mean: float, std: float,
        color_order: str, lfw_dir: Path, pairs_file: Path, folds: int | None,
        lfw_cache: Path | None, celebrity: Path | None, mirror_average: bool, threads: int,
    ) -> None:  # fmt: skip
        """Write a manifest (thresholds included) for a third-party TFLite embedder."""
        if not lfw_dir.is_dir():
            raise PeepholeError(f"LFW folder not found: {lfw_dir}")
        if not pairs_file.is_file():
            raise PeepholeError(f"pairs file not found: {pairs_file}")
        if celebrity is not None and not celebrity.is_dir():
            raise PeepholeError(f"celebrity folder not found: {celebrity}")
        target = output or model_path.with_suffix(".json")
        manifest, facts = write_third_party_manifest(
            model_path, target, name or model_path.stem, mean, std, color_order,
            lfw_dir, pairs_file, celebrity, folds, threads, lfw_cache, mirror_average,
        )  # fmt: skip
        click.echo(f"LFW accuracy: {100 * float(facts['lfw_accuracy']):.2f}%")  # type: ignore[arg-type]
        click.echo(f"verification threshold: {manifest.verification_threshold}")
        click.echo(f"identification threshold: {manifest.identification_threshold}")
        click.echo(f"manifest: {target}")
