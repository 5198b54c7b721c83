"""``trainer prepare SRC DST``: the command over ``trainer.prepare``."""

from __future__ import annotations

from pathlib import Path

import click

from trainer.prepare import (
    PrepareOptions,
    PrepareReport,
    default_embedder,
    detection_pipeline,
    prepare,
)
from trainer.prepared import REPORT_CSV, REPORT_JSON

DEFAULTS = PrepareOptions()


@click.command("prepare")
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option(
    "--min-score",
    default=DEFAULTS.min_score,
    show_default=True,
    help="Drop faces the detector is less sure of.",
)
@click.option(
    "--min-sharpness",
    default=DEFAULTS.min_sharpness,
    show_default=True,
    help="Drop crops whose Laplacian variance is lower (blur).",
)
@click.option(
    "--min-images",
    default=DEFAULTS.min_images,
    show_default=True,
    help="Drop identities with fewer kept images.",
)
@click.option(
    "--max-centre-distance",
    default=DEFAULTS.max_centre_distance,
    show_default=True,
    help="Drop samples farther (1 - cosine) from their centre.",
)
@click.option(
    "--duplicate-similarity",
    default=DEFAULTS.duplicate_similarity,
    show_default=True,
    help="Report identity pairs whose centres are closer.",
)
@click.option("--merge-duplicates", is_flag=True, help="Merge probable duplicate identities.")
@click.option(
    "--embedder",
    "embedder_path",
    type=click.Path(path_type=Path),
    help="TFLite embedder (with manifest) for the outlier/duplicate rules "
    "[default: the shipped model].",
)
@click.option(
    "--embedder-manifest",
    type=click.Path(path_type=Path),
    help="The embedder's manifest [default: beside the model].",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="Device config whose [detector] settings to use.",
)
@click.option("--threads", default=2, show_default=True, help="TFLite threads.")
def command(
    src: Path,
    dst: Path,
    min_score: float,
    min_sharpness: float,
    min_images: int,
    max_centre_distance: float,
    duplicate_similarity: float,
    merge_duplicates: bool,
    embedder_path: Path | None,
    embedder_manifest: Path | None,
    config_path: Path | None,
    threads: int,
) -> None:
    """Align SRC (a folder per identity, or a flat folder) into clean crops in DST."""
    options = PrepareOptions(
        min_score=min_score,
        min_sharpness=min_sharpness,
        min_images=min_images,
        max_centre_distance=max_centre_distance,
        duplicate_similarity=duplicate_similarity,
        merge_duplicates=merge_duplicates,
        progress=True,
    )
    pipeline = detection_pipeline(config_path, threads, min_score)
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
