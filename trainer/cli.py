"""The ``trainer`` command line. Subcommands live in their own modules.

Modules that need TensorFlow are imported only when their command runs, so
``trainer evaluate`` (device-side models, numpy metrics) never loads it.
"""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import click
import cv2
import numpy as np

from device.errors import PeepholeError
from device.vision.embedder import FaceEmbedder

# Command name -> module whose register(group) adds it.
LAZY_COMMANDS = {
    "prepare": "trainer.prepare",
    "teacher": "trainer.teacher",
    "train": "trainer.train",
    "export-tflite": "trainer.export",
    "write-manifest": "trainer.write_manifest",
    "import-mxnet": "trainer.import_mxnet",
}


class TrainerGroup(click.Group):
    """Loads subcommands on demand; expected errors become one line and exit 1."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            importlib.import_module(LAZY_COMMANDS[cmd_name]).register(self)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PeepholeError as error:
            fail(str(error))
        except OSError as error:
            fail(f"{error.filename or 'I/O'}: {error.strerror or error}")
        except KeyboardInterrupt:
            click.echo("trainer: interrupted", err=True)
            sys.exit(130)


def fail(message: str) -> None:
    click.echo(f"trainer: error: {message}", err=True)
    sys.exit(1)


@click.group(cls=TrainerGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """trainer: prepare data, train, evaluate and export peephole's embedding model."""


@main.command()
@click.option(
    "--model",
    "model_path",
    required=True,
    type=click.Path(path_type=Path),
    help="A .tflite model (with its manifest), or a Keras checkpoint: .keras or .weights.h5.",
)
@click.option("--manifest", "manifest_path", type=click.Path(path_type=Path), help="its manifest")
@click.option(
    "--activation",
    type=click.Choice(["relu6", "prelu"]),
    default="relu6",
    show_default=True,
    help="The network a .weights.h5 checkpoint belongs to.",
)
@click.option("--lfw", "lfw_dir", type=click.Path(path_type=Path), help="LFW images folder")
@click.option("--pairs", "pairs_file", type=click.Path(path_type=Path), help="LFW pairs.txt")
@click.option(
    "--lfw-cache",
    type=click.Path(path_type=Path),
    help="Keep the aligned LFW crops in this .npz and reuse them next time.",
)
@click.option(
    "--celebrity",
    type=click.Path(path_type=Path),
    help="Also report open-set identification on this folder per identity (celebrity112).",
)
@click.option("--folds", type=click.IntRange(2, 10), help="Use only the first N folds (quicker).")
@click.option(
    "--roc", "roc_png", type=click.Path(path_type=Path), help="Write a ROC plot PNG here."
)
@click.option(
    "--json", "json_out", type=click.Path(path_type=Path), help="Write the full report as JSON."
)
@click.option("--threads", default=2, show_default=True, help="TFLite threads.")
@click.option(
    "--greyscale",
    is_flag=True,
    help="Convert every aligned crop to grey first, as an infrared night camera sees faces.",
)
@click.option(
    "--landmarks",
    type=click.Choice(["blazeface", "mesh"]),
    default="mesh",
    show_default=True,
    help="Align on the face mesh's 5 points (the device default) or BlazeFace's 4.",
)
def evaluate(
    model_path: Path,
    manifest_path: Path | None,
    activation: str,
    lfw_dir: Path | None,
    pairs_file: Path | None,
    lfw_cache: Path | None,
    celebrity: Path | None,
    folds: int | None,
    roc_png: Path | None,
    json_out: Path | None,
    threads: int,
    greyscale: bool,
    landmarks: str,
) -> None:
    """LFW 10-fold verification through the device's detect-align-embed code, and open-set
    identification on celebrity112."""
    from trainer.evaluate import (
        aligned_lfw,
        evaluate_lfw,
        openset_summary,
        select_folds,
        write_roc_png,
    )
    from trainer.lfw import read_pairs
    from trainer.strangers import calibrate_strangers, celebrity_openset

    if (lfw_dir is None) != (pairs_file is None):
        raise PeepholeError("--lfw and --pairs go together")
    if lfw_dir is None and celebrity is None:
        raise PeepholeError("nothing to evaluate: give --lfw and --pairs, or --celebrity")
    if lfw_dir is not None and not lfw_dir.is_dir():
        raise PeepholeError(f"LFW folder not found: {lfw_dir}")
    if pairs_file is not None and not pairs_file.is_file():
        raise PeepholeError(f"pairs file not found: {pairs_file}")
    if celebrity is not None and not celebrity.is_dir():
        raise PeepholeError(f"celebrity folder not found: {celebrity}")
    embed = _embed_fn(model_path, manifest_path, activation, threads)
    full: dict[str, Any] = {"model": str(model_path)}
    if lfw_dir is not None and pairs_file is not None:
        pairs = select_folds(read_pairs(pairs_file, lfw_dir), folds)
        aligned = aligned_lfw(pairs, threads, lfw_cache, landmarks)
        if greyscale:
            aligned = replace(aligned, crops={p: grey(c) for p, c in aligned.crops.items()})
        report, similarities = evaluate_lfw(pairs, aligned, embed)
        v = report.verification
        click.echo(
            f"pairs: {report.pairs}  images: {report.images}  "
            f"detector misses: {report.detector_misses}"
        )
        click.echo(f"quality gate would reject: {report.gate_rejects} of {report.images} images")
        click.echo("fold accuracies: " + " ".join(f"{100 * a:.2f}" for a in v.fold_accuracies))
        click.echo(f"TAR at FAR={v.far_target:g}: {100 * v.tar_at_far:.2f}%")
        if roc_png:
            same = np.array([p.same for p in pairs])
            write_roc_png(
                roc_png, similarities, same, f"{model_path.name}: {report.summary_line()}"
            )
            click.echo(f"ROC plot: {roc_png}")
        full["lfw"] = asdict(report)
        click.echo(report.summary_line())
    if celebrity is not None:
        identification = celebrity_openset(embed, celebrity)
        full["identification"] = identification
        click.echo(openset_summary(identification))
        if lfw_dir is not None:
            strangers = calibrate_strangers(embed, celebrity, aligned.crops)
            full["strangers"] = strangers.as_dict()
            click.echo(f"LFW identities as strangers: {strangers.summary()}")
    if json_out:
        json_out.write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")


def grey(crop: np.ndarray) -> np.ndarray:
    """An RGB crop as a three-channel grey image."""
    luma = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    return np.repeat(luma[:, :, np.newaxis], 3, axis=2)


def _embed_fn(model_path: Path, manifest_path: Path | None, activation: str, threads: int) -> Any:
    """Embedding function for a device model (.tflite) or a Keras checkpoint (needs TensorFlow)."""
    if model_path.suffix == ".tflite":
        return FaceEmbedder.from_files(model_path, manifest_path, num_threads=threads).embed_many
    if model_path.suffix == ".keras" or model_path.name.endswith(".weights.h5"):
        from trainer.export import keras_embed_fn, load_keras_model

        return keras_embed_fn(load_keras_model(model_path, activation))
    raise PeepholeError(f"{model_path}: expected a .tflite model, a .keras model or a .weights.h5")
