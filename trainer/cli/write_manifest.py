"""``trainer write-manifest --model X.tflite``: the command over ``trainer.write_manifest``."""

from __future__ import annotations

from pathlib import Path

import click

from device.errors import PeepholeError
from trainer.write_manifest import write_third_party_manifest


@click.command("write-manifest")
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
@click.option("--color-order", type=click.Choice(["RGB", "BGR"]), default="RGB", show_default=True)
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
def command(
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
