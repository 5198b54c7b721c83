"""LFW 10-fold verification of each stack through its own detector and alignment.

peephole: trainer.evaluate's alignment (BlazeFace, face mesh, ArcFace template)
and the model's embeddings, cosine similarity. face_recognition: its own
face_locations (HOG) and face_encodings in a worker process, similarity =
minus the Euclidean distance it thresholds. Both use trainer.metrics'
kfold_verification on the official folds. Embeddings are cached per model in
the cache folder, so a second run only scores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.vision.embedder import FaceEmbedder
from trainer.evaluate import align_lfw, default_pipeline
from trainer.lfw import LfwPair
from trainer.metrics import kfold_verification

WORKER = Path(__file__).with_name("facerec_worker.py")


@dataclass(frozen=True)
class LfwScore:
    accuracy: float
    std: float
    pairs: int
    images: int
    detector_misses: int
    seconds_computed: float


def subset(pairs: list[LfwPair], folds: int | None, per_half: int | None) -> list[LfwPair]:
    """The first ``per_half`` same and different pairs of the first ``folds`` folds (None: all)."""
    chosen = []
    for fold in range(folds or 10):
        in_fold = [p for p in pairs if p.fold == fold]
        same = [p for p in in_fold if p.same]
        different = [p for p in in_fold if not p.same]
        chosen += same[:per_half] + different[:per_half] if per_half else in_fold
    return chosen


def image_paths(pairs: list[LfwPair]) -> list[Path]:
    return sorted({p.first for p in pairs} | {p.second for p in pairs})


def score(
    pairs: list[LfwPair],
    vectors: dict[Path, np.ndarray],
    similarity: str,
    misses: int,
    seconds: float,
) -> LfwScore:
    first = np.stack([vectors[p.first] for p in pairs])
    second = np.stack([vectors[p.second] for p in pairs])
    if similarity == "cosine":
        similarities = np.sum(first * second, axis=1)
    else:
        similarities = -np.linalg.norm(first - second, axis=1)
    result = kfold_verification(
        similarities, np.array([p.same for p in pairs]), np.array([p.fold for p in pairs])
    )
    return LfwScore(
        result.accuracy_mean, result.accuracy_std, len(pairs), len(vectors), misses, seconds
    )


def _load(cache: Path) -> tuple[dict[Path, np.ndarray], set[Path]]:
    if not cache.exists():
        return {}, set()
    with np.load(cache) as data:
        vectors = {Path(str(p)): v for p, v in zip(data["paths"], data["vectors"], strict=True)}
        misses = {Path(str(p)) for p in data["misses"]}
    return vectors, misses


def peephole_cache(cache_dir: Path, embedding_key: str) -> Path:
    return cache_dir / f"peephole_lfw_{embedding_key[:16]}.npz"


def cached_peephole_vectors(model: Path, cache_dir: Path) -> dict[Path, np.ndarray]:
    """The LFW embeddings ``peephole_scores`` cached for this model."""
    key = FaceEmbedder.from_files(model).embedding_key
    return _load(peephole_cache(cache_dir, key))[0]


def peephole_scores(
    models: dict[str, tuple[Path, Path | None]], pairs: list[LfwPair], cache_dir: Path, threads: int
) -> dict[str, LfwScore]:
    """LFW accuracy of each embedding model; one alignment pass serves every model."""
    paths = image_paths(pairs)
    embedders = {
        name: FaceEmbedder.from_files(m, mf, num_threads=threads)
        for name, (m, mf) in models.items()
    }
    caches = {name: peephole_cache(cache_dir, e.embedding_key) for name, e in embedders.items()}
    loaded = {name: _load(cache) for name, cache in caches.items()}
    todo = sorted({p for name in models for p in paths if p not in loaded[name][0]})
    seconds = 0.0
    if todo:
        started = time.perf_counter()
        pairs_todo = [LfwPair(p, p, True, 0) for p in todo]
        aligned = align_lfw(
            pairs_todo, default_pipeline(threads), show_progress=sys.stderr.isatty()
        )
        crops = np.stack([aligned.crops[p] for p in todo])
        for name, embedder in embedders.items():
            vectors, misses = loaded[name]
            vectors.update(zip(todo, embedder.embed_many(crops), strict=True))
            misses |= set(aligned.fallbacks)
            cache_dir.mkdir(parents=True, exist_ok=True)
            np.savez(
                caches[name],
                paths=np.array([str(p) for p in vectors]),
                vectors=np.stack(list(vectors.values())),
                misses=np.array([str(p) for p in misses]),
            )
        seconds = time.perf_counter() - started
    scores = {}
    for name in models:
        vectors, misses = loaded[name]
        wanted = {p: vectors[p] for p in paths}
        scores[name] = score(pairs, wanted, "cosine", len(misses & set(paths)), seconds)
    return scores


def facerec_score(pairs: list[LfwPair], cache_dir: Path) -> LfwScore:
    """face_recognition's accuracy; encodes (in a worker) only images no cache holds yet."""
    paths = image_paths(pairs)
    vectors, misses = _load_facerec(cache_dir)
    todo = [p for p in paths if p not in vectors]
    seconds = 0.0
    if todo:
        started = time.perf_counter()
        cache_dir.mkdir(parents=True, exist_ok=True)
        listing = cache_dir / "facerec_lfw_todo.txt"
        listing.write_text("\n".join(str(p) for p in todo))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        cache = cache_dir / "facerec_lfw_run.npz"
        subprocess.run(
            [sys.executable, str(WORKER), "lfw", str(listing), str(cache)], check=True, env=env
        )
        seconds = time.perf_counter() - started
        vectors, misses = _load_facerec(cache_dir)
    wanted = {p: vectors[p] for p in paths}
    return score(pairs, wanted, "euclidean", len(misses & set(paths)), seconds)


def _load_facerec(cache_dir: Path) -> tuple[dict[Path, np.ndarray], set[Path]]:
    """Every face_recognition LFW cache in the folder (several workers may have filled them)."""
    vectors: dict[Path, np.ndarray] = {}
    misses: set[Path] = set()
    for cache in sorted(cache_dir.glob("facerec_lfw*.npz")):
        if cache.name.endswith(".partial.npz"):
            continue
        with np.load(cache) as data:
            for p, v, found in zip(data["paths"], data["encodings"], data["found"], strict=True):
                vectors[Path(str(p))] = v
                if not found:
                    misses.add(Path(str(p)))
    return vectors, misses
