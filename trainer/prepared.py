"""The prepared folder: what ``trainer prepare`` writes and every later step reads.

A prepared folder holds:

- ``<identity>/<name>.png``: one aligned 112x112 crop per kept face (``<name>.png``
  at the top level when the source was a flat, unlabeled folder);
- ``prepare_report.json``: counts per rule, probable duplicates, merges;
- ``prepare_report.csv``: one row per source image, kept or the reason it was
  dropped; the kept rows are the folder's faces, in order;
- ``teacher_dlib.<i>of<n>.npy`` (``teacher_dlib_mirror.*`` for mirror-averaged
  descriptors), written by ``trainer teacher``: one row per face of shard i of n, with
  ``<cache>.txt`` beside it listing the faces' sources in row order. Rows not
  computed yet are NaN, rows of faces the teacher could not read are zero.

This module owns those names and layouts; it needs no TensorFlow.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from device.errors import PeepholeError
from trainer.constants import INPUT_SIZE

REPORT_JSON = "prepare_report.json"
REPORT_CSV = "prepare_report.csv"
CSV_COLUMNS = (
    "source", "identity", "status", "reason", "crop", "score", "sharpness",
    "centre_distance", "x0", "y0", "x1", "y1",
)  # fmt: skip
UNLABELED = ""  # the identity of a face from a flat source folder
TEACHER_CACHE_PREFIX = "teacher_dlib"


@dataclass
class SourceImage:
    """One source image's row of the report: where its crop went, or why it was dropped."""

    source: str
    identity: str
    crop: str = ""
    reason: str = ""
    score: float = math.nan
    sharpness: float = math.nan
    centre_distance: float = math.nan
    box: tuple[float, float, float, float] = (math.nan, math.nan, math.nan, math.nan)

    @property
    def kept(self) -> bool:
        return not self.reason


# -- the report ---------------------------------------------------------------


def write_report(folder: Path, summary: dict[str, object], samples: Sequence[SourceImage]) -> None:
    """The JSON summary and the CSV with one row per source image."""
    (folder / REPORT_JSON).write_text(json.dumps(summary, indent=2) + "\n")
    with open(folder / REPORT_CSV, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(CSV_COLUMNS)
        for s in samples:
            writer.writerow(
                [s.source, s.identity, "kept" if s.kept else "dropped", s.reason, s.crop,
                 _round(s.score), _round(s.sharpness), _round(s.centre_distance),
                 *(_round(v) for v in s.box)]
            )  # fmt: skip


def _round(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.4f}"


def read_kept(folder: Path) -> list[SourceImage]:
    """The kept faces of a prepared folder (source, identity, crop, box), in report order."""
    report = folder / REPORT_CSV
    if not report.is_file():
        raise PeepholeError(
            f"{folder} is not a prepared folder (no {REPORT_CSV}; run trainer prepare)"
        )
    kept = []
    with open(report, newline="", encoding="utf-8") as stream:
        for row in csv.DictReader(stream):
            if row["status"] == "kept":
                x0, y0, x1, y1 = (
                    float(row[k]) if row[k] else math.nan for k in ("x0", "y0", "x1", "y1")
                )
                kept.append(
                    SourceImage(
                        row["source"], row["identity"], crop=row["crop"], box=(x0, y0, x1, y1)
                    )
                )
    return kept


# -- the crops ----------------------------------------------------------------


def write_crop(folder: Path, sample: SourceImage, crop: np.ndarray) -> str:
    """Save an RGB crop as ``<identity>/<source stem>.png``; its path relative to ``folder``."""
    name = f"{Path(sample.source).stem}.png"
    relative = Path(sample.identity) / name if sample.identity else Path(name)
    target = folder / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(target), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)):
        raise PeepholeError(f"cannot write {target}")
    return str(relative)


def read_crop(folder: Path, sample: SourceImage) -> np.ndarray | None:
    """A kept face's aligned crop (RGB uint8), or None when it is missing or not 112x112."""
    bgr = cv2.imread(str(folder / sample.crop), cv2.IMREAD_COLOR)
    if bgr is None or bgr.shape != (INPUT_SIZE, INPUT_SIZE, 3):
        return None
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def sample_crops(folder: Path, count: int, seed: int) -> np.ndarray:
    """``count`` random aligned crops (RGB uint8) from a prepared folder, in a fixed order."""
    kept = read_kept(folder)
    if not kept:
        raise PeepholeError(f"{folder}: no crops")
    rows = np.random.default_rng(seed).permutation(len(kept))[:count]
    crops = [crop for row in rows if (crop := read_crop(folder, kept[row])) is not None]
    return np.stack(crops)


# -- the teacher's caches -----------------------------------------------------


def teacher_cache_prefix(mirror: bool) -> str:
    """Plain and mirror-averaged descriptors are cached apart, so they are never mixed."""
    return f"{TEACHER_CACHE_PREFIX}_mirror" if mirror else TEACHER_CACHE_PREFIX


def teacher_cache(folder: Path, shard: int, shards: int, mirror: bool = False) -> Path:
    """The ``.npy`` cache of one shard's teacher descriptors."""
    return folder / f"{teacher_cache_prefix(mirror)}.{shard}of{shards}.npy"


def cache_listing(cache: Path) -> Path:
    """The ``.txt`` beside a cache that lists its rows' sources, one a line."""
    return cache.with_suffix(".txt")


def usable_rows(embeddings: np.ndarray) -> np.ndarray:
    """Indices of rows the teacher has computed and could read."""
    finite = np.isfinite(embeddings).all(axis=1)
    nonzero = np.abs(np.nan_to_num(embeddings)).sum(axis=1) > 0
    return np.flatnonzero(finite & nonzero)


def load_teacher_targets(folder: Path, mirror: bool = False) -> dict[str, np.ndarray]:
    """Every computed teacher embedding cached in a prepared folder, by source path."""
    targets: dict[str, np.ndarray] = {}
    for cache in sorted(folder.glob(f"{teacher_cache_prefix(mirror)}.*.npy")):
        sources = cache_listing(cache).read_text().splitlines()
        embeddings = np.load(cache)
        for row in usable_rows(embeddings):
            targets[sources[row]] = embeddings[row]
    return targets
