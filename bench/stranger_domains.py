"""Strangers named per photo source, households enrolled as a household enrolls.

Every image goes through the device's own pipeline (detection, face mesh,
alignment, quality gate, the shipped int8 model); only faces the gate accepts
count, as at the door. Embeddings are cached per model and per version of the
crops under ``~/.cache/peephole/bench/stranger_domains/<sha>-<crops>/``
(checkpointed every 1,000 images: an interrupted run resumes).

Households (20 people each, mean matching, margin from the config):

- ``lfw-wild``: 20 LFW identities with at least 8 photos (fixed seed), each
  enrolled from their first 5 photos the gate accepts; their other photos are
  the probes that should be named;
- ``celebrity112``: its 18 identities, first 5 aligned crops each (how the
  manifest was calibrated before), the rest as probes.

Strangers, each split into a calibration half and a held-out half:

- ``lfw``: LFW identities in neither household, split by identity;
- ``utkface``: 16,000 photos of different people of all ages, split by image.

The threshold is the lowest at which, for every household and every stranger
domain, the calibration half's 95% Wilson upper bound of strangers named is
within 1%; the held-out halves then measure it.

With ``--mirror-average`` every face is embedded with its mirror image and the
two averaged (the manifest option, two runs of the model per face), to measure
what that recovers at the threshold it needs.

    python -m bench.stranger_domains [--threshold 0.393 ...] [--mirror-average]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import inspect
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.machine import cpu_name
from device.config import Config
from device.errors import PeepholeError
from device.identity.calibration import (
    ProbeScores,
    domain_rates,
    evaluate,
    threshold_for_domains,
)
from device.identity.matching import Strategy
from device.site.model_choice import ModelChoice
from device.vision import align, landmarks
from device.vision.embedder import FaceEmbedder
from device.vision.imageio import read_image
from device.vision.pipeline import FacePipeline

SHARED = Path(os.environ.get("PEEPHOLE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
CACHE = Path.home() / ".cache" / "peephole" / "bench" / "stranger_domains"
HOUSEHOLD_SIZE = 20
ENROLLED_PHOTOS = 5
# At least 3 probes a person besides the photos enrolled (53 LFW identities qualify).
MIN_PHOTOS = 8
TARGET_FAR = 0.01
SEED = 0


@dataclass(frozen=True)
class Embedded:
    """One source's images: which the gate accepted, and their embeddings (zeros if not)."""

    paths: list[str]
    accepted: np.ndarray
    vectors: np.ndarray


def crops_version() -> str:
    """A digest of the code that makes a crop (face mesh region and alignment): a cache
    made before a change of either is not read."""
    digest = hashlib.sha256()
    for module in (align, landmarks):
        digest.update(inspect.getsource(module).encode())
    return digest.hexdigest()[:8]


def embed_folder(
    name: str, paths: list[Path], root: Path, pipeline: FacePipeline, cache: Path
) -> Embedded:
    """Each image's largest accepted face embedded (cached, resumable)."""
    file = cache / f"{name}.npz"
    done: dict[str, np.ndarray | None] = {}
    if file.exists():
        stored = np.load(file, allow_pickle=False)
        for path, ok, vector in zip(
            stored["paths"], stored["accepted"], stored["vectors"], strict=True
        ):
            done[str(path)] = vector if ok else None
    keys = [str(p.relative_to(root)) for p in paths]
    started = time.monotonic()
    for count, (path, key) in enumerate(zip(paths, keys, strict=True)):
        if key in done:
            continue
        vector = None
        try:
            faces = pipeline.analyse(read_image(path))
        except PeepholeError:
            faces = []
        for face in faces:
            if face.embedding is not None:
                vector = face.embedding
                break
        done[key] = vector
        if len(done) % 1000 == 0:
            _save(file, done)
            rate = (count + 1) / (time.monotonic() - started)
            print(f"  {name}: {len(done)}/{len(paths)} ({rate:.0f}/s)", file=sys.stderr)
    _save(file, done)
    return Embedded(keys, np.array([done[k] is not None for k in keys]), _matrix(done, keys))


def _matrix(done: dict[str, np.ndarray | None], keys: list[str]) -> np.ndarray:
    """The embeddings of ``keys`` as rows; zeros where no face was accepted."""
    size = next((len(v) for v in done.values() if v is not None), 1)
    rows = np.zeros((len(keys), size), np.float32)
    for row, key in enumerate(keys):
        vector = done[key]
        if vector is not None:
            rows[row] = vector
    return rows


def _save(file: Path, done: dict[str, np.ndarray | None]) -> None:
    keys = list(done)
    temporary = file.with_suffix(".tmp.npz")
    np.savez(
        temporary,
        paths=np.array(keys),
        accepted=np.array([done[k] is not None for k in keys]),
        vectors=_matrix(done, keys),
    )
    temporary.replace(file)


@dataclass(frozen=True)
class Household:
    name: str
    people: list[str]
    means: np.ndarray
    probes: np.ndarray
    truth: list[str]
    # Every enrolled sample, and whose it is (for best-sample matching).
    samples: np.ndarray
    owner: np.ndarray


def household_from(name: str, groups: dict[str, np.ndarray]) -> Household:
    """Each person enrolled from their first photos (mean, normalised); the rest are probes."""
    people = sorted(groups)
    means, probes, truth, samples, owner = [], [], [], [], []
    for index, person in enumerate(people):
        vectors = groups[person]
        mean = vectors[:ENROLLED_PHOTOS].mean(axis=0)
        means.append(mean / np.linalg.norm(mean))
        probes.append(vectors[ENROLLED_PHOTOS:])
        truth += [person] * (len(vectors) - ENROLLED_PHOTOS)
        samples.append(vectors[:ENROLLED_PHOTOS])
        owner += [index] * len(vectors[:ENROLLED_PHOTOS])
    return Household(
        name,
        people,
        np.stack(means),
        np.concatenate(probes),
        truth,
        np.concatenate(samples),
        np.array(owner),
    )


def scores(
    household: Household,
    vectors: np.ndarray,
    truth: list[str | None],
    strategy: Strategy = Strategy.MEAN,
) -> ProbeScores:
    """How the household's gallery matches each vector, as device/identity/matching.py does."""
    if strategy is Strategy.MEAN:
        similarities = vectors @ household.means.T
    else:
        per_sample = vectors @ household.samples.T
        similarities = np.full((len(vectors), len(household.people)), -1.0, np.float32)
        for person in range(len(household.people)):
            similarities[:, person] = per_sample[:, household.owner == person].max(axis=1)
    order = np.argsort(-similarities, axis=1)
    rows = np.arange(len(vectors))
    best = similarities[rows, order[:, 0]]
    return ProbeScores(
        similarity=best.astype(np.float32),
        margin=(best - similarities[rows, order[:, 1]]).astype(np.float32),
        candidate=[household.people[int(i)] for i in order[:, 0]],
        truth=truth,
    )


def half(key: str) -> bool:
    """A stable split: True for the calibration half."""
    return hashlib.sha256(key.encode()).digest()[0] % 2 == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, action="append", default=[])
    parser.add_argument(
        "--mirror-average", action="store_true", help="embed each face with its mirror image"
    )
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    config = Config()
    embedder = ModelChoice(config).embedder()
    if arguments.mirror_average:
        mirrored = dataclasses.replace(embedder.manifest, mirror_average=True)
        embedder = FaceEmbedder(embedder.model, mirrored, embedder.sha256)
    margin = config.model.margin
    pipeline = FacePipeline.from_config(config, embedder)
    cache = CACHE / (
        f"{embedder.sha256[:12]}-{crops_version()}"
        + ("-mirror" if arguments.mirror_average else "")
    )
    cache.mkdir(parents=True, exist_ok=True)
    data = SHARED / "data"

    lfw_paths = sorted((data / "lfw" / "images").glob("*/*.jpg"))
    utk_paths = sorted((data / "unlabeled" / "utkface").glob("*.jpg"))
    lfw = embed_folder("lfw", lfw_paths, data, pipeline, cache)
    utk = embed_folder("utkface", utk_paths, data, pipeline, cache)

    by_person: dict[str, list[int]] = {}
    for index, key in enumerate(lfw.paths):
        if lfw.accepted[index]:
            by_person.setdefault(Path(key).parent.name, []).append(index)
    candidates = sorted(p for p, rows in by_person.items() if len(rows) >= MIN_PHOTOS)
    rng = np.random.default_rng(SEED)
    chosen = sorted(rng.choice(candidates, HOUSEHOLD_SIZE, replace=False).tolist())
    wild = household_from("lfw-wild", {p: lfw.vectors[by_person[p]] for p in chosen})

    celebrity_root = data / "celebrity112"
    celebrity_groups: dict[str, np.ndarray] = {}
    for person in sorted(p for p in celebrity_root.iterdir() if p.is_dir()):
        crops = [read_image(path) for path in sorted(person.glob("*.png"))]
        celebrity_groups[person.name] = np.stack(
            [embedder.embed(c) for c in crops if c.shape == (112, 112, 3)]
        )
    celebrity = household_from("celebrity112", celebrity_groups)

    excluded = {p.lower() for p in chosen} | {p.lower() for p in celebrity.people}
    lfw_rows = [
        i for i in range(len(lfw.paths))
        if lfw.accepted[i] and Path(lfw.paths[i]).parent.name.lower() not in excluded
    ]  # fmt: skip
    utk_rows = [i for i in range(len(utk.paths)) if utk.accepted[i]]
    # (source, rows, split key per image): LFW splits by identity, UTKFace by photo.
    stranger_sets = {
        "lfw": (lfw, lfw_rows, [Path(p).parent.name for p in lfw.paths]),
        "utkface": (utk, utk_rows, utk.paths),
    }
    calibration: dict[str, ProbeScores] = {}
    heldout: dict[str, ProbeScores] = {}
    for household in (wild, celebrity):
        for domain, (source, rows, split_keys) in stranger_sets.items():
            for part, chosen_rows in (
                (calibration, [i for i in rows if half(split_keys[i])]),
                (heldout, [i for i in rows if not half(split_keys[i])]),
            ):
                part[f"{domain} vs {household.name}"] = scores(
                    household, source.vectors[chosen_rows], [None] * len(chosen_rows)
                )
    threshold = threshold_for_domains(calibration, TARGET_FAR, margin)
    assert threshold is not None
    print(
        f"\n# Strangers per source ({time.strftime('%Y-%m-%d')}, {cpu_name()}, model "
        f"{embedder.sha256[:12]}, margin {margin}"
        f"{', mirror-averaged' if arguments.mirror_average else ''})\n"
    )
    print(
        f"accepted faces: LFW {int(lfw.accepted.sum())} of {len(lfw.paths)}, UTKFace "
        f"{int(utk.accepted.sum())} of {len(utk.paths)}; households: lfw-wild "
        f"{len(wild.people)} people ({len(wild.truth)} probes), celebrity112 "
        f"{len(celebrity.people)} ({len(celebrity.truth)} probes)\n"
    )
    print(f"threshold for every domain within {TARGET_FAR:.0%} at the upper bound: {threshold}\n")
    settings = sorted({threshold, embedder.manifest.identification_threshold, *arguments.threshold})
    print("| threshold | domain (held-out) | faces | named | rate | 95% interval |")
    print("|---|---|---|---|---|---|")
    for setting in settings:
        for rate in domain_rates(heldout, setting, margin):
            low, high = rate.interval
            print(
                f"| {setting:.3f} | {rate.domain} | {rate.faces} | {rate.named} | "
                f"{rate.rate:.2%} | {low:.2%}-{high:.2%} |"
            )
    print("\n| threshold | household | probes | named right | named wrongly |")
    print("|---|---|---|---|---|")
    for setting in settings:
        for household in (wild, celebrity):
            report = evaluate(
                scores(household, household.probes, list(household.truth)), setting, margin
            )
            print(
                f"| {setting:.3f} | {household.name} | {report.enrolled_probes} | "
                f"{report.enrolled_named_correctly:.1%} | {report.enrolled_named_wrongly:.2%} |"
            )
    print("\nWhat each matching rule costs, each calibrated the same way (held-out halves):\n")
    print(
        "| matching | margin | threshold | worst domain's upper bound | celebrity112 named | lfw-wild named |"
    )
    print("|---|---|---|---|---|---|")
    for strategy in (Strategy.MEAN, Strategy.BEST_SAMPLE):
        for rule_margin in (0.0, 0.05, 0.10):
            parts: dict[str, dict[str, ProbeScores]] = {"calibration": {}, "heldout": {}}
            for household in (wild, celebrity):
                for domain, (source, rows, split_keys) in stranger_sets.items():
                    for part_name, in_calibration in (("calibration", True), ("heldout", False)):
                        picked = [i for i in rows if half(split_keys[i]) == in_calibration]
                        parts[part_name][f"{domain} vs {household.name}"] = scores(
                            household, source.vectors[picked], [None] * len(picked), strategy
                        )
            found = threshold_for_domains(parts["calibration"], TARGET_FAR, rule_margin)
            assert found is not None
            worst = max(r.interval[1] for r in domain_rates(parts["heldout"], found, rule_margin))
            named_right = [
                evaluate(
                    scores(household, household.probes, list(household.truth), strategy),
                    found,
                    rule_margin,
                ).enrolled_named_correctly
                for household in (celebrity, wild)
            ]
            print(
                f"| {strategy.value} | {rule_margin:.2f} | {found:.3f} | {worst:.2%} | "
                f"{named_right[0]:.1%} | {named_right[1]:.1%} |"
            )
    print(f"\nlfw-wild household: {', '.join(chosen)}")


if __name__ == "__main__":
    main()
