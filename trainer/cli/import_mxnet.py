"""``trainer import-mxnet``: the command over ``trainer.import_mxnet``."""

from __future__ import annotations

from pathlib import Path

import click

from device.errors import ModelError
from trainer.cli.options import path_option
from trainer.import_mxnet import import_mxnet
from trainer.prepared import sample_crops


@click.command("import-mxnet")
@path_option("--symbol", required=True, help="The MXNet -symbol.json.")
@path_option("--params", required=True, help="The MXNet .params.")
@path_option(
    "--output", required=True, help="The .keras model to write (with provenance.json beside it)."
)
@path_option(
    "--crops", required=True, help="A prepared folder: real aligned crops for the parity check."
)
@click.option("--count", default=64, show_default=True, help="Crops to check parity on.")
@click.option(
    "--licence",
    required=True,
    help="The weights' licence, recorded in the manifest and the model card (e.g. MIT).",
)
@click.option("--min-cosine", default=0.9999, show_default=True)
def command(
    symbol: Path, params: Path, output: Path, crops: Path, count: int, licence: str,
    min_cosine: float,
) -> None:  # fmt: skip
    """Import pretrained MXNet weights (no MXNet needed); fails without parity."""
    if output.suffix != ".keras":
        raise ModelError(f"{output}: the output is a .keras model")
    report = import_mxnet(
        symbol, params, output, sample_crops(crops, count, seed=0), licence, min_cosine
    )
    click.echo(f"imported {report.parameters:,} parameters, {report.embedding_size}-d embedding")
    click.echo(
        f"parity: min cosine {report.parity_cosine_min:.7f}, "
        f"mean {report.parity_cosine_mean:.7f} on {report.crops} crops"
    )
    click.echo(f"model: {report.output}")
