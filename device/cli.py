"""The ``peephole`` command line: a thin click layer over the device library.

Every expected failure is a :class:`PeepholeError` and leaves as one line on
stderr with exit status 1; usage errors exit 2 (click's convention).
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import click
import cv2
import numpy as np

from device.config import Config, load_config
from device.embedder import FaceEmbedder
from device.errors import ModelError, PeepholeError
from device.imageio import expand_image_paths, read_image
from device.pipeline import FaceAnalysis, FacePipeline, default_model_path


@dataclass
class AppContext:
    """What every subcommand shares: the configuration and the global overrides."""

    config: Config
    model_override: Path | None = None
    manifest_override: Path | None = None
    _embedder: FaceEmbedder | None = field(default=None, repr=False)
    _pipeline: FacePipeline | None = field(default=None, repr=False)

    @property
    def model_path(self) -> Path:
        if self.model_override:
            return self.model_override
        if self.config.model.path:
            return Path(self.config.model.path)
        return default_model_path()

    @property
    def manifest_path(self) -> Path | None:
        if self.manifest_override:
            return self.manifest_override
        if self.config.model.manifest and not self.model_override:
            return Path(self.config.model.manifest)
        return None

    @property
    def gallery_path(self) -> Path:
        return self.config.gallery.resolved_path()

    def embedder(self) -> FaceEmbedder:
        if self._embedder is None:
            if not self.model_path.is_file() and self.model_path == default_model_path():
                raise ModelError(
                    f"the default model is not installed ({self.model_path}); pass --model FILE"
                )
            self._embedder = FaceEmbedder.from_files(
                self.model_path, self.manifest_path, num_threads=self.config.model.num_threads
            )
        return self._embedder

    def pipeline(self, with_embedder: bool = True) -> FacePipeline:
        if self._pipeline is None:
            self._pipeline = FacePipeline.from_config(self.config)
        if with_embedder and self._pipeline.embedder is None:
            self._pipeline.embedder = self.embedder()
        return self._pipeline


class PeepholeGroup(click.Group):
    """Turns expected errors into one line and a non-zero exit, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PeepholeError as error:
            fail(str(error))
        except sqlite3.DatabaseError as error:
            fail(f"database error: {error}")
        except OSError as error:
            fail(f"{error.filename or 'I/O'}: {error.strerror or error}")
        except KeyboardInterrupt:
            click.echo("peephole: interrupted", err=True)
            sys.exit(130)


def fail(message: str) -> None:
    click.echo(f"peephole: error: {message}", err=True)
    sys.exit(1)


P = ParamSpec("P")
R = TypeVar("R")


def pass_app(function: Callable[Concatenate[AppContext, P], R]) -> Callable[P, R]:
    """Pass the AppContext as the first argument (a typed click.make_pass_decorator)."""
    return click.make_pass_decorator(AppContext)(function)


@click.group(cls=PeepholeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config", "config_path", type=click.Path(path_type=Path), help="Configuration TOML file."
)
@click.option(
    "--db", "db_path", type=click.Path(path_type=Path), help="Gallery database (overrides config)."
)
@click.option(
    "--model", "model_path", type=click.Path(path_type=Path), help="Embedding model .tflite."
)
@click.option(
    "--manifest", "manifest_path", type=click.Path(path_type=Path), help="The model's manifest."
)
@click.pass_context
def main(
    ctx: click.Context,
    config_path: Path | None,
    db_path: Path | None,
    model_path: Path | None,
    manifest_path: Path | None,
) -> None:
    """peephole: face recognition for a door camera."""
    try:
        config = load_config(config_path)
    except PeepholeError as error:
        fail(str(error))
    if db_path:
        config.gallery.path = str(db_path)
    ctx.obj = AppContext(config, model_override=model_path, manifest_override=manifest_path)


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


@main.command()
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
    failures = 0
    for path in expand_image_paths(list(images)):
        try:
            image = read_image(path)
        except PeepholeError as error:
            click.echo(f"peephole: error: {error}", err=True)
            failures += 1
            continue
        faces = pipeline.analyse(image, embed=False)
        if not faces:
            click.echo(
                json.dumps({"image": str(path), "faces": 0}) if as_json else f"{path}: no face"
            )
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
    if failures:
        sys.exit(1)


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


from device.cli_gallery import register as _register_gallery  # noqa: E402

_register_gallery(main)

from device.cli_run import register as _register_run  # noqa: E402

_register_run(main)
