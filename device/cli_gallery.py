"""Gallery commands: enroll, identify, people, gallery export/import/reembed, calibrate."""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from device.enroll import (
    Enrollment,
    EnrollOptions,
    FrameOutcome,
    decode_crop,
    enroll_frames,
    enroll_images,
    image_paths,
    source_frames,
    video_frames,
)
from device.errors import GalleryError, PeepholeError
from device.gallery import Gallery, Sample, normalise_name
from device.imageio import expand_image_paths, read_image
from device.manifest import embedding_key, file_sha256, load_manifest_for
from device.matching import Match, Matcher, resolve_threshold
from device.openset import ProbeScores, evaluate, leave_one_out_scores, threshold_for_far
from device.sources import SourceOptions

if TYPE_CHECKING:
    from device.cli import AppContext

EXPORT_FORMAT = "peephole-gallery/1"
# The group's context object is device.cli's AppContext. Not importing device.cli at run
# time keeps the import cycle (cli registers these commands) out of mypy's way.
pass_app = click.pass_obj


def echo_err(message: str) -> None:
    click.echo(message, err=True)


def open_existing(app: AppContext) -> Gallery:
    return Gallery.open(app.gallery_path, create=False)


def make_matcher(app: AppContext, gallery: Gallery, threshold: float | None = None) -> Matcher:
    embedder = app.embedder()
    override = threshold if threshold is not None else app.config.model.threshold
    chosen = resolve_threshold(embedder.manifest.identification_threshold, override)
    return Matcher.from_gallery(gallery, embedder.embedding_key, chosen, app.config.model.margin)


# enroll -------------------------------------------------------------------


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
    options = EnrollOptions(
        samples=samples or (len(files) if from_images else settings.samples),
        min_samples=min_samples or default_min,
        largest_face=largest_face,
        store_crops=app.config.gallery.store_crops,
        duplicate_similarity=settings.duplicate_similarity,
    )
    if options.min_samples > options.samples:
        raise click.UsageError(f"--min-samples {options.min_samples} is above {options.samples}")
    embedder = app.embedder()
    enrollment = Enrollment(app.pipeline(), options, existing_embeddings(app, display, existing))
    if from_images:
        report_images(enroll_images(enrollment, files))
    elif video is not None:
        report_stream(enroll_frames(enrollment, video_frames(video)), options.samples)
    else:
        echo_err(f"look at the camera ({app.config.camera.source}); collecting {options.samples}")
        camera = app.config.camera
        capture = SourceOptions(width=camera.width, height=camera.height, fps=camera.fps)
        frames = source_frames(camera.source, capture, timeout)
        report_stream(enroll_frames(enrollment, frames), options.samples, live=True)
    taken = enrollment.result(options.min_samples)
    with Gallery.open(app.gallery_path) as gallery:
        stored = gallery.add_person_samples(display, taken, embedder.embedding_key, append=append)
    click.echo(f"enrolled {stored}: {len(taken)} sample(s) (model {embedder.embedding_key[:12]})")
    if from_images and len(taken) < 3 and existing is None:
        echo_err("note: 5-10 varied photos recognise better than one or two")


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
            echo_err(f"{outcome.source}: sample {taken}")
        else:
            echo_err(f"{outcome.source}: skipped: {outcome.reason}")


def report_stream(outcomes: Iterator[FrameOutcome], wanted: int, live: bool = False) -> None:
    """Progress for video and camera: each sample, and (live) why frames are refused."""
    taken = 0
    last_note = 0.0
    for outcome in outcomes:
        if outcome.accepted:
            taken += 1
            echo_err(f"sample {taken}/{wanted} ({outcome.source})")
        elif live and time.monotonic() - last_note >= 1.0:
            last_note = time.monotonic()
            hint = " (turn your head a little)" if outcome.reason == "near-duplicate" else ""
            echo_err(f"waiting: {outcome.reason}{hint}")


# identify -----------------------------------------------------------------


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per face.")
@click.option("--threshold", type=click.FloatRange(-1, 1), help="Override the threshold.")
@pass_app
def identify(
    app: AppContext, images: tuple[Path, ...], as_json: bool, threshold: float | None
) -> None:
    """Name every face in IMAGES, or say it is unknown."""
    failures = 0
    with open_existing(app) as gallery:
        matcher = make_matcher(app, gallery, threshold)
        if not matcher.people:
            echo_err("peephole: warning: nobody is enrolled for this model")
        pipeline = app.pipeline()
        for path in expand_image_paths(list(images)):
            try:
                image = read_image(path)
            except PeepholeError as error:
                echo_err(f"peephole: error: {error}")
                failures += 1
                continue
            faces = pipeline.analyse(image)
            if not faces:
                click.echo(
                    json.dumps({"image": str(path), "faces": 0}) if as_json else f"{path}: no face"
                )
            for face in faces:
                match = None if face.embedding is None else matcher.identify(face.embedding)
                record = identify_record(str(path), face.detection.box, match, face.quality.verdict)
                click.echo(
                    json.dumps(record, ensure_ascii=False) if as_json else identify_line(record)
                )
    if failures:
        sys.exit(1)


def identify_record(
    image: str, box: tuple[float, float, float, float], match: Match | None, verdict: str
) -> dict[str, Any]:
    return {
        "image": image,
        "box": [round(float(v), 1) for v in box],
        "person": None if match is None else match.person,
        "similarity": None if match is None else round(match.similarity, 4),
        "margin": None if match is None else round(match.margin, 4),
        "verdict": verdict,
    }


def identify_line(record: dict[str, Any]) -> str:
    if record["similarity"] is None:
        return f"{record['image']}: box={record['box']} not identified (gate: {record['verdict']})"
    person = record["person"] if record["person"] is not None else "unknown"
    return (
        f"{record['image']}: box={record['box']} person={person} "
        f"similarity={record['similarity']:.3f} margin={record['margin']:.3f} "
        f"verdict={record['verdict']}"
    )


# people -------------------------------------------------------------------


@click.group()
def people() -> None:
    """List, remove and rename enrolled people."""


def current_embedding_key(app: AppContext) -> str:
    """The configured model's embedding key, from its file and manifest without loading it."""
    if not app.model_path.is_file():
        raise PeepholeError(f"model {app.model_path} is not installed; pass --model FILE")
    manifest = load_manifest_for(app.model_path, app.manifest_path)
    return embedding_key(file_sha256(app.model_path), manifest.mirror_average)


@people.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per person.")
@pass_app
def people_list(app: AppContext, as_json: bool) -> None:
    """Names, sample counts for the current model, crops, last seen, and what to do."""
    key = current_embedding_key(app)
    with open_existing(app) as gallery:
        summaries = gallery.summaries(key)
    if as_json:
        for s in summaries:
            click.echo(
                json.dumps(
                    {
                        "name": s.name,
                        "samples": s.samples,
                        "other_model_samples": s.other_model_samples,
                        "crops": s.crops,
                        "last_seen": s.last_seen,
                        "status": s.status,
                    },
                    ensure_ascii=False,
                )
            )
        return
    click.echo(f"model {key[:12]}: {len(summaries)} people")
    for s in summaries:
        seen = time.strftime("%Y-%m-%d %H:%M", time.localtime(s.last_seen)) if s.last_seen else "-"
        click.echo(
            f"{s.name}\tsamples={s.samples} other-model={s.other_model_samples} "
            f"crops={s.crops} last-seen={seen} {s.status}"
        )


@people.command("remove")
@click.argument("name")
@pass_app
def people_remove(app: AppContext, name: str) -> None:
    """Delete NAME and everything stored about them (embeddings and crops)."""
    with open_existing(app) as gallery:
        removed = gallery.remove_person(name)
    click.echo(f"removed {removed}")


@people.command("rename")
@click.argument("old")
@click.argument("new")
@pass_app
def people_rename(app: AppContext, old: str, new: str) -> None:
    """Rename OLD to NEW."""
    with open_existing(app) as gallery:
        before, after = gallery.rename_person(old, new)
    click.echo(f"renamed {before} to {after}")


# gallery ------------------------------------------------------------------


@click.group("gallery")
def gallery_group() -> None:
    """Back up, restore and re-embed the gallery."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@gallery_group.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@pass_app
def gallery_export(app: AppContext, file: Path, force: bool) -> None:
    """Write the whole gallery (people, embeddings of every model, crops) to a JSON FILE."""
    if file.exists() and not force:
        raise GalleryError(f"{file} exists; pass --force to overwrite it")
    with open_existing(app) as gallery:
        records = gallery.export_records()
    for person in records:
        for crop in person["crops"]:
            crop["png"] = _b64(crop["png"])
        for embedding in person["embeddings"]:
            embedding["vector"] = _b64(embedding["vector"])
    document = {"format": EXPORT_FORMAT, "exported": time.time(), "people": records}
    temporary = file.with_name(f".{file.name}.tmp")
    # The export holds face crops: readable by the owner only, like the gallery.
    descriptor = os.open(temporary, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        json.dump(document, stream, ensure_ascii=False)
    os.replace(temporary, file)
    samples = sum(len(p["embeddings"]) for p in records)
    click.echo(f"exported {len(records)} people, {samples} embeddings to {file}")


def parse_export(file: Path) -> list[dict[str, Any]]:
    """The people of an export file, decoded and checked; GalleryError if it is not one."""
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GalleryError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise GalleryError(f"{file} is not a gallery export: {error}") from None
    if not isinstance(document, dict) or document.get("format") != EXPORT_FORMAT:
        raise GalleryError(f"{file} is not a gallery export (format {EXPORT_FORMAT!r})")
    try:
        return [_parse_person(person) for person in document["people"]]
    except (KeyError, TypeError, ValueError, IndexError, binascii.Error) as error:
        raise GalleryError(f"{file} is not a valid gallery export: {error!r}") from None


def _number(value: Any, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


def _parse_person(person: dict[str, Any]) -> dict[str, Any]:
    crops = [
        {
            "png": base64.b64decode(crop["png"], validate=True),
            "quality": _number(crop["quality"], optional=True),
            "source": str(crop["source"]),
            "created": _number(crop["created"]),
        }
        for crop in person["crops"]
    ]
    embeddings = []
    for embedding in person["embeddings"]:
        vector = base64.b64decode(embedding["vector"], validate=True)
        crop = embedding["crop"]
        if not vector or len(vector) % 4 or (crop is not None and not 0 <= int(crop) < len(crops)):
            raise ValueError(f"bad embedding of {person['name']!r}")
        sha = str(embedding["model_sha256"])
        if len(sha) != 64:
            raise ValueError(f"bad model sha256 {sha!r}")
        embeddings.append(
            {
                "crop": None if crop is None else int(crop),
                "model_sha256": sha,
                "vector": vector,
                "quality": _number(embedding["quality"], optional=True),
                "source": str(embedding["source"]),
                "created": _number(embedding["created"]),
            }
        )
    return {
        "name": str(person["name"]),
        "created": _number(person["created"]),
        "last_seen": _number(person["last_seen"], optional=True),
        "crops": crops,
        "embeddings": embeddings,
    }


@gallery_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--append", is_flag=True, help="Add samples to people already enrolled.")
@pass_app
def gallery_import(app: AppContext, file: Path, append: bool) -> None:
    """Add the people of an export FILE (all or nothing)."""
    records = parse_export(file)
    with Gallery.open(app.gallery_path) as gallery:
        added = gallery.import_records(records, append=append)
    click.echo(f"imported {len(records)} people, {added} embeddings")


@gallery_group.command("reembed")
@pass_app
def gallery_reembed(app: AppContext) -> None:
    """Embed the stored crops with the current model (after a model change)."""
    embedder = app.embedder()
    with open_existing(app) as gallery:
        missing = gallery.crops_missing(embedder.embedding_key)
        rows = [
            (crop_id, person_id, Sample(embedder.embed(decode_crop(png)), quality, source))
            for crop_id, person_id, _name, png, quality, source in missing
        ]
        if rows:
            gallery.add_crop_embeddings(rows, embedder.embedding_key)
        stranded = [s.name for s in gallery.summaries(embedder.embedding_key) if s.samples == 0]
    click.echo(f"re-embedded {len(rows)} crop(s) with model {embedder.embedding_key[:12]}")
    if stranded:
        echo_err(f"no stored crops, re-enroll: {', '.join(stranded)}")


# calibrate ----------------------------------------------------------------


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
    with open_existing(app) as gallery:
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
            echo_err(f"peephole: warning: skipped {error}")
            continue
        for face in pipeline.analyse(image):
            if face.embedding is not None:
                matches.append(matcher.identify(face.embedding))
    if not matches:
        raise PeepholeError(f"no usable face among the photos in {strangers}")
    similarity = np.array([m.similarity for m in matches], dtype=np.float32)
    gaps = np.array([m.margin for m in matches], dtype=np.float32)
    chosen = threshold_for_far(similarity, gaps, target_far, margin)
    if chosen is None:
        echo_err("no stranger came near anyone enrolled: keeping the current threshold")
        current = resolve_threshold(embedder.manifest.identification_threshold, None)
        chosen = resolve_threshold(current, app.config.model.threshold)
    threshold = chosen
    stranger_scores = ProbeScores(
        similarity, gaps, [m.candidate for m in matches], [None] * len(matches)
    )
    far = evaluate(stranger_scores, threshold, margin).strangers_named
    household = evaluate(
        leave_one_out_scores(rows.vectors, rows.person_index, rows.names), threshold, margin
    )
    result = {
        "threshold": threshold,
        "margin": margin,
        "target_far": target_far,
        "stranger_faces": len(matches),
        "strangers_named": far,
        "enrolled_samples": household.enrolled_probes,
        "enrolled_named_correctly_leave_one_out": household.enrolled_named_correctly,
        "resolvable": len(matches) * target_far >= 1.0,
    }
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(
        f"threshold {threshold:.3f}: {far:.1%} of {len(matches)} stranger faces named "
        f"(target {target_far:.1%}); enrolled samples named correctly (leave-one-out): "
        f"{household.enrolled_named_correctly:.1%} of {household.enrolled_probes}"
    )
    if not result["resolvable"]:
        echo_err(
            f"peephole: warning: {len(matches)} stranger faces cannot resolve a {target_far:.1%} "
            f"target; use at least {math.ceil(1 / target_far)} for a trustworthy threshold"
        )
    click.echo(f"to use it, put in the config:\n[model]\nthreshold = {threshold:.3f}")


def register(main: click.Group) -> None:
    for command in (enroll, identify, people, gallery_group, calibrate):
        main.add_command(command)
