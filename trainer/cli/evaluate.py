"""``trainer evaluate``: the command over ``trainer.evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from device.errors import PeepholeError
from trainer.evaluate import evaluate_model, model_embed_fn, openset_summary, write_roc_png


@click.command("evaluate")
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
def command(
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
    embed = model_embed_fn(model_path, manifest_path, activation, threads)
    evaluation = evaluate_model(
        embed, model_path, lfw_dir, pairs_file, folds, lfw_cache, celebrity, threads,
        greyscale, landmarks,
    )  # fmt: skip
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
