"""``peephole inspect``: every face found in photos with its quality verdict and the reason."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click
import cv2
import numpy as np

from device.cli.app import AppContext, pass_app
from device.cli.photos import Photos
from device.vision.pipeline import FaceAnalysis

logger = logging.getLogger(__name__)


def face_record(image: str, face: FaceAnalysis) -> dict[str, Any]:
    detection = face.detection
    report = face.quality
    return {
        "image": image,
        "box": [round(v, 1) for v in detection.box],
        "score": round(detection.score, 3),
        "verdict": report.verdict,
        "sharpness": round(report.sharpness, 1),
        "eye_distance": round(report.eye_distance, 1),
        "roll": round(report.roll, 1),
        "yaw": round(report.yaw, 1),
        "brightness": round(report.brightness, 1),
    }


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--annotate",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write annotated JPEGs here.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per face.")
@pass_app
def inspect(
    app: AppContext, images: tuple[Path, ...], annotate: Path | None, as_json: bool
) -> None:
    """Show every face found in IMAGES with its quality verdict and the reason."""
    pipeline = app.pipeline(with_embedder=False)
    photos = Photos(images, as_json)
    for path, image in photos:
        faces = pipeline.analyse(image, embed=False)
        if not faces:
            photos.no_face(path)
        for face in faces:
            record = face_record(str(path), face)
            if as_json:
                click.echo(json.dumps(record))
            else:
                click.echo(
                    f"{path}: box={record['box']} score={record['score']:.2f} "
                    f"verdict={record['verdict']} sharpness={record['sharpness']} "
                    f"eyes={record['eye_distance']}px roll={record['roll']} yaw={record['yaw']} "
                    f"brightness={record['brightness']}"
                )
        if annotate is not None:
            annotate.mkdir(parents=True, exist_ok=True)
            target = annotate / f"{path.stem}.jpg"
            cv2.imwrite(str(target), draw_faces(image, faces))
    photos.finish()


def draw_faces(image_rgb: np.ndarray, faces: list[FaceAnalysis]) -> np.ndarray:
    """A BGR copy of the frame with each face's box, keypoints and verdict drawn."""
    canvas = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    for face in faces:
        colour = (0, 200, 0) if face.accepted else (0, 0, 230)
        x0, y0, x1, y1 = (round(v) for v in face.detection.box)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, 2)
        for x, y in face.detection.keypoints:
            cv2.circle(canvas, (round(float(x)), round(float(y))), 2, (255, 200, 0), -1)
        label = f"{face.detection.score:.2f} {face.quality.verdict}"
        cv2.putText(canvas, label, (x0, max(12, y0 - 5)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1)
    return canvas
