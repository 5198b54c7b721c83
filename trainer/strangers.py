"""The door's naming threshold, calibrated against thousands of stranger identities.

Six stranger identities (celebrity112's own split) cannot pin a 1% rate: the
threshold they give lets through several times that on new faces. Here:

- the household is all of celebrity112's identities, each enrolled from its first
  ``enrolled_images`` crops (mean matching, as the gallery does); their other
  crops are the probes that should be named;
- the strangers are LFW's identities (about 4,270 after leaving out every
  enrolled identity: 14 of celebrity112's people are in LFW), split by identity
  into a calibration half and a held-out half;
- the threshold is the lowest one at which the 95% Wilson upper bound of the
  calibration half's named rate stays within ``far_target``, so the target holds
  on faces it has not seen, and the held-out half measures it, with a 95% interval.

Pure numpy: models come in as an embedding function.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from device.errors import PeepholeError
from device.identity.calibration import allowed_named, threshold_for_far, wilson_interval
from trainer.lfw import EmbedFn

# celebrity112's older split: the stranger target and the margin the manifests were calibrated with.
FAR_TARGET = 0.01
MATCH_MARGIN = 0.05


@dataclass(frozen=True)
class StrangerReport:
    threshold: float | None
    far_target: float
    margin: float
    household: int
    calibration_identities: int
    calibration_images: int
    heldout_identities: int
    heldout_images: int
    heldout_named: int
    heldout_rate: float
    heldout_interval: tuple[float, float]
    heldout_identities_named: int
    enrolled_probes: int
    enrolled_named_correctly: float
    enrolled_named_wrongly: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        low, high = self.heldout_interval
        return (
            f"threshold {self.threshold} (calibrated on {self.calibration_identities:,} LFW "
            f"stranger identities, {self.calibration_images:,} images; 95% upper bound <= "
            f"{self.far_target:.0%}): held-out strangers named {self.heldout_named} of "
            f"{self.heldout_images:,} images = {100 * self.heldout_rate:.2f}% "
            f"(95% CI {100 * low:.2f}-{100 * high:.2f}%) from {self.heldout_identities:,} "
            f"identities; household of {self.household}: {100 * self.enrolled_named_correctly:.1f}% "
            f"of {self.enrolled_probes} probes named correctly, "
            f"{100 * self.enrolled_named_wrongly:.2f}% wrongly"
        )


def _best_match(probes: np.ndarray, means: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    similarities = probes @ means.T
    order = np.argsort(-similarities, axis=1)
    rows = np.arange(len(probes))
    best = similarities[rows, order[:, 0]]
    return order[:, 0], best, best - similarities[rows, order[:, 1]]


def person_crops(person: Path) -> np.ndarray:
    """The 112x112 crops (RGB) of one identity's folder of celebrity112; other sizes are skipped."""
    images = sorted(person.glob("*.png")) + sorted(person.glob("*.jpg"))
    crops = []
    for path in images:
        bgr = cv2.imread(str(path))
        if bgr is None:
            raise PeepholeError(f"{path}: not an image")
        crops.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return np.stack([c for c in crops if c.shape == (112, 112, 3)])


def _celebrity_crops(folder: Path) -> dict[str, np.ndarray]:
    return {
        person.name: person_crops(person)
        for person in sorted(p for p in folder.iterdir() if p.is_dir())
    }


def calibrate_strangers(
    embed: EmbedFn,
    celebrity: Path,
    lfw_crops: dict[Path, np.ndarray],
    far_target: float = 0.01,
    margin: float = 0.05,
    enrolled_images: int = 5,
    seed: int = 0,
) -> StrangerReport:
    household = _celebrity_crops(celebrity)
    if len(household) < 2:
        raise PeepholeError(f"{celebrity}: need at least two identities for a household")
    names = sorted(household)
    vectors = {name: embed(crops) for name, crops in household.items()}
    means = np.stack([vectors[n][:enrolled_images].mean(axis=0) for n in names])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    enrolled = {n.lower() for n in names}
    stranger_paths = sorted(p for p in lfw_crops if p.parent.name.lower() not in enrolled)
    identities = sorted({p.parent.name for p in stranger_paths})
    if len(identities) < 200:
        raise PeepholeError(f"only {len(identities)} stranger identities: need LFW's thousands")
    order = np.random.default_rng(seed).permutation(len(identities))
    calibration_ids = {identities[i] for i in order[: len(identities) // 2]}
    stranger_vectors = embed(np.stack([lfw_crops[p] for p in stranger_paths]))
    _, best, gap = _best_match(stranger_vectors, means)
    in_calibration = np.array([p.parent.name in calibration_ids for p in stranger_paths])

    n_calibration = int(in_calibration.sum())
    allowed = allowed_named(n_calibration, far_target)
    threshold = threshold_for_far(
        best[in_calibration], gap[in_calibration], allowed / n_calibration, margin
    )
    limit = -math.inf if threshold is None else threshold
    named = (best >= limit) & (gap >= margin)
    held = ~in_calibration
    held_named = int(named[held].sum())
    held_ids_named = {
        p.parent.name for p, n, h in zip(stranger_paths, named, held, strict=True) if n and h
    }

    probes = np.concatenate([vectors[n][enrolled_images:] for n in names])
    truth = np.concatenate([[i] * (len(vectors[n]) - enrolled_images) for i, n in enumerate(names)])
    candidate, probe_best, probe_gap = _best_match(probes, means)
    accepted = (probe_best >= limit) & (probe_gap >= margin)
    return StrangerReport(
        threshold=threshold,
        far_target=far_target,
        margin=margin,
        household=len(names),
        calibration_identities=len(calibration_ids),
        calibration_images=n_calibration,
        heldout_identities=len(identities) - len(calibration_ids),
        heldout_images=int(held.sum()),
        heldout_named=held_named,
        heldout_rate=held_named / max(int(held.sum()), 1),
        heldout_interval=wilson_interval(held_named, int(held.sum())),
        heldout_identities_named=len(held_ids_named),
        enrolled_probes=len(probes),
        enrolled_named_correctly=float((accepted & (candidate == truth)).mean()),
        enrolled_named_wrongly=float((accepted & (candidate != truth)).mean()),
    )


def calibrate_identification(
    embed: EmbedFn, celebrity: Path, lfw_crops: dict[Path, np.ndarray]
) -> tuple[dict[str, Any], str]:
    """The manifest's identification threshold and what to record of it.

    Returns the facts (``threshold``, ``far_target``, the stranger report, and
    celebrity112's own six-stranger split for comparison with earlier models) and
    the provenance line that says how the threshold was chosen.
    """
    report = calibrate_strangers(embed, celebrity, lfw_crops)
    facts: dict[str, Any] = {
        "threshold": report.threshold,
        "far_target": report.far_target,
        "margin": report.margin,
        "strangers": report.as_dict(),
        "celebrity112_split": celebrity_openset(embed, celebrity),
    }
    provenance = (
        f"household = celebrity112's {report.household} identities, first 5 crops each, mean "
        f"matching, margin {report.margin}; strangers = LFW identities not enrolled, split by "
        "identity; the lowest threshold whose 95% Wilson upper bound of the calibration half's "
        f"named rate is <= {report.far_target:.0%}: {report.summary()}"
    )
    return facts, provenance


def celebrity_openset(
    embed: EmbedFn,
    folder: Path,
    enrolled_identities: int = 12,
    enrolled_images: int = 5,
    far_target: float = FAR_TARGET,
    margin: float = MATCH_MARGIN,
) -> dict[str, Any]:
    """Open-set identification on celebrity112, as the reference manifests were calibrated.

    Gallery: the first ``enrolled_identities`` identities (sorted) with their first
    ``enrolled_images`` crops, matched by the normalised mean. Probes: their other
    crops (must be named correctly) and every crop of the remaining identities
    (strangers: at most ``far_target`` of them may be named).
    """
    from device.identity.calibration import ProbeScores, evaluate, threshold_for_far

    people = sorted(p for p in folder.iterdir() if p.is_dir())
    if len(people) <= enrolled_identities:
        raise PeepholeError(f"{folder}: need more than {enrolled_identities} identities")

    gallery_names: list[str] = []
    means: list[np.ndarray] = []
    probes: list[np.ndarray] = []
    truth: list[str | None] = []
    for index, person in enumerate(people):
        vectors = embed(person_crops(person))
        if index < enrolled_identities:
            mean = vectors[:enrolled_images].mean(axis=0)
            means.append(mean / np.linalg.norm(mean))
            gallery_names.append(person.name)
            probes.append(vectors[enrolled_images:])
            truth += [person.name] * (len(vectors) - enrolled_images)
        else:
            probes.append(vectors)
            truth += [None] * len(vectors)
    similarities = np.concatenate(probes) @ np.stack(means).T
    order = np.argsort(-similarities, axis=1)
    rows = np.arange(len(similarities))
    best = similarities[rows, order[:, 0]]
    gap = best - similarities[rows, order[:, 1]]
    scores = ProbeScores(
        similarity=best.astype(np.float32),
        margin=gap.astype(np.float32),
        candidate=[gallery_names[int(i)] for i in order[:, 0]],
        truth=truth,
    )
    strangers = np.array([t is None for t in truth])
    threshold = threshold_for_far(best[strangers], gap[strangers], far_target, margin)
    result: dict[str, Any] = {
        "threshold": threshold,
        "far_target": far_target,
        "margin": margin,
        "enrolled": f"first {enrolled_identities} identities x first {enrolled_images} crops",
        "enrolled_probes": int((~strangers).sum()),
        "stranger_probes": int(strangers.sum()),
    }
    if threshold is not None:
        report = evaluate(scores, threshold, margin)
        result.update(
            {
                "enrolled_named_correctly": report.enrolled_named_correctly,
                "enrolled_named_wrongly": report.enrolled_named_wrongly,
                "strangers_named": report.strangers_named,
            }
        )
    return result
