"""Visits made from real photos through the real pipeline, for tests of storing and naming them."""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from pathlib import Path

import cv2
import numpy as np

from device.identity.enroll import encode_crop
from device.identity.visits import Visit, VisitCrop
from device.vision.imageio import read_image
from device.vision.pipeline import FacePipeline
from device.vision.quality import RejectReason

LIN = "data/video/lin-manuel-miranda.png"
ALEX = "data/video/alex-lacamoire.png"


def photo_crop(pipeline: FacePipeline, photo: Path, blur: float = 0.0) -> VisitCrop:
    """The photo's face as the door keeps it: aligned crop and the gate's measures."""
    faces = pipeline.analyse(read_image(photo), embed=False)
    assert faces, photo
    face = faces[0]
    crop = face.crop
    report = face.quality
    if blur:
        crop = cv2.GaussianBlur(crop, (0, 0), blur)
        grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
        sharpness = float(cv2.Laplacian(grey, cv2.CV_64F).var())
        report = dataclasses.replace(report, sharpness=sharpness, reasons=(RejectReason.BLURRY,))
    return VisitCrop(encode_crop(crop), report)


def photo_visit(
    pipeline: FacePipeline,
    photo: Path,
    visit_id: str,
    *,
    liveness: str | None = "live",
    copies: int = 1,
    blur: float = 0.0,
    first_seen: float = 1_800_000_000.0,
) -> Visit:
    """An unknown visitor's visit whose faces are the photo's (``copies`` times the same)."""
    crop = photo_crop(pipeline, photo, blur)
    return Visit(
        id=visit_id,
        door="door",
        track_id=1,
        first_seen=first_seen,
        last_seen=first_seen + 3.0,
        person=None,
        known=False,
        similarity=None,
        margin=None,
        liveness=liveness,
        reason=None,
        frames=3,
        quality=crop.quality,
        embedding_key="",
        crops=(crop,) * copies,
        context_jpeg=bytes(cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1]),
    )


# Columns that hold the time a row was written: two runs of the same change differ there.
_TIMES = {"created", "at"}


def dump(path: Path, *tables: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of these tables but their write times, in a stable order: the file's
    content as a test compares it."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        content = {}
        for table in tables:
            columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
            kept = ", ".join(c for c in columns if c not in _TIMES)
            content[table] = sorted(db.execute(f"SELECT {kept} FROM {table}").fetchall(), key=repr)
        return content


GALLERY_TABLES = ("people", "crops", "embeddings", "namings")
VISIT_TABLES = ("visits", "visit_crops", "visit_context")
