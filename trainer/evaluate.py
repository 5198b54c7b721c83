"""A model judged through the device pipeline: LFW 10-fold verification, open-set
identification on celebrity112, and LFW's identities as strangers (``trainer evaluate``).

This module must not import TensorFlow: a device-side model is evaluated with
the device's own code. (A Keras checkpoint is embedded by ``trainer.model``, imported
only for one.)
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from device.config import Config
from device.errors import PeepholeError
from device.vision.embedder import FaceEmbedder
from device.vision.pipeline import FacePipeline
from trainer.lfw import AlignedSet, EmbedFn, LfwPair, align_images, pair_similarities, read_pairs
from trainer.metrics import VerificationResult, kfold_verification, roc_curve
from trainer.strangers import StrangerReport, calibrate_strangers, celebrity_openset

# Open-set identification on celebrity112, as the manifests' identification threshold is
# calibrated: at most 1% of strangers named, with the device's default match margin.


@dataclass(frozen=True)
class LfwReport:
    verification: VerificationResult
    pairs: int
    images: int
    detector_misses: int
    gate_rejects: int

    def summary_line(self) -> str:
        v = self.verification
        return (
            f"LFW accuracy: {100 * v.accuracy_mean:.2f}% +- {100 * v.accuracy_std:.2f} "
            f"(threshold {v.threshold:.3f})"
        )


def select_folds(pairs: list[LfwPair], folds: int | None) -> list[LfwPair]:
    return pairs if folds is None else [p for p in pairs if p.fold < folds]


@dataclass(frozen=True)
class LfwOptions:
    """Which LFW to measure on: its images, pairs.txt, the first ``folds`` folds (all when
    None), and the ``.npz`` that keeps the aligned crops between runs."""

    images: Path
    pairs_file: Path
    folds: int | None = None
    cache: Path | None = None

    def load(self, threads: int = 2, landmarks: str = "mesh") -> tuple[list[LfwPair], AlignedSet]:
        """The pairs, and every image aligned through the device pipeline (or the cache)."""
        pairs = select_folds(read_pairs(self.pairs_file, self.images), self.folds)
        return pairs, aligned_lfw(pairs, threads, self.cache, landmarks)


def align_lfw(
    pairs: list[LfwPair], pipeline: FacePipeline, show_progress: bool = False
) -> AlignedSet:
    paths = sorted({p.first for p in pairs} | {p.second for p in pairs})
    bar = _Progress(len(paths), "align") if show_progress else None
    aligned = align_images(paths, pipeline, progress=bar.update if bar else None)
    if bar:
        bar.close()
    return aligned


def evaluate_lfw(
    pairs: list[LfwPair], aligned: AlignedSet, embed: EmbedFn
) -> tuple[LfwReport, np.ndarray]:
    """Embed every aligned crop with ``embed`` and score the pairs; returns the report and similarities."""
    paths = sorted(aligned.crops)
    embeddings = embed(np.stack([aligned.crops[p] for p in paths]))
    by_path = dict(zip(paths, embeddings, strict=True))
    similarities = pair_similarities(pairs, by_path)
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    report = LfwReport(
        verification=kfold_verification(similarities, same, folds),
        pairs=len(pairs),
        images=len(paths),
        detector_misses=len(aligned.fallbacks),
        gate_rejects=aligned.gate_rejects,
    )
    return report, similarities


def write_roc_png(path: Path, similarities: np.ndarray, same: np.ndarray, title: str) -> None:
    """A ROC plot (log FAR axis) drawn with OpenCV, so evaluation needs no plotting library."""
    far, tar, _ = roc_curve(similarities, same)
    width, height, margin = 640, 480, 60
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    log_min = -4.0
    plot_w, plot_h = width - 2 * margin, height - 2 * margin

    def to_px(f: float, t: float) -> tuple[int, int]:
        x = (np.log10(max(f, 10**log_min)) - log_min) / -log_min
        return int(margin + x * plot_w), int(height - margin - t * plot_h)

    cv2.rectangle(canvas, (margin, margin), (width - margin, height - margin), (0, 0, 0), 1)
    for exponent in range(int(log_min), 1):
        x, _ = to_px(10.0**exponent, 0)
        cv2.line(canvas, (x, margin), (x, height - margin), (220, 220, 220), 1)
        cv2.putText(canvas, f"1e{exponent}", (x - 15, height - margin + 20), 0, 0.4, (0, 0, 0), 1)
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        _, y = to_px(1.0, tick)
        cv2.putText(canvas, f"{tick:.2f}", (10, y + 4), 0, 0.4, (0, 0, 0), 1)
    points = np.array(
        [to_px(float(f), float(t)) for f, t in zip(far, tar, strict=True)], dtype=np.int32
    )
    cv2.polylines(canvas, [points], False, (200, 60, 0), 2)
    cv2.putText(canvas, title, (margin, margin - 20), 0, 0.5, (0, 0, 0), 1)
    cv2.putText(
        canvas, "false accept rate (log)", (width // 2 - 80, height - 15), 0, 0.45, (0, 0, 0), 1
    )
    cv2.putText(canvas, "TAR", (10, margin - 5), 0, 0.45, (0, 0, 0), 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), canvas)


def aligned_lfw(
    pairs: list[LfwPair], threads: int, cache: Path | None, landmarks: str = "mesh"
) -> AlignedSet:
    """LFW aligned through the device pipeline, kept in ``cache`` (.npz) for the next run.

    The cache is used only when it holds exactly the images of ``pairs``, aligned the
    same way (so its detector-miss and gate counts are theirs); otherwise it is rewritten.
    """
    needed = {p.first for p in pairs} | {p.second for p in pairs}
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as data:
            paths = [Path(p) for p in data["paths"]]
            crops = dict(zip(paths, data["crops"], strict=True))
            fallbacks = [Path(p) for p in data["fallbacks"]]
            gate_rejects = int(data["gate_rejects"])
            cached_landmarks = str(data["landmarks"]) if "landmarks" in data.files else ""
        if cached_landmarks == landmarks and set(crops) == needed:
            return AlignedSet(crops, fallbacks, gate_rejects)
    aligned = align_lfw(
        pairs, default_pipeline(threads, landmarks), show_progress=sys.stderr.isatty()
    )
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        paths = sorted(aligned.crops)
        np.savez(
            cache,
            paths=np.array([str(p) for p in paths]),
            crops=np.stack([aligned.crops[p] for p in paths]),
            fallbacks=np.array([str(p) for p in aligned.fallbacks]),
            gate_rejects=aligned.gate_rejects,
            landmarks=landmarks,
        )
    return aligned


def openset_summary(identification: dict[str, Any]) -> str:
    """One line for an open-set report from ``celebrity_openset``."""
    if identification.get("threshold") is None:
        return "celebrity112 open-set: no threshold keeps strangers named under the target"
    return (
        f"celebrity112 open-set at threshold {identification['threshold']:.3f} "
        f"(<= {100 * identification['far_target']:g}% strangers named): "
        f"enrolled named correctly {100 * identification['enrolled_named_correctly']:.1f}%, "
        f"wrongly {100 * identification['enrolled_named_wrongly']:.1f}%, "
        f"strangers named {100 * identification['strangers_named']:.1f}%"
    )


def default_pipeline(num_threads: int = 2, landmarks: str = "mesh") -> FacePipeline:
    config = Config()
    config.detector.num_threads = num_threads
    config.detector.landmarks = landmarks
    return FacePipeline.from_config(config)


class _Progress:
    """A minimal stderr progress line (tqdm is a trainer extra; evaluation needs none)."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label, self._last = total, label, -1

    def update(self, count: int) -> None:
        percent = 100 * count // max(1, self.total)
        if percent != self._last:
            self._last = percent
            print(
                f"\r{self.label}: {count}/{self.total} ({percent}%)",
                end="",
                flush=True,
                file=sys.stderr,
            )

    def close(self) -> None:
        print(file=sys.stderr)


def grey(crop: np.ndarray) -> np.ndarray:
    """An RGB crop as a three-channel grey image."""
    luma = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    return np.repeat(luma[:, :, np.newaxis], 3, axis=2)


def model_embed_fn(
    model_path: Path, manifest_path: Path | None, activation: str, threads: int
) -> EmbedFn:
    """Embedding function for a device model (.tflite) or a Keras checkpoint (needs TensorFlow)."""
    if model_path.suffix == ".tflite":
        return FaceEmbedder.from_files(model_path, manifest_path, num_threads=threads).embed_many
    if model_path.suffix == ".keras" or model_path.name.endswith(".weights.h5"):
        from trainer.model import keras_embed_fn, load_keras_model

        return keras_embed_fn(load_keras_model(model_path, activation))
    raise PeepholeError(f"{model_path}: expected a .tflite model, a .keras model or a .weights.h5")


@dataclass
class Evaluation:
    """What ``evaluate_model`` measured; ``as_dict`` is the command's ``--json`` report."""

    model: Path
    pairs: list[LfwPair] = field(default_factory=list)
    lfw: LfwReport | None = None
    similarities: np.ndarray | None = None
    identification: dict[str, Any] | None = None
    strangers: StrangerReport | None = None

    def as_dict(self) -> dict[str, Any]:
        full: dict[str, Any] = {"model": str(self.model)}
        if self.lfw is not None:
            full["lfw"] = asdict(self.lfw)
        if self.identification is not None:
            full["identification"] = self.identification
        if self.strangers is not None:
            full["strangers"] = self.strangers.as_dict()
        return full


def evaluate_model(
    embed: EmbedFn,
    model_path: Path,
    lfw: LfwOptions | None,
    celebrity: Path | None = None,
    threads: int = 2,
    greyscale: bool = False,
    landmarks: str = "mesh",
) -> Evaluation:
    """LFW verification, open-set identification on ``celebrity`` and, with both, LFW's
    identities as strangers to celebrity112's household."""
    evaluation = Evaluation(model_path)
    aligned: AlignedSet | None = None
    if lfw is not None:
        evaluation.pairs, aligned = lfw.load(threads, landmarks)
        if greyscale:
            aligned = replace(aligned, crops={p: grey(c) for p, c in aligned.crops.items()})
        evaluation.lfw, evaluation.similarities = evaluate_lfw(evaluation.pairs, aligned, embed)
    if celebrity is not None:
        evaluation.identification = celebrity_openset(embed, celebrity)
        if aligned is not None:
            evaluation.strangers = calibrate_strangers(embed, celebrity, aligned.crops)
    return evaluation
