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
from device.identity.calibration import ProbeScores, calibrate_door, leave_one_out_scores
from device.identity.matching import Match, Matcher, resolve_threshold
from device.vision.imageio import expand_image_paths, read_image

logger = logging.getLogger(__name__)


@click.command()
@click.option(
    "--strangers",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder of photos of people who are NOT enrolled.",
)
@click.option(
    "--target-far",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.01,
    show_default=True,
    help="Largest tolerated fraction of strangers named.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def calibrate(app: AppContext, strangers: Path, target_far: float, as_json: bool) -> None:
    """Choose the identification threshold for this gallery from photos of strangers.

    Prints the threshold and the [model] line to put in the config; writes nothing.
    """
    if not strangers.is_dir():
        raise PeepholeError(f"{strangers}: not a folder")
    embedder = app.embedder()
    margin = app.config.model.margin
    with app.open_gallery() as gallery:
        matcher = Matcher.from_gallery(gallery, embedder.embedding_key, 1.0, margin)
        rows = gallery.embeddings(embedder.embedding_key)
    if not matcher.people:
        raise GalleryError("nobody is enrolled for this model: enroll the household first")
    pipeline = app.pipeline()
    matches: list[Match] = []
    for path in expand_image_paths([strangers]):
        try:
            image = read_image(path)
        except PeepholeError as error:
            logger.warning(f"skipped {error}")
            continue
        for face in pipeline.analyse(image):
            if face.embedding is not None:
                matches.append(matcher.identify(face.embedding))
    if not matches:
        raise PeepholeError(f"no usable face among the photos in {strangers}")
    stranger_scores = ProbeScores(
        np.array([m.similarity for m in matches], dtype=np.float32),
        np.array([m.margin for m in matches], dtype=np.float32),
        [m.candidate for m in matches],
        [None] * len(matches),
    )
    current = resolve_threshold(embedder.manifest.identification_threshold, None)
    result = calibrate_door(
        stranger_scores,
        leave_one_out_scores(rows.vectors, rows.person_index, rows.names),
        target_far,
        margin,
        fallback_threshold=resolve_threshold(current, app.config.model.threshold),
    )
    if not result.found:
        logger.info("no stranger came near anyone enrolled: keeping the current threshold")
    if as_json:
        click.echo(
            json.dumps(
                {
                    "threshold": result.threshold,
                    "margin": margin,
                    "target_far": target_far,
                    "stranger_faces": result.stranger_faces,
                    "strangers_named": result.strangers_named,
                    "enrolled_samples": result.enrolled_samples,
                    "enrolled_named_correctly_leave_one_out": result.enrolled_named_correctly,
                    "resolvable": result.resolvable,
                }
            )
        )
        return
    click.echo(
        f"threshold {result.threshold:.3f}: {result.strangers_named:.1%} of {len(matches)} "
        f"stranger faces named (target {target_far:.1%}); enrolled samples named correctly "
        f"(leave-one-out): {result.enrolled_named_correctly:.1%} of {result.enrolled_samples}"
    )
    if not result.resolvable:
        logger.warning(
            f"{len(matches)} stranger faces cannot resolve a {target_far:.1%} "
            f"target; use at least {math.ceil(1 / target_far)} for a trustworthy threshold"
        )
    click.echo(f"to use it, put in the config:\n[model]\nthreshold = {result.threshold:.3f}")
