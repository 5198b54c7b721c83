"""Enrollment: turn frames or photos of one person into varied, good gallery samples.

Each frame must hold exactly one face (or, with ``largest_face``, its largest
one) that passes the quality gate; a face almost identical to a sample already
taken adds nothing and is skipped. Nothing is written here: the caller stores
the result in one transaction, or nothing when there are too few samples.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from device.config import CameraConfig, EnrollConfig
from device.errors import GalleryError, ImageError, PeepholeError, SourceError
from device.identity.frame_outcome import FrameOutcome
from device.identity.gallery import Gallery, Sample
from device.vision.embedder import FaceEmbedder
from device.vision.imageio import IMAGE_SUFFIXES, read_image
from device.vision.pipeline import FacePipeline
from device.vision.sources import open_source


@dataclass
class Enrollment:
    """Collects samples of one person from a stream of frames."""

    pipeline: FacePipeline
    # How many samples to take and what counts as a near-duplicate ([enroll]).
    options: EnrollConfig
    existing: np.ndarray | None = None
    # With several faces in a frame, use the largest instead of skipping the frame.
    largest_face: bool = False
    # Keep each sample's aligned crop (needed for ``gallery reembed`` and the site).
    store_crops: bool = True
    samples: list[Sample] = field(default_factory=list)
    rejections: Counter[str] = field(default_factory=Counter)
    frames: int = 0

    @property
    def done(self) -> bool:
        return len(self.samples) >= self.options.samples

    def offer(self, source: str, image_rgb: np.ndarray) -> FrameOutcome:
        """Consider one frame; returns whether it gave a sample and why not."""
        self.frames += 1
        faces = self.pipeline.analyse(image_rgb, embed=False)
        if not faces:
            return self.reject(source, "no face")
        if len(faces) > 1 and not self.largest_face:
            return self.reject(source, "several faces (use --largest-face)")
        face = faces[0]
        if not face.quality.accepted:
            return self.reject(source, face.quality.verdict)
        embedder = self.pipeline.embedder
        if embedder is None:
            raise PeepholeError("enrollment needs an embedding model")
        embedding = embedder.embed(face.crop)
        if self._is_near_duplicate(embedding):
            return self.reject(source, "near-duplicate")
        png = encode_crop(face.crop) if self.store_crops else None
        self.samples.append(Sample(embedding, face.quality.quality, source, png))
        return FrameOutcome(source, None)

    def reject(self, source: str, reason: str) -> FrameOutcome:
        self.rejections[reason] += 1
        return FrameOutcome(source, reason)

    def _is_near_duplicate(self, embedding: np.ndarray) -> bool:
        taken = [s.embedding for s in self.samples]
        if self.existing is not None and len(self.existing):
            taken.extend(self.existing)
        if not taken:
            return False
        return float(np.max(np.stack(taken) @ embedding)) >= self.options.duplicate_similarity

    def result(self, min_samples: int) -> list[Sample]:
        """The samples, or a one-line GalleryError with every reason when there are too few."""
        if len(self.samples) >= min_samples:
            return self.samples
        reasons = ", ".join(f"{count} {reason}" for reason, count in self.rejections.most_common())
        raise GalleryError(
            f"only {len(self.samples)} good sample(s) from {self.frames} frame(s), "
            f"{min_samples} needed; nothing was stored"
            + (f" (rejected: {reasons})" if reasons else "")
        )


def encode_crop(crop_rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ImageError("could not encode an aligned crop as PNG")
    return bytes(data.tobytes())


def decode_crop(png: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.shape[:2] != (112, 112):
        raise ImageError("a stored crop is not a readable 112x112 image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def embed_missing_crops(gallery: Gallery, embedder: FaceEmbedder) -> int:
    """Embed every stored crop the model has no embedding of yet; returns how many.

    After a model change, and after crops arrive from another door of the site.
    """
    missing = gallery.crops_missing(embedder.embedding_key)
    rows = [
        (crop_id, person_id, Sample(embedder.embed(decode_crop(png)), quality, source))
        for crop_id, person_id, _name, png, quality, source in missing
    ]
    if rows:
        gallery.add_crop_embeddings(rows, embedder.embedding_key)
    return len(rows)


def image_paths(paths: list[Path]) -> list[Path]:
    """Files as given and the images inside folders; a missing path is an error up front."""
    result: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ImageError(f"{path}: folder holds no images")
            result.extend(found)
        elif path.exists():
            result.append(path)
        else:
            raise ImageError(f"{path}: no such file or folder")
    return result


def enroll_images(enrollment: Enrollment, paths: list[Path]) -> Iterator[FrameOutcome]:
    """Offer every image; unreadable ones are rejected with the reason, not fatal."""
    for path in paths:
        if enrollment.done:
            return
        try:
            image = read_image(path)
        except ImageError as error:
            reason = str(error).removeprefix(f"{path}: ")
            yield enrollment.reject(str(path), f"unreadable ({reason})")
            continue
        yield enrollment.offer(str(path), image)


def video_frames(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    """(label, RGB frame) of every frame of a video file."""
    if not path.is_file():
        raise SourceError(f"{path}: no such video file")
    yield from source_frames(str(path), CameraConfig(), timeout_s=None)


def source_frames(
    spec: str, options: CameraConfig, timeout_s: float | None
) -> Iterator[tuple[str, np.ndarray]]:
    """(label, RGB frame) from a frame source until it ends or ``timeout_s`` have passed."""
    source = open_source(spec, options)
    started = time.monotonic()
    try:
        while timeout_s is None or time.monotonic() - started < timeout_s:
            frame = source.read()
            if frame is None:
                return
            yield f"{source.description}#{frame.index}", frame.rgb
    finally:
        source.close()


def enroll_frames(
    enrollment: Enrollment, frames: Iterator[tuple[str, np.ndarray]]
) -> Iterator[FrameOutcome]:
    for label, frame in frames:
        yield enrollment.offer(label, frame)
        if enrollment.done:
            return
