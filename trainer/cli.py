"""The ``trainer`` command line. Subcommands live in their own modules.

Modules that need TensorFlow are imported only when their command runs, so
``trainer evaluate`` (device-side models, numpy metrics) never loads it.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

from device.embedder import FaceEmbedder
from device.errors import PeepholeError

# Command name -> module whose register(group) adds it.
LAZY_COMMANDS = {
    "prepare": "trainer.prepare",
    "teacher": "trainer.teacher",
    "train": "trainer.train",
    "export-tflite": "trainer.export",
    "calibrate": "trainer.calibrate",
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
    "--model", "model_path", required=True, type=click.Path(path_type=Path), help=".tflite model"
)
@click.option("--manifest", "manifest_path", type=click.Path(path_type=Path), help="its manifest")
@click.option(
    "--lfw", "lfw_dir", required=True, type=click.Path(path_type=Path), help="LFW images folder"
)
@click.option(
    "--pairs", "pairs_file", required=True, type=click.Path(path_type=Path), help="pairs.txt"
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
    "--landmarks",
    type=click.Choice(["blazeface", "mesh"]),
    default="mesh",
    show_default=True,
    help="Align on the face mesh's 5 points (the device default) or BlazeFace's 4.",
)
def evaluate(
    model_path: Path,
    manifest_path: Path | None,
    lfw_dir: Path,
    pairs_file: Path,
    folds: int | None,
    roc_png: Path | None,
    json_out: Path | None,
    threads: int,
    landmarks: str,
) -> None:
    """LFW 10-fold verification through the device's detect-align-embed code."""
    from trainer.evaluate import (
        align_lfw,
        default_pipeline,
        evaluate_lfw,
        report_json,
        select_folds,
        tflite_embed_fn,
        write_roc_png,
    )
    from trainer.lfw import read_pairs

    if not lfw_dir.is_dir():
        raise PeepholeError(f"LFW folder not found: {lfw_dir}")
    if not pairs_file.is_file():
        raise PeepholeError(f"pairs file not found: {pairs_file}")
    embed = tflite_embed_fn(FaceEmbedder.from_files(model_path, manifest_path, num_threads=threads))
    pairs = select_folds(read_pairs(pairs_file, lfw_dir), folds)
    aligned = align_lfw(
        pairs, default_pipeline(threads, landmarks), show_progress=sys.stderr.isatty()
    )
    report, similarities = evaluate_lfw(pairs, aligned, embed)
    v = report.verification
    click.echo(
        f"pairs: {report.pairs}  images: {report.images}  detector misses: {report.detector_misses}"
    )
    click.echo(f"quality gate would reject: {report.gate_rejects} of {report.images} images")
    click.echo("fold accuracies: " + " ".join(f"{100 * a:.2f}" for a in v.fold_accuracies))
    click.echo(f"TAR at FAR={v.far_target:g}: {100 * v.tar_at_far:.2f}%")
    if roc_png:
        same = np.array([p.same for p in pairs])
        write_roc_png(roc_png, similarities, same, f"{model_path.name}: {report.summary_line()}")
        click.echo(f"ROC plot: {roc_png}")
    if json_out:
        json_out.write_text(report_json(report), encoding="utf-8")
    click.echo(report.summary_line())
