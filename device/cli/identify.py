"""``peephole identify``: name every face in photos, or say it is unknown."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click

from device.cli.app import AppContext, pass_app
from device.cli.photos import Photos
from device.identity.matching import Match

logger = logging.getLogger(__name__)


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per face.")
@click.option("--threshold", type=click.FloatRange(-1, 1), help="Override the threshold.")
@pass_app
def identify(
    app: AppContext, images: tuple[Path, ...], as_json: bool, threshold: float | None
) -> None:
    """Name every face in IMAGES, or say it is unknown."""
    photos = Photos(images, as_json)
    with app.open_gallery() as gallery:
        matcher = app.matcher(gallery, threshold)
        if not matcher.people:
            logger.warning("nobody is enrolled for this model")
        pipeline = app.pipeline()
        for path, image in photos:
            faces = pipeline.analyse(image)
            if not faces:
                photos.no_face(path)
            for face in faces:
                match = None if face.embedding is None else matcher.identify(face.embedding)
                record = identify_record(str(path), face.detection.box, match, face.quality.verdict)
                record["why"] = why_unknown(match, matcher.threshold, matcher.margin)
                click.echo(
                    json.dumps(record, ensure_ascii=False) if as_json else identify_line(record)
                )
    photos.finish()


def identify_record(
    image: str, box: tuple[float, float, float, float], match: Match | None, verdict: str
) -> dict[str, Any]:
    compared = match is not None and match.candidate is not None
    return {
        "image": image,
        "box": [round(float(v), 1) for v in box],
        "person": None if match is None else match.person,
        "similarity": round(match.similarity, 4) if match is not None and compared else None,
        "margin": round(match.margin, 4) if match is not None and compared else None,
        "verdict": verdict,
    }


def why_unknown(match: Match | None, threshold: float, margin: float) -> str | None:
    """Why a face the gate accepted is unknown, in words; None when it is named or not judged."""
    if match is None or match.known:
        return None
    if match.candidate is None:
        return "nobody is enrolled for this model"
    if match.similarity < threshold:
        return f"closest is {match.candidate} at {match.similarity:.3f}, below the threshold {threshold:.3f}"
    return (
        f"{match.candidate} matches at {match.similarity:.3f} but another enrolled person is "
        f"as close (margin {match.margin:.3f} < {margin:.3f}): is the same face enrolled under two names?"
    )


def identify_line(record: dict[str, Any]) -> str:
    if record["verdict"] != "ok":
        return f"{record['image']}: box={record['box']} not identified (gate: {record['verdict']})"
    if record["similarity"] is None:
        return f"{record['image']}: box={record['box']} person=unknown ({record['why']})"
    person = record["person"] if record["person"] is not None else "unknown"
    line = (
        f"{record['image']}: box={record['box']} person={person} "
        f"similarity={record['similarity']:.3f} margin={record['margin']:.3f} "
        f"verdict={record['verdict']}"
    )
    return line + (f" ({record['why']})" if record["why"] else "")
