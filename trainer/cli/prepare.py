"""``trainer prepare SRC DST``: the command over ``trainer.prepare``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from trainer.cli.options import Command, path_option, threads_option
from trainer.prepare import (
    PrepareOptions,
    PrepareReport,
    default_embedder,
    detection_pipeline,
    prepare,
)
from trainer.prepared import REPORT_CSV, REPORT_JSON

DEFAULTS = PrepareOptions()


def rule_option(flag: str, help: str) -> Callable[[Command], Command]:
    """A cleaning rule's option, defaulting to ``PrepareOptions``' field of the same name."""
    default = getattr(DEFAULTS, flag.removeprefix("--").replace("-", "_"))
    return click.option(flag, default=default, show_default=True, help=help)


@click.command("prepare")
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@rule_option("--min-score", "Drop faces the detector is less sure of.")
@rule_option("--min-sharpness", "Drop crops whose Laplacian variance is lower (blur).")
@rule_option("--min-images", "Drop identities with fewer kept images.")
@rule_option("--max-centre-distance", "Drop samples farther (1 - cosine) from their centre.")
@rule_option("--duplicate-similarity", "Report identity pairs whose centres are closer.")
@click.option("--merge-duplicates", is_flag=True, help="Merge probable duplicate identities.")
@path_option(
    "--embedder",
    "embedder_path",
    help="TFLite embedder (with manifest) for the outlier/duplicate rules "
    "[default: the shipped model].",
)
@path_option("--embedder-manifest", help="The embedder's manifest [default: beside the model].")
@path_option("--config", "config_path", help="Device config whose [detector] settings to use.")
@threads_option
def command(
    src: Path,
    dst: Path,
    embedder_path: Path | None,
    embedder_manifest: Path | None,
    config_path: Path | None,
    threads: int,
    **rules: Any,
) -> None:
    """Align SRC (a folder per identity, or a flat folder) into clean crops in DST."""
    options = PrepareOptions(**rules, progress=True)
    pipeline = detection_pipeline(config_path, threads, options.min_score)
    embedder = default_embedder(embedder_path, embedder_manifest, threads)
    _echo_summary(prepare(src, dst, options, pipeline, embedder))


def _echo_summary(report: PrepareReport) -> None:
    summary = report.summary()
    click.echo(f"images: {summary['images']}  kept: {summary['kept']}")
    if report.labelled:
        click.echo(f"identities kept: {summary['identities_kept']}")
        if not report.embedder:
            click.echo("outlier and duplicate rules skipped: no embedder (pass --embedder)")
    for reason, count in report.dropped_by_reason().items():
        click.echo(f"dropped {reason}: {count}")
    for first, second, similarity in report.duplicates:
        click.echo(f"probable duplicate: {first} ~ {second} (centre cosine {similarity:.3f})")
    click.echo(f"report: {Path(report.destination) / REPORT_JSON}, {REPORT_CSV}")
