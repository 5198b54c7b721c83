"""The photos a command was given, one readable image at a time (``identify``, ``inspect``)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import numpy as np

from device.errors import PeepholeError
from device.vision.imageio import expand_image_paths, read_image

logger = logging.getLogger(__name__)


class Photos:
    """Each image of ``paths`` (folders expanded); one that cannot be read is one error
    line, and the command exits 1 at the end (the others are still answered)."""

    def __init__(self, paths: tuple[Path, ...], as_json: bool) -> None:
        self.paths = list(paths)
        self.as_json = as_json
        self.failures = 0

    def __iter__(self) -> Iterator[tuple[Path, np.ndarray]]:
        for path in expand_image_paths(self.paths):
            try:
                image = read_image(path)
            except PeepholeError as error:
                logger.error(str(error))
                self.failures += 1
                continue
            yield path, image

    def no_face(self, path: Path) -> None:
        click.echo(
            json.dumps({"image": str(path), "faces": 0}) if self.as_json else f"{path}: no face"
        )

    def finish(self) -> None:
        if self.failures:
            sys.exit(1)
