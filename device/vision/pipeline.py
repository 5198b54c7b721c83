"""One frame in, every face out: detect, align, gate, and embed the faces that pass."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from device.config import Config, QualityConfig
from device.vision.align import align_face
from device.vision.detector import Detection, DetectorVariant, FaceDetector, FaceDetectorOptions
from device.vision.embedder import FaceEmbedder
from device.vision.landmarks import MIN_PRESENCE, FaceMesh, detection_from_mesh, five_from_mesh
from device.vision.quality import QualityReport, assess


@dataclass(frozen=True)
class FaceAnalysis:
    """One detected face: where it is, how good it is, and (if good) its embedding.

    ``mesh`` is the face mesh's (468, 2) points in frame pixels when the mesh
    ran and saw a face: the tracker gathers liveness evidence from it.
    ``embed_with`` computes the embedding of an accepted face's crop; ``None``
    where the face is not to be embedded.
    """

    detection: Detection
    quality: QualityReport
    crop: np.ndarray
    mesh: np.ndarray | None = None
    embed_with: Callable[[np.ndarray], np.ndarray] | None = field(
        default=None, repr=False, compare=False
    )

    @property
    def accepted(self) -> bool:
        return self.quality.accepted

    @cached_property
    def embedding(self) -> np.ndarray | None:
        """The accepted face's embedding, computed when first asked for.

        The camera loop asks only where it is used: a visitor decided already
        needs one only for a face better than those the visit keeps, so the
        embedder does not run on the other frames of a visit.
        """
        return None if self.embed_with is None else self.embed_with(self.crop)


@dataclass
class StageTimer:
    """Accumulates wall time per stage, in seconds, for benchmarks and STATUS lines."""

    samples: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def add(self, stage: str, seconds: float) -> None:
        self.samples[stage].append(seconds)


@dataclass(eq=False)
class FacePipeline:
    """The device's per-frame vision: the same code serves enrollment, the loop and training."""

    detector: FaceDetector
    quality: QualityConfig
    embedder: FaceEmbedder | None = None
    timer: StageTimer | None = None
    mesh: FaceMesh | None = None

    @classmethod
    def from_config(cls, config: Config, embedder: FaceEmbedder | None = None) -> FacePipeline:
        options = FaceDetectorOptions(
            variant=DetectorVariant(config.detector.variant),
            min_score=config.detector.min_score,
            num_threads=config.detector.num_threads,
        )
        mesh = None
        if config.detector.landmarks == "mesh":
            mesh = FaceMesh.create(num_threads=config.detector.num_threads)
        return cls(FaceDetector.create(options), config.quality, embedder, mesh=mesh)

    def analyse(
        self, image_rgb: np.ndarray, embed: bool = True, detect_rgb: np.ndarray | None = None
    ) -> list[FaceAnalysis]:
        """Every face in the frame, largest first; only accepted faces are embedded.

        ``detect_rgb`` is a smaller copy of the frame (a camera's low-resolution
        stream): detection runs on it, and its boxes are scaled to ``image_rgb``.
        """
        started = time.perf_counter()
        if detect_rgb is None:
            detections = self.detector.detect(image_rgb)
        else:
            scale_y = image_rgb.shape[0] / detect_rgb.shape[0]
            scale_x = image_rgb.shape[1] / detect_rgb.shape[1]
            detections = [
                scale_detection(d, scale_x, scale_y) for d in self.detector.detect(detect_rgb)
            ]
        detections.sort(key=lambda d: d.width * d.height, reverse=True)
        self._record("detect", started)
        results = []
        for detection in detections:
            results.append(self.analyse_detection(image_rgb, detection, embed=embed))
        return results

    def analyse_detection(
        self, image_rgb: np.ndarray, detection: Detection, embed: bool = True
    ) -> FaceAnalysis:
        started = time.perf_counter()
        mesh = self.mesh.mesh_points(image_rgb, detection) if self.mesh else None
        if self.mesh:
            self._record("landmarks", started)
        return self._finish(image_rgb, detection, mesh, embed)

    def follow(
        self, image_rgb: np.ndarray, previous: FaceAnalysis, min_presence: float, embed: bool = True
    ) -> FaceAnalysis | None:
        """The face of the last frame found again from its mesh, without the detector;
        None where it cannot be (no mesh, or the mesh's face presence below ``min_presence``).

        The mesh runs on the region the last mesh gives; the face's detection is then the
        one this frame's mesh gives, with the detector's last score.
        """
        if self.mesh is None or previous.mesh is None:
            return None
        started = time.perf_counter()
        region = detection_from_mesh(previous.mesh, previous.detection.score)
        mesh, presence = self.mesh.locate(image_rgb, region)
        self._record("landmarks", started)
        if presence < max(min_presence, MIN_PRESENCE):
            return None
        detection = detection_from_mesh(mesh, previous.detection.score)
        return self._finish(image_rgb, detection, mesh, embed)

    def _finish(
        self, image_rgb: np.ndarray, detection: Detection, mesh: np.ndarray | None, embed: bool
    ) -> FaceAnalysis:
        """Align, gate and (if accepted) embed a located face."""
        started = time.perf_counter()
        points = None if mesh is None else five_from_mesh(mesh)
        crop = align_face(image_rgb, detection.keypoints[:4] if points is None else points)
        self._record("align", started)
        started = time.perf_counter()
        report = assess(detection, crop, self.quality)
        self._record("gate", started)
        embed_with = self._embed if embed and report.accepted and self.embedder else None
        return FaceAnalysis(
            detection=detection, quality=report, crop=crop, mesh=mesh, embed_with=embed_with
        )

    def _embed(self, crop: np.ndarray) -> np.ndarray:
        assert self.embedder is not None  # only given to faces when there is one
        started = time.perf_counter()
        embedding = self.embedder.embed(crop)
        self._record("embed", started)
        return embedding

    def _record(self, stage: str, started: float) -> None:
        if self.timer is not None:
            self.timer.add(stage, time.perf_counter() - started)


def scale_detection(detection: Detection, scale_x: float, scale_y: float) -> Detection:
    x0, y0, x1, y1 = detection.box
    factors = np.array([scale_x, scale_y], dtype=np.float32)
    return replace(
        detection,
        box=(x0 * scale_x, y0 * scale_y, x1 * scale_x, y1 * scale_y),
        keypoints=detection.keypoints * factors,
    )
