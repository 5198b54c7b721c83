"""Time one identification (probe against the whole gallery) for several gallery sizes.

Random unit vectors stand in for embeddings: the cost does not depend on their values.
Also times ``Matcher.refresh()`` when nothing changed (one small SQLite read).

Usage: python bench/bench_matching.py [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from device.identity.gallery import EmbeddingRows, Gallery, Sample
from device.identity.matching import GalleryIndex, Matcher, Strategy

DIM = 128
SIZES = [(20, 10), (1_000, 10), (10_000, 1), (10_000, 10)]


def random_rows(people: int, samples: int, rng: np.random.Generator) -> EmbeddingRows:
    vectors = rng.standard_normal((people * samples, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return EmbeddingRows(
        names=[f"person {i}" for i in range(people)],
        person_index=np.repeat(np.arange(people), samples),
        vectors=vectors,
    )


def time_calls(call: object, repeats: int) -> tuple[float, float]:
    """(median, 99th percentile) of one call, in milliseconds."""
    assert callable(call)
    for _ in range(min(20, repeats)):
        call()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(0.99 * (len(samples) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    probe = rng.standard_normal(DIM).astype(np.float32)
    probe /= np.linalg.norm(probe)
    print("| people x samples | matching | median ms | p99 ms |")
    print("|---|---|---|---|")
    for people, samples in SIZES:
        rows = random_rows(people, samples, rng)
        for strategy in Strategy:
            index = GalleryIndex(rows, strategy)
            median, p99 = time_calls(lambda i=index: i.identify(probe, 0.4, 0.05), args.repeats)
            print(f"| {people} x {samples} | {strategy} | {median:.3f} | {p99:.3f} |")
    with tempfile.TemporaryDirectory() as folder, Gallery.open(Path(folder) / "g.db") as gallery:
        gallery.add_person_samples("someone", [Sample(probe, 1.0, "bench")], "0" * 64, append=False)
        matcher = Matcher.from_gallery(gallery, "0" * 64, 0.4, 0.05)
        median, p99 = time_calls(matcher.refresh, args.repeats)
        print(f"| refresh, no change | - | {median:.3f} | {p99:.3f} |")


if __name__ == "__main__":
    main()
