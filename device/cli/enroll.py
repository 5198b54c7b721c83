"""``peephole enroll``: a person's samples from the camera, photos or a video."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import click
import numpy as np

from device.cli.app import AppContext, pass_app
from device.errors import GalleryError
from device.identity.enroll import (
    Enrollment,
    enroll_frames,
    enroll_images,
    image_paths,
    source_frames,
    video_frames,
)
from device.identity.frame_outcome import FrameOutcome
from device.identity.gallery import Gallery, Sample, name_key, normalise_name

logger = logging.getLogger(__name__)


@click.command()
@click.option("--name", required=True, help="The person's display name (any Unicode).")
@click.option("--images", "from_images", is_flag=True, help="Enroll from PATHS (files/folders).")
@click.option("--video", type=click.Path(path_type=Path), help="Enroll from a video file.")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--samples", type=click.IntRange(1), help="Good samples to collect [enroll.samples].")
@click.option("--min-samples", type=click.IntRange(1), help="Fewer than this stores nothing.")
@click.option("--largest-face", is_flag=True, help="Use the largest face of a crowded frame.")
@click.option("--append", is_flag=True, help="Add samples to an already enrolled person.")
@click.option(
    "--allow-lookalike",
    is_flag=True,
    help="Store the samples even though they match someone else enrolled (twins).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(1),
    default=60.0,
    show_default=True,
    help="Camera: give up after this many seconds.",
)
@pass_app
def enroll(
    app: AppContext,
    name: str,
    from_images: bool,
    video: Path | None,
    paths: tuple[Path, ...],
    samples: int | None,
    min_samples: int | None,
    largest_face: bool,
    append: bool,
    allow_lookalike: bool,
    timeout: float,
) -> None:
    """Enroll NAME from the camera (default), from photos (--images PATHS...) or a --video."""
    if paths and not from_images:
        raise click.UsageError("PATHS are only taken with --images")
    if from_images and not paths:
        raise click.UsageError("--images needs at least one file or folder")
    if from_images and video:
        raise click.UsageError("choose one of --images and --video")
    display = normalise_name(name)
    files = image_paths(list(paths)) if from_images else []
    existing = check_enrollable(app, display, append)
    settings = app.config.enroll
    default_min = 1 if from_images else settings.min_samples
    options = dataclasses.replace(
        settings,
        samples=samples or (len(files) if from_images else settings.samples),
        min_samples=min_samples or default_min,
    )
    if options.min_samples > options.samples:
        raise click.UsageError(f"--min-samples {options.min_samples} is above {options.samples}")
    embedder = app.embedder()
    enrollment = Enrollment(
        app.pipeline(),
        options,
        existing_embeddings(app, display, existing),
        largest_face=largest_face,
        store_crops=app.config.gallery.store_crops,
    )
    if from_images:
        report_images(enroll_images(enrollment, files))
    elif video is not None:
        report_stream(enroll_frames(enrollment, video_frames(video)), options.samples)
    else:
        logger.info(
            f"look at the camera ({app.config.camera.source}); collecting {options.samples}"
        )
        camera = app.config.camera
        frames = source_frames(camera.source, dataclasses.replace(camera, realtime=False), timeout)
        report_stream(enroll_frames(enrollment, frames), options.samples, live=True)
    taken = enrollment.result(options.min_samples)
    with Gallery.open(app.gallery_path) as gallery:
        if not allow_lookalike:
            refuse_lookalike(app, gallery, display, taken)
        stored = gallery.add_person_samples(display, taken, embedder.embedding_key, append=append)
    click.echo(f"enrolled {stored}: {len(taken)} sample(s) (model {embedder.embedding_key[:12]})")
    if from_images and len(taken) < 3 and existing is None:
        logger.info("note: 5-10 varied photos recognise better than one or two")


def refuse_lookalike(app: AppContext, gallery: Gallery, name: str, taken: list[Sample]) -> None:
    """Refuse samples that another enrolled person already matches at the naming threshold.

    The same face under two names makes both unknown (neither beats the other by
    the margin), without a word: say so before storing anything.
    """
    matcher = app.matcher(gallery)
    others = [i for i, other in enumerate(matcher.people) if name_key(other) != name_key(name)]
    if not others:
        return
    for sample in taken:
        scores = matcher.index.person_similarities(sample.embedding)
        best = max(others, key=lambda i: float(scores[i]))
        if float(scores[best]) >= matcher.threshold:
            raise GalleryError(
                f"these faces match {matcher.people[best]} (similarity {float(scores[best]):.3f}, "
                f"naming threshold {matcher.threshold:.3f}): under two names neither would be "
                f"recognised; nothing was stored (same person: --name "
                f"{matcher.people[best]!r} --append; twins: --allow-lookalike)"
            )


def check_enrollable(app: AppContext, name: str, append: bool) -> bool | None:
    """Refuse early (before any capture) a duplicate name or an unusable gallery.

    Returns None for a new person, True when appending to an enrolled one.
    """
    path = app.gallery_path
    if not path.exists():
        folder = next(p for p in path.absolute().parents if p.exists())
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise GalleryError(f"cannot create gallery {path}: {folder} is not writable")
        return None
    with Gallery.open(path, create=False) as gallery:
        if gallery.read_only:
            raise GalleryError(f"gallery {path} is read-only")
        if gallery.person_id(name) is None:
            return None
        if not append:
            raise GalleryError(
                f"{gallery.display_name(name)!r} is already enrolled; "
                "use --append to add samples, or choose another name"
            )
    return True


def existing_embeddings(app: AppContext, name: str, existing: bool | None) -> np.ndarray | None:
    if existing is None:
        return None
    with Gallery.open(app.gallery_path, create=False) as gallery:
        return gallery.person_embeddings(name, app.embedder().embedding_key)


def report_images(outcomes: Iterator[FrameOutcome]) -> None:
    taken = 0
    for outcome in outcomes:
        if outcome.accepted:
            taken += 1
            logger.info(f"{outcome.source}: sample {taken}")
        else:
            logger.warning(f"{outcome.source}: skipped: {outcome.reason}")


def report_stream(outcomes: Iterator[FrameOutcome], wanted: int, live: bool = False) -> None:
    """Progress for video and camera: each sample, and (live) why frames are refused."""
    taken = 0
    last_note = 0.0
    for outcome in outcomes:
        if outcome.accepted:
            taken += 1
            logger.info(f"sample {taken}/{wanted} ({outcome.source})")
        elif live and time.monotonic() - last_note >= 1.0:
            last_note = time.monotonic()
            hint = " (turn your head a little)" if outcome.reason == "near-duplicate" else ""
            logger.info(f"waiting: {outcome.reason}{hint}")
