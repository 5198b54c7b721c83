"""``trainer prepare SRC DST``: raw face images in, clean aligned 112x112 crops out.

Crops come from the device's own detector and alignment (``FacePipeline``), so the
trainer learns on exactly the pixels the device will embed. Each cleaning rule is
an option and every dropped image is written to the report with its reason:

- ``unreadable``: the file is not an image (skipped and counted);
- ``no_face``: the detector found nothing;
- ``low_score``: detector confidence below ``min_score``;
- ``blurry``: Laplacian variance of the aligned grey crop below ``min_sharpness``
  (the device's quality measure);
- ``outlier``: cosine distance ``1 - cos(e, c)`` between a sample's normalised
  embedding and its identity's centre ``c`` (the normalised mean of the normalised
  embeddings) above ``max_centre_distance``; a mislabelled face lands far out;
- ``too_few_images``: identities left with fewer than ``min_images`` crops;
- probable duplicates: identities whose centres have cosine above
  ``duplicate_similarity`` are reported, and merged with ``merge_duplicates``.

SRC is either a folder per identity or a flat folder of unlabeled images (the
identity rules then do not apply). Images that are already aligned 112x112 crops
are not detected again, only checked for blur. What DST holds is described, written
and read in ``trainer.prepared``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from device.config import Config, QualityConfig, load_config
from device.errors import ImageError, PeepholeError
from device.vision.align import CROP_SIZE
from device.vision.embedder import FaceEmbedder, default_model_path
from device.vision.imageio import IMAGE_SUFFIXES, read_image
from device.vision.pipeline import FacePipeline
from device.vision.quality import laplacian_variance
from trainer.prepared import (
    UNLABELED,
    SourceImage,
    write_crop,
    write_report,
)


@dataclass(frozen=True)
class PrepareOptions:
    min_score: float = 0.75
    min_sharpness: float = QualityConfig().min_sharpness
    min_images: int = 10
    # Grounded on celebrity112 with the reference MobileFaceNet (1,948 crops, 18 people):
    # 99.9% of faces of *other* people sit farther than 0.65 from a centre, 96% of a
    # person's own faces nearer; the closest two different people's centres: cosine 0.37.
    max_centre_distance: float = 0.65
    duplicate_similarity: float = 0.7
    merge_duplicates: bool = False
    progress: bool = True


@dataclass
class PrepareReport:
    source: str
    destination: str
    options: PrepareOptions
    labelled: bool
    embedder: str
    samples: list[SourceImage] = field(default_factory=list)
    duplicates: list[tuple[str, str, float]] = field(default_factory=list)
    merged: dict[str, str] = field(default_factory=dict)

    @property
    def kept(self) -> list[SourceImage]:
        return [s for s in self.samples if s.kept]

    def dropped_by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for sample in self.samples:
            if not sample.kept:
                counts[sample.reason] += 1
        return dict(sorted(counts.items()))

    def identities(self) -> list[str]:
        return sorted({s.identity for s in self.kept})

    def summary(self) -> dict[str, object]:
        return {
            "source": self.source,
            "destination": self.destination,
            "labelled": self.labelled,
            "embedder": self.embedder,
            "options": asdict(self.options),
            "images": len(self.samples),
            "kept": len(self.kept),
            "identities_kept": len(self.identities()) if self.labelled else None,
            "dropped": self.dropped_by_reason(),
            "probable_duplicates": [
                {"first": a, "second": b, "centre_cosine": round(c, 4)}
                for a, b, c in self.duplicates
            ],
            "merged": self.merged,
        }

    def write(self, folder: Path) -> None:
        write_report(folder, self.summary(), self.samples)


def list_sources(src: Path) -> tuple[bool, list[tuple[str, Path]]]:
    """(labelled, [(identity, image path)]): subfolders are identities, loose files unlabeled."""
    if not src.is_dir():
        raise PeepholeError(f"source folder not found: {src}")
    folders = sorted(p for p in src.iterdir() if p.is_dir())
    if folders:
        items = [
            (folder.name, path)
            for folder in folders
            for path in sorted(folder.rglob("*"))
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
        ]
        return True, items
    items = [
        (UNLABELED, p)
        for p in sorted(src.iterdir())
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    ]
    return False, items


def prepare(
    src: Path,
    dst: Path,
    options: PrepareOptions,
    pipeline: FacePipeline,
    embedder: FaceEmbedder | None = None,
) -> PrepareReport:
    labelled, items = list_sources(src)
    if not items:
        raise PeepholeError(f"no images in {src}")
    dst.mkdir(parents=True, exist_ok=True)
    report = PrepareReport(
        str(src), str(dst), options, labelled, embedder.manifest.name if embedder else ""
    )
    crops: dict[int, np.ndarray] = {}
    for identity, path in tqdm(items, desc="align", unit="img", disable=not options.progress):
        sample = SourceImage(str(path), identity)
        report.samples.append(sample)
        crop = _align_one(path, sample, pipeline, options)
        if crop is not None:
            crops[len(report.samples) - 1] = crop
    if labelled:
        if embedder is not None:
            _drop_outliers(report, crops, embedder, options)
        _drop_small_identities(report, options)
    for index, crop in crops.items():
        sample = report.samples[index]
        if sample.kept:
            sample.crop = write_crop(dst, sample, crop)
    report.write(dst)
    return report


def _align_one(
    path: Path, sample: SourceImage, pipeline: FacePipeline, options: PrepareOptions
) -> np.ndarray | None:
    try:
        image = read_image(path)
    except ImageError:
        sample.reason = "unreadable"
        return None
    if image.shape[:2] == (CROP_SIZE, CROP_SIZE):
        crop = image
    else:
        faces = pipeline.analyse(image, embed=False)
        if not faces:
            sample.reason = "no_face"
            return None
        face = faces[0]
        sample.score = float(face.detection.score)
        sample.box = tuple(float(v) for v in face.detection.box)  # type: ignore[assignment]
        crop = face.crop
        if sample.score < options.min_score:
            sample.reason = "low_score"
            return None
    sample.sharpness = laplacian_variance(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY))
    if sample.sharpness < options.min_sharpness:
        sample.reason = "blurry"
        return None
    return crop


def _centre(embeddings: np.ndarray) -> np.ndarray:
    mean = embeddings.mean(axis=0)
    return np.asarray(mean / max(float(np.linalg.norm(mean)), 1e-12))


def _drop_outliers(
    report: PrepareReport,
    crops: dict[int, np.ndarray],
    embedder: FaceEmbedder,
    options: PrepareOptions,
) -> None:
    by_identity: dict[str, list[int]] = defaultdict(list)
    for index in crops:
        by_identity[report.samples[index].identity].append(index)
    centres: dict[str, np.ndarray] = {}
    for identity, indices in tqdm(
        sorted(by_identity.items()), desc="outliers", unit="id", disable=not options.progress
    ):
        embeddings = embedder.embed_many(np.stack([crops[i] for i in indices]))
        # Two passes: a centre pulled by outliers is recomputed from the inliers.
        keep = np.ones(len(indices), dtype=bool)
        for _ in range(2):
            centre = _centre(embeddings[keep])
            distances = 1.0 - embeddings @ centre
            keep = distances <= options.max_centre_distance
            if not keep.any():
                keep = distances <= np.median(distances)
        centres[identity] = _centre(embeddings[keep])
        for index, distance, inlier in zip(indices, distances, keep, strict=True):
            report.samples[index].centre_distance = float(distance)
            if not inlier:
                report.samples[index].reason = "outlier"
    _find_duplicates(report, centres, options)


def _find_duplicates(
    report: PrepareReport, centres: dict[str, np.ndarray], options: PrepareOptions
) -> None:
    names = sorted(centres)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            similarity = float(centres[first] @ centres[second])
            if similarity > options.duplicate_similarity:
                report.duplicates.append((first, second, similarity))
    if options.merge_duplicates:
        for first, second, _ in report.duplicates:
            target = report.merged.get(first, first)
            report.merged[second] = target
        for sample in report.samples:
            sample.identity = report.merged.get(sample.identity, sample.identity)


def _drop_small_identities(report: PrepareReport, options: PrepareOptions) -> None:
    counts: dict[str, int] = defaultdict(int)
    for sample in report.kept:
        counts[sample.identity] += 1
    for sample in report.samples:
        if sample.kept and counts[sample.identity] < options.min_images:
            sample.reason = "too_few_images"


def default_embedder(path: Path | None, manifest: Path | None, threads: int) -> FaceEmbedder | None:
    """The embedder for the outlier and duplicate rules: the given one, else the shipped model."""
    if path is not None:
        return FaceEmbedder.from_files(path, manifest, num_threads=threads)
    if default_model_path().is_file():
        return FaceEmbedder.from_files(default_model_path(), num_threads=threads)
    return None


def detection_pipeline(config_path: Path | None, threads: int, min_score: float) -> FacePipeline:
    """The device's pipeline under a config's ``[detector]`` (default: the device's).

    ``prepare`` applies its own ``min_score``, so the detector must not pre-filter above it.
    """
    config = load_config(config_path) if config_path else Config()
    config.detector.num_threads = threads
    config.detector.min_score = min(config.detector.min_score, min_score)
    return FacePipeline.from_config(config)
