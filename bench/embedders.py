"""Embedding time per face of several models, side by side in one run, one thread.

The models take turns on the same aligned crops, round after round, so a busy
machine slows them alike and the ratios hold. Each model runs as the device runs
it (its manifest's mirror averaging included).

Usage: python bench/embedders.py [MODEL.tflite ...] [--rounds 7] [--crops 100]
(default: the shipped model and the project's last MobileFaceNet, a test fixture)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from device.vision.embedder import FaceEmbedder, default_model_path
from device.vision.imageio import read_image

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PEEPHOLE_SHARED", ROOT.parent / "shared"))
MOBILEFACENET = ROOT / "tests/fixtures/mobilefacenet_phase5_int8.tflite"


def ms_per_face(embedder: FaceEmbedder, crops: np.ndarray) -> float:
    started = time.perf_counter()
    for crop in crops:
        embedder.embed(crop)
    return 1000 * (time.perf_counter() - started) / len(crops)


def aligned_crops(count: int) -> np.ndarray:
    """The first ``count`` celebrity112 images: already ArcFace-aligned 112x112 faces."""
    paths = sorted((SHARED / "data/celebrity112").rglob("*.png"))[:count]
    if len(paths) < count:
        raise SystemExit(
            f"embedders: {count} aligned crops wanted, {len(paths)} found under {SHARED}"
        )
    return np.stack([read_image(path) for path in paths])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--crops", type=int, default=100)
    args = parser.parse_args()
    models = args.models or [default_model_path(), MOBILEFACENET]
    embedders = {m: FaceEmbedder.from_files(m, num_threads=1) for m in models}
    crops = aligned_crops(args.crops)
    for embedder in embedders.values():
        embedder.embed_many(crops[:5])
    timings: dict[Path, list[float]] = {m: [] for m in models}
    for _ in range(args.rounds):
        for model, embedder in embedders.items():
            timings[model].append(ms_per_face(embedder, crops))
    first = statistics.median(timings[models[0]])
    print(
        f"| model | views per face | ms per face (1 thread, median of {args.rounds} rounds) | vs {models[0].name} |"
    )
    print("|---|---|---|---|")
    for model, embedder in embedders.items():
        median = statistics.median(timings[model])
        views = 2 if embedder.manifest.mirror_average else 1
        print(f"| {model.name} | {views} | {median:.2f} | {median / first:.2f}x |")


if __name__ == "__main__":
    main()
