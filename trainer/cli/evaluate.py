"""``trainer evaluate``: the command over ``trainer.evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from device.errors import PeepholeError
from trainer.cli.options import activation_option, lfw_options, path_option, threads_option
from trainer.evaluate import (
    LfwOptions,
    evaluate_model,
    model_embed_fn,
    openset_summary,
    write_roc_png,
)


@click.command("evaluate")
@path_option(
    "--model",
    "model_path",
    required=True,
    help="A .tflite model (with its manifest), or a Keras checkpoint: .keras or .weights.h5.",
)
@path_option("--manifest", "manifest_path", help="its manifest")
@activation_option()
@lfw_options()
@path_option(
    "--celebrity",
    help="Also report open-set identification on this folder per identity (celebrity112).",
)
@path_option("--roc", "roc_png", help="Write a ROC plot PNG here.")
@path_option("--json", "json_out", help="Write the full report as JSON.")
@threads_option
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
def command(
    model_path: Path,
    manifest_path: Path | None,
    activation: str,
    lfw: LfwOptions | None,
    celebrity: Path | None,
    roc_png: Path | None,
    json_out: Path | None,
    threads: int,
    greyscale: bool,
    landmarks: str,
) -> None:
    """LFW 10-fold verification through the device's detect-align-embed code, and open-set
    identification on celebrity112."""
    if lfw is None and celebrity is None:
        raise PeepholeError("nothing to evaluate: give --lfw and --pairs, or --celebrity")
    if celebrity is not None and not celebrity.is_dir():
        raise PeepholeError(f"celebrity folder not found: {celebrity}")
    embed = model_embed_fn(model_path, manifest_path, activation, threads)
    evaluation = evaluate_model(embed, model_path, lfw, celebrity, threads, greyscale, landmarks)
    report = evaluation.lfw
    if report is not None:
        v = report.verification
        click.echo(
            f"pairs: {report.pairs}  images: {report.images}  "
            f"detector misses: {report.detector_misses}"
        )
        click.echo(f"quality gate would reject: {report.gate_rejects} of {report.images} images")
        click.echo("fold accuracies: " + " ".join(f"{100 * a:.2f}" for a in v.fold_accuracies))
        click.echo(f"TAR at FAR={v.far_target:g}: {100 * v.tar_at_far:.2f}%")
        if roc_png and evaluation.similarities is not None:
            same = np.array([p.same for p in evaluation.pairs])
            title = f"{model_path.name}: {report.summary_line()}"
            write_roc_png(roc_png, evaluation.similarities, same, title)
            click.echo(f"ROC plot: {roc_png}")
        click.echo(report.summary_line())
    if evaluation.identification is not None:
        click.echo(openset_summary(evaluation.identification))
    if evaluation.strangers is not None:
        click.echo(f"LFW identities as strangers: {evaluation.strangers.summary()}")
    if json_out:
        json_out.write_text(json.dumps(evaluation.as_dict(), indent=2) + "\n", encoding="utf-8")
