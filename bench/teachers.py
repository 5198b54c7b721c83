"""Which teacher to distil from: dlib, MobileFace V2 and their ensemble on LFW.

All three on the same images and the official 10-fold protocol. dlib runs as
face_recognition runs it (its HOG detector and 5-point chip; the encodings are
the ones ``bench/compare.py`` caches, computed in a worker when missing);
MobileFace V2 runs through peephole's pipeline (BlazeFace, face mesh, ArcFace
template) as an exported ``.tflite`` with its manifest. The ensemble is the
cosine of the two normalised embeddings concatenated, i.e. the mean of the two
cosines, with dlib's descriptors centred first (they share a large common
direction; the centre is the mean over these LFW images, no labels used):
exactly the target ``trainer train --teacher dlib+MODEL`` uses on clean crops.
A score-level fusion (each stack's own score, standardised) is shown beside it.

Usage: python bench/teachers.py --model runs/mfv2/mfv2_int8.tflite [--cache-dir runs/bench]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import lfw_accuracy
import numpy as np

from trainer.lfw import LfwPair, read_pairs
from trainer.metrics import kfold_verification

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("PEEPHOLE_SHARED", ROOT.parent / "shared"))


def unit(vectors: np.ndarray) -> np.ndarray:
    return np.asarray(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="MobileFace V2 as .tflite")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "runs/bench")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    lfw_dir = SHARED / "data/lfw/images"
    pairs = read_pairs(SHARED / "data/lfw/pairs.txt", lfw_dir)
    paths = lfw_accuracy.image_paths(pairs)
    dlib_score = lfw_accuracy.facerec_score(pairs, args.cache_dir)
    mobileface = lfw_accuracy.peephole_scores(
        {"mobileface": (args.model, None)}, pairs, args.cache_dir, args.threads
    )["mobileface"]

    dlib_vectors, _ = lfw_accuracy._load_facerec(args.cache_dir)
    model_vectors = lfw_accuracy.cached_peephole_vectors(args.model, args.cache_dir)
    dlib = np.stack([dlib_vectors[p] for p in paths])
    dlib = unit(dlib - dlib.mean(axis=0))
    model = unit(np.stack([model_vectors[p] for p in paths]))
    ensemble = {
        p: v for p, v in zip(paths, np.concatenate([dlib, model], axis=1) / np.sqrt(2), strict=True)
    }
    centred_dlib = dict(zip(paths, dlib, strict=True))
    rows = [
        ("dlib (face_recognition's pipeline, Euclidean as it thresholds)", dlib_score),
        ("dlib, centred, cosine", lfw_accuracy.score(pairs, centred_dlib, "cosine", 0, 0.0)),
        (f"MobileFace V2 ({args.model.name}, peephole's pipeline)", mobileface),
        (
            "ensemble: dlib centred + MobileFace V2",
            lfw_accuracy.score(pairs, ensemble, "cosine", 0, 0.0),
        ),
    ]
    # Score-level fusion: each stack's own pair score, standardised over all pairs, summed.
    fused = sum(
        (scores - scores.mean()) / scores.std()
        for scores in (
            -pair_distances(pairs, dlib_vectors),
            1.0 - pair_distances(pairs, {p: v for p, v in zip(paths, model, strict=True)}) ** 2 / 2,
        )
    )
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    fused_result = kfold_verification(fused, same, folds)
    print("| teacher | LFW 10-fold |")
    print("|---|---|")
    for name, result in rows:
        print(f"| {name} | {100 * result.accuracy:.2f}% +- {100 * result.std:.2f} |")
    print(
        "| score fusion: dlib's distance + MobileFace V2's cosine, each standardised | "
        f"{100 * fused_result.accuracy_mean:.2f}% +- {100 * fused_result.accuracy_std:.2f} |"
    )


def pair_distances(pairs: list[LfwPair], vectors: dict[Path, np.ndarray]) -> np.ndarray:
    return np.array([np.linalg.norm(vectors[p.first] - vectors[p.second]) for p in pairs])


if __name__ == "__main__":
    main()
