"""Mirror averaging: does embedding a crop and its mirror image, and averaging, help LFW?

A common test-time trick for face embedders, which the device does when the model's
manifest sets ``mirror_average``. It doubles the embedding cost per face, so it is
worth turning on only if the accuracy gain is clear. Both rows run the device's
embedder (the manifest's flag set either way; its thresholds are ignored here) on
the same aligned LFW crops (device pipeline, cached like ``trainer evaluate
--lfw-cache``) and the same 10-fold protocol; the embed time is measured in the same
run, one thread, per face.

Usage: python bench/mirror_average.py [--model F] [--cache runs/lfw_aligned.npz]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from device.vision.embedder import FaceEmbedder, default_model_path
from trainer.evaluate import aligned_lfw, evaluate_lfw
from trainer.lfw import read_pairs

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PEEPHOLE_SHARED", ROOT.parent / "shared"))
TIMED_CROPS = 200


def ms_per_face(embed: Callable[[np.ndarray], np.ndarray], crops: np.ndarray) -> float:
    embed(crops[:1])
    start = time.perf_counter()
    for crop in crops:
        embed(crop[None])
    return 1000 * (time.perf_counter() - start) / len(crops)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, default=default_model_path())
    parser.add_argument("--cache", type=Path, default=ROOT / "runs/lfw_aligned.npz")
    args = parser.parse_args()
    lfw = SHARED / "data/lfw"
    pairs = read_pairs(lfw / "pairs.txt", lfw / "images")
    aligned = aligned_lfw(pairs, 2, args.cache)
    shipped = FaceEmbedder.from_files(args.model, num_threads=1)
    timed = np.stack([aligned.crops[p] for p in sorted(aligned.crops)[:TIMED_CROPS]])
    print(f"model: {args.model.name}; LFW 10-fold, {len(pairs)} pairs, device pipeline")
    print("| embedding | LFW accuracy | TAR at FAR 1e-3 | threshold | embed ms/face (1 thread) |")
    print("|---|---|---|---|---|")
    for name, mirror_average in (("crop", False), ("crop + mirror, averaged", True)):
        manifest = dataclasses.replace(shipped.manifest, mirror_average=mirror_average)
        embed = FaceEmbedder(shipped.model, manifest, shipped.sha256).embed_many
        report, _ = evaluate_lfw(pairs, aligned, embed)
        v = report.verification
        print(
            f"| {name} | {100 * v.accuracy_mean:.2f}% +- {100 * v.accuracy_std:.2f} "
            f"| {100 * v.tar_at_far:.1f}% | {v.threshold:.3f} | {ms_per_face(embed, timed):.2f} |"
        )


if __name__ == "__main__":
    main()
