"""The LFW pairs protocol, run through the device's own detection and alignment."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.errors import PeepholeError
from device.vision.align import align_face
from device.vision.imageio import read_image
from device.vision.pipeline import FacePipeline

EmbedFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class LfwPair:
    first: Path
    second: Path
    same: bool
    fold: int


def read_pairs(pairs_file: str | Path, images_dir: str | Path) -> list[LfwPair]:
    """Parse pairs.txt: a "folds per_fold" header, then per fold the same, then the different pairs."""
    images_dir = Path(images_dir)
    lines = Path(pairs_file).read_text(encoding="utf-8").split("\n")
    header = lines[0].split()
    if len(header) != 2:
        raise PeepholeError(f"{pairs_file}: first line must be '<folds> <pairs per half fold>'")
    folds, per_half = int(header[0]), int(header[1])

    def image(name: str, number: str) -> Path:
        return images_dir / name / f"{name}_{int(number):04d}.jpg"

    pairs = []
    for index, line in enumerate(line for line in lines[1:] if line.strip()):
        fields = line.split()
        fold = index // (2 * per_half)
        if len(fields) == 3:
            pairs.append(
                LfwPair(image(fields[0], fields[1]), image(fields[0], fields[2]), True, fold)
            )
        elif len(fields) == 4:
            pairs.append(
                LfwPair(image(fields[0], fields[1]), image(fields[2], fields[3]), False, fold)
            )
        else:
            raise PeepholeError(f"{pairs_file}: line {index + 2} is not a pair")
    if len(pairs) != folds * 2 * per_half:
        raise PeepholeError(
            f"{pairs_file}: expected {folds * 2 * per_half} pairs, found {len(pairs)}"
        )
    return pairs


@dataclass
class AlignedSet:
    """One aligned crop per image, and how each was found."""

    crops: dict[Path, np.ndarray]
    fallbacks: list[Path]
    gate_rejects: int


def align_images(
    paths: Iterable[Path],
    pipeline: FacePipeline,
    progress: Callable[[int], None] | None = None,
) -> AlignedSet:
    """Detect and align the central face of each image.

    LFW centres the named person, so the detection nearest the centre is the
    one. An image where the detector finds nothing is aligned with the median
    keypoints of all other images (the protocol needs every pair scored) and
    counted, so the figure stays honest. The gate is not applied: verification
    measures the model; the gate's rejections are counted alongside.
    """
    crops: dict[Path, np.ndarray] = {}
    missing: list[tuple[Path, np.ndarray]] = []
    found_keypoints = []
    gate_rejects = 0
    for count, path in enumerate(paths, 1):
        image = read_image(path)
        faces = pipeline.analyse(image, embed=False)
        if progress:
            progress(count)
        if not faces:
            missing.append((path, image))
            continue
        centre = np.array([image.shape[1], image.shape[0]]) / 2.0
        face = min(
            faces,
            key=lambda f: float(np.linalg.norm(f.detection.keypoints[:4].mean(axis=0) - centre)),
        )
        gate_rejects += 0 if face.accepted else 1
        found_keypoints.append(face.detection.keypoints[:4])
        crops[path] = face.crop
    if missing:
        typical = np.median(np.stack(found_keypoints), axis=0)
        for path, image in missing:
            crops[path] = align_face(image, typical)
    return AlignedSet(crops, [path for path, _ in missing], gate_rejects)


def pair_similarities(pairs: list[LfwPair], embeddings: dict[Path, np.ndarray]) -> np.ndarray:
    return np.array([float(embeddings[p.first] @ embeddings[p.second]) for p in pairs])
