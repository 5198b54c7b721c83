"""``trainer write-manifest --model X.tflite``: the command over ``trainer.write_manifest``."""

from __future__ import annotations

from pathlib import Path

import click

from device.errors import PeepholeError
from trainer.cli.options import lfw_options, mirror_average_option, path_option, threads_option
from trainer.evaluate import LfwOptions
from trainer.write_manifest import write_third_party_manifest


@click.command("write-manifest")
@path_option("--model", "model_path", required=True, help="A 112x112 TFLite face embedder.")
@path_option("--output", help="Manifest to write [default: beside the model, <stem>.json].")
@click.option("--name", help="Model name for the manifest [default: file name].")
@click.option("--mean", default=127.5, show_default=True, help="Pixel mean the model expects.")
@click.option("--std", default=128.0, show_default=True, help="Pixel scale the model expects.")
@click.option("--color-order", type=click.Choice(["RGB", "BGR"]), default="RGB", show_default=True)
@lfw_options(required=True)
@path_option("--celebrity", help="celebrity112 folder for the identification threshold.")
@mirror_average_option
@threads_option
def command(
    model_path: Path, output: Path | None, name: str | None, mean: float, std: float,
    color_order: str, lfw: LfwOptions, celebrity: Path | None, mirror_average: bool,
    threads: int,
) -> None:  # fmt: skip
    """Write a manifest (thresholds included) for a third-party TFLite embedder."""
    if celebrity is not None and not celebrity.is_dir():
        raise PeepholeError(f"celebrity folder not found: {celebrity}")
    target = output or model_path.with_suffix(".json")
    manifest, report = write_third_party_manifest(
        model_path, target, name or model_path.stem, mean, std, color_order, lfw, celebrity,
        threads, mirror_average,
    )  # fmt: skip
    click.echo(f"LFW accuracy: {100 * report.verification.accuracy_mean:.2f}%")
    click.echo(f"verification threshold: {manifest.verification_threshold}")
    click.echo(f"identification threshold: {manifest.identification_threshold}")
    click.echo(f"manifest: {target}")
