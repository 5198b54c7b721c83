"""Where the quality gate's measures fall on real faces, and on blurred copies of them.

Sharpness is the variance of the Laplacian of the aligned 112x112 grey crop.
Blurred copies are made by a Gaussian blur of the whole frame before detection,
with sigma scaled to the face (a fraction of the inter-ocular distance), so a
blur means the same thing for a large and a small face.

    python bench/quality_distribution.py [--limit N]
"""

from __future__ import annotations

import argparse
import os
import random
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from device.config import Config
from device.vision.imageio import read_image
from device.vision.pipeline import FacePipeline
from device.vision.quality import laplacian_variance

SHARED = Path(os.environ.get("PEEPHOLE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
# Blur sigma as a fraction of the inter-ocular distance in the frame.
BLUR_LEVELS = (0.0, 0.025, 0.05, 0.1)


def percentiles(values: list[float]) -> str:
    p = np.percentile(values, [5, 25, 50, 75, 95])
    return " | ".join(f"{v:7.1f}" for v in p)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=1500, help="LFW images sampled")
    args = parser.parse_args()
    config = Config()
    pipeline = FacePipeline.from_config(config)
    lfw = sorted((SHARED / "data/lfw/images").rglob("*.jpg"))
    random.Random(0).shuffle(lfw)
    sharpness: dict[float, list[float]] = {level: [] for level in BLUR_LEVELS}
    reasons: Counter[str] = Counter()
    yaws, rolls, eyes, brightness = [], [], [], []
    for path in lfw[: args.limit]:
        image = read_image(path)
        faces = pipeline.analyse(image, embed=False)
        if not faces:
            continue
        face = faces[0]
        reasons.update(r.value for r in face.quality.reasons)
        yaws.append(face.quality.yaw)
        rolls.append(face.quality.roll)
        eyes.append(face.quality.eye_distance)
        brightness.append(face.quality.brightness)
        for level in BLUR_LEVELS:
            if level == 0:
                sharpness[level].append(face.quality.sharpness)
                continue
            sigma = level * face.detection.eye_distance
            blurred = cv2.GaussianBlur(image, (0, 0), sigma)
            analysed = pipeline.analyse_detection(blurred, face.detection, embed=False)
            sharpness[level].append(analysed.quality.sharpness)
    celebrity = sorted((SHARED / "data/celebrity112").rglob("*.png"))
    celebrity_sharpness = []
    for path in celebrity:
        bgr = cv2.imread(str(path))
        assert bgr is not None, path
        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        celebrity_sharpness.append(laplacian_variance(grey))
    n = len(sharpness[0.0])
    print(f"LFW faces measured: {n}; celebrity112 crops: {len(celebrity_sharpness)}\n")
    print("| set | p5 | p25 | median | p75 | p95 | below default |")
    print("|---|---|---|---|---|---|---|")
    threshold = config.quality.min_sharpness
    for level, values in sharpness.items():
        name = "LFW sharp" if level == 0 else f"LFW blurred, sigma {level:.3f} x eye distance"
        below = 100 * np.mean(np.array(values) < threshold)
        print(f"| {name} | {percentiles(values)} | {below:.1f}% |")
    below = 100 * np.mean(np.array(celebrity_sharpness) < threshold)
    print(f"| celebrity112 (pre-aligned) | {percentiles(celebrity_sharpness)} | {below:.1f}% |")
    for name, values in (
        ("yaw", yaws),
        ("roll", rolls),
        ("eye distance px", eyes),
        ("brightness", brightness),
    ):
        print(f"| LFW {name} | {percentiles(values)} | |")
    print(f"\nLFW gate rejections by reason (of {n}): {dict(reasons)}")


if __name__ == "__main__":
    main()
