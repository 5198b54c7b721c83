"""``trainer export-tflite``: the command over ``trainer.export``."""

from __future__ import annotations

from pathlib import Path

import click

from device.errors import PeepholeError
from trainer.cli.options import (
    activation_option,
    lfw_options,
    mirror_average_option,
    path_option,
    threads_option,
)
from trainer.evaluate import LfwOptions
from trainer.export import ExportOptions, export, run_provenance


@click.command("export-tflite")
@path_option(
    "--model",
    "model_path",
    required=True,
    help="Trained model: a run's model.keras (or last.weights.h5).",
)
@path_option(
    "--output", required=True, help="The int8 .tflite to write; its manifest goes beside it."
)
@path_option(
    "--crops", required=True, help="A prepared folder: representative and held-out parity crops."
)
@lfw_options(lfw_help="LFW images: calibrates the threshold and checks accuracy parity.")
@path_option(
    "--celebrity",
    help="celebrity112 folder: the household for the identification threshold, "
    "calibrated against LFW's identities as strangers (needs --lfw).",
)
@click.option("--name", default=ExportOptions.name, show_default=True)
@click.option("--representative", "representative_count", default=400, show_default=True)
@click.option("--holdout", "holdout_count", default=300, show_default=True)
@path_option("--float-output", help="Also keep the float32 TFLite here.")
@activation_option(help="Only for a .weights.h5 model.")
@mirror_average_option
@threads_option
def command(
    model_path: Path, output: Path, crops: Path, lfw: LfwOptions | None, celebrity: Path | None,
    name: str, representative_count: int, holdout_count: int, float_output: Path | None,
    activation: str, mirror_average: bool, threads: int,
) -> None:  # fmt: skip
    """Export int8 TFLite + manifest; fails when int8 drifts from float."""
    provenance = run_provenance(model_path)
    provenance["activation"] = provenance.get("activation", activation)
    options = ExportOptions(
        model=model_path, output=output, crops=crops, name=name,
        representative_count=representative_count, holdout_count=holdout_count,
        lfw=lfw, celebrity=celebrity, float_output=float_output, mirror_average=mirror_average, threads=threads,
        provenance=provenance,
    )  # fmt: skip
    report = export(options)
    click.echo(f"int8 model: {report.int8_path} ({report.int8_bytes / 1e6:.2f} MB)")
    click.echo(
        f"parity: mean cosine {report.parity_cosine_mean:.4f}, min {report.parity_cosine_min:.4f}"
    )
    if report.lfw_int8 is not None and report.lfw_float is not None:
        click.echo(
            f"LFW: int8 {100 * report.lfw_int8:.2f}% float {100 * report.lfw_float:.2f}% "
            f"threshold {report.verification_threshold}"
        )
    if report.profile_int8 and report.profile_float:
        click.echo(f"int8: {report.profile_int8.line()}")
        click.echo(f"float32: {report.profile_float.line()}")
    if report.identification:
        click.echo(f"identification: {report.identification_provenance}")
    if report.failures:
        raise PeepholeError("parity check failed: " + "; ".join(report.failures))
    click.echo(f"manifest: {report.manifest_path}")
