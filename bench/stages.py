"""Per-stage time of the vision pipeline (detect, align, gate, embed) for several models.

Models run interleaved on the same images in one process, so a noisy shared
machine affects them alike; the ratio column is the figure to trust.

    python bench/stages.py [--images N] [--threads T] [--model NAME=MODEL.tflite[:MANIFEST.json] ...]
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

import numpy as np

from bench.machine import cpu_name
from device.config import Config
from device.vision.embedder import FaceEmbedder, default_model_path
from device.vision.imageio import read_image
from device.vision.pipeline import FacePipeline, StageTimer

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PEEPHOLE_SHARED", ROOT.parent / "shared"))


def parse_model(spec: str) -> tuple[str, Path, Path | None]:
    name, _, paths = spec.partition("=")
    model, _, manifest = paths.partition(":")
    return name, Path(model), Path(manifest) if manifest else None


def default_models() -> list[tuple[str, Path, Path | None]]:
    reference = SHARED / "models/reference"
    models: list[tuple[str, Path, Path | None]] = [
        (
            "reference f32",
            reference / "mobilefacenet_insightface_f32.tflite",
            ROOT / "tests/fixtures/mobilefacenet_insightface_f32.json",
        ),
        (
            "reference uint8",
            reference / "mobilefacenet_insightface_uint8.tflite",
            ROOT / "tests/fixtures/mobilefacenet_insightface_uint8.json",
        ),
    ]
    if default_model_path().exists():
        models.insert(0, ("peephole int8 (default)", default_model_path(), None))
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", action="append", default=[], help="NAME=MODEL[:MANIFEST]")
    parser.add_argument("--landmarks", choices=["blazeface", "mesh"], default="mesh")
    args = parser.parse_args()
    models = [parse_model(s) for s in args.model] or default_models()
    config = Config()
    config.detector.num_threads = args.threads
    config.detector.landmarks = args.landmarks
    timer = StageTimer()
    pipeline = FacePipeline.from_config(config)
    pipeline.timer = timer
    embedders = {
        name: FaceEmbedder.from_files(m, mf, num_threads=args.threads) for name, m, mf in models
    }
    paths = sorted((SHARED / "data/lfw/images").rglob("*.jpg"))
    random.Random(1).shuffle(paths)
    images = [read_image(p) for p in paths[: args.images]]
    embed_times: dict[str, list[float]] = {name: [] for name in embedders}
    for image in images[:5]:  # warm-up
        for face in pipeline.analyse(image, embed=False)[:1]:
            for embedder in embedders.values():
                embedder.embed(face.crop)
    timer.samples.clear()
    for image in images:
        faces = pipeline.analyse(image, embed=False)
        for face in faces[:1]:
            for name, embedder in embedders.items():
                started = time.perf_counter()
                embedder.embed(face.crop)
                embed_times[name].append(time.perf_counter() - started)
    print(
        f"{time.strftime('%Y-%m-%d')}, {cpu_name()}, {os.cpu_count()} cores, {args.threads} thread(s), "
        f"{len(images)} LFW images (250x250), landmarks {args.landmarks}\n"
    )
    print("| stage | median ms | p95 ms |")
    print("|---|---|---|")
    for stage in ("detect", "landmarks", "align", "gate"):
        if stage not in timer.samples:
            continue
        values = np.array(timer.samples[stage]) * 1000
        print(f"| {stage} | {np.median(values):.2f} | {np.percentile(values, 95):.2f} |")
    baseline = None
    for name, times in embed_times.items():
        ms = np.array(times) * 1000
        baseline = baseline or float(np.median(ms))
        print(f"| embed: {name} | {np.median(ms):.2f} | {np.percentile(ms, 95):.2f} |")
    print("\n| model | embed median ms | relative to first |")
    print("|---|---|---|")
    for name, times in embed_times.items():
        median = float(np.median(times)) * 1000
        assert baseline is not None  # set by the loop above over the same models
        print(f"| {name} | {median:.2f} | {median / baseline:.2f}x |")


if __name__ == "__main__":
    main()
