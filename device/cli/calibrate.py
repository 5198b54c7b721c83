"""``peephole calibrate``: the door's identification threshold from photos of strangers."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import click
import numpy as np

from device.cli.app import AppContext, pass_app
from device.errors import GalleryError, PeepholeError
from device.identity.calibration import (
    DoorCalibration,
    ProbeScores,
    calibrate_door,
    leave_one_out_scores,
)
from device.identity.matching import Match, Matcher, resolve_threshold
from device.vision.imageio import expand_image_paths, read_image

logger = logging.getLogger(__name__)


@click.command()
@click.option(
    "--strangers",
    required=True,
    multiple=True,
    type=click.Path(path_type=Path),
    help="Folder of photos of people who are NOT enrolled; give several sources (a folder "
    "each) and the worst one decides.",
)
@click.option(
    "--target-far",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.01,
    show_default=True,
    help="Largest tolerated fraction of strangers named, in every folder.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def calibrate(
    app: AppContext, strangers: tuple[Path, ...], target_far: float, as_json: bool
) -> None:
    """Choose the identification threshold for this gallery from photos of strangers.

    Prints the threshold, the strangers named in each folder at it (with a 95%
    interval) and the [model] line to put in the config; writes nothing.
    """
    for folder in strangers:
        if not folder.is_dir():
            raise PeepholeError(f"{folder}: not a folder")
    embedder = app.embedder()
    margin = app.config.model.margin
    with app.open_gallery() as gallery:
        matcher = Matcher.from_gallery(gallery, embedder.embedding_key, 1.0, margin)
        rows = gallery.embeddings(embedder.embedding_key)
    if not matcher.people:
        raise GalleryError("nobody is enrolled for this model: enroll the household first")
    domains = {str(folder): _stranger_scores(app, matcher, folder) for folder in strangers}
    current = resolve_threshold(embedder.manifest.identification_threshold, None)
    result = calibrate_door(
        domains,
        leave_one_out_scores(rows.vectors, rows.person_index, rows.names),
        target_far,
        margin,
        fallback_threshold=resolve_threshold(current, app.config.model.threshold),
    )
    if not result.found:
        logger.info("no stranger came near anyone enrolled: keeping the current threshold")
    if as_json:
        click.echo(json.dumps(_as_record(result)))
        return
    click.echo(
        f"threshold {result.threshold:.3f}: {result.strangers_named:.1%} of "
        f"{result.stranger_faces} stranger faces named (target {target_far:.1%} in every "
        f"folder); enrolled samples named correctly (leave-one-out): "
        f"{result.enrolled_named_correctly:.1%} of {result.enrolled_samples}"
    )
    click.echo(f"{'strangers':<40} {'faces':>6} {'named':>6} {'rate':>7}  95% interval")
    for domain in result.domains:
        low, high = domain.interval
        click.echo(
            f"{domain.domain:<40} {domain.faces:>6} {domain.named:>6} {domain.rate:>7.2%}  "
            f"{low:.2%}-{high:.2%}"
        )
    if not result.resolvable:
        logger.warning(
            f"{min(d.faces for d in result.domains)} stranger faces in a folder cannot "
            f"resolve a {target_far:.1%} target; use at least {math.ceil(1 / target_far)} "
            "per folder for a trustworthy threshold"
        )
    click.echo(f"to use it, put in the config:\n[model]\nthreshold = {result.threshold:.3f}")


def _stranger_scores(app: AppContext, matcher: Matcher, folder: Path) -> ProbeScores:
    """How the gallery matches every accepted face in the folder's photos."""
    pipeline = app.pipeline()
    matches: list[Match] = []
    for path in expand_image_paths([folder]):
        try:
            image = read_image(path)
        except PeepholeError as error:
            logger.warning(f"skipped {error}")
            continue
        for face in pipeline.analyse(image):
            if face.embedding is not None:
                matches.append(matcher.identify(face.embedding))
    if not matches:
        raise PeepholeError(f"no usable face among the photos in {folder}")
    return ProbeScores(
        np.array([m.similarity for m in matches], dtype=np.float32),
        np.array([m.margin for m in matches], dtype=np.float32),
        [m.candidate for m in matches],
        [None] * len(matches),
    )


def _as_record(result: DoorCalibration) -> dict[str, object]:
    return {
        "threshold": result.threshold,
        "margin": result.margin,
        "target_far": result.target_far,
        "stranger_faces": result.stranger_faces,
        "strangers_named": result.strangers_named,
        "enrolled_samples": result.enrolled_samples,
        "enrolled_named_correctly_leave_one_out": result.enrolled_named_correctly,
        "resolvable": result.resolvable,
        "domains": [
            {
                "strangers": d.domain,
                "faces": d.faces,
                "named": d.named,
                "rate": d.rate,
                "interval": list(d.interval),
            }
            for d in result.domains
        ],
    }
