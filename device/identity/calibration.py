"""Open-set identification metrics and threshold calibration (pure numpy).

At a door most faces the camera sees may belong to nobody enrolled, so the
threshold is chosen for a false-accept target: at most ``target_far`` of the
strangers' faces may be named as someone. A probe is *named* when its best
person's similarity reaches the threshold and beats the runner-up by the margin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Thresholds are reported on this grid (cosine), rounded up so the target still holds.
THRESHOLD_STEP = 0.001
Z_95 = 1.959964


def wilson_interval(named: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a rate ``named / total``."""
    if total == 0:
        return (0.0, 1.0)
    rate = named / total
    centre = (rate + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(rate * (1 - rate) / total + z * z / (4 * total * total))
    half /= 1 + z * z / total
    return (max(0.0, centre - half), min(1.0, centre + half))


def allowed_named(total: int, far_target: float) -> int:
    """The most strangers that may be named while the rate's upper bound stays in target."""
    named = 0
    while named < total and wilson_interval(named + 1, total)[1] <= far_target:
        named += 1
    return named


@dataclass(frozen=True)
class ProbeScores:
    """What the matcher said about each probe, and who the probe really is.

    ``truth`` is None for a stranger (nobody enrolled); ``candidate`` is the best
    person regardless of threshold and margin (None only for an empty gallery).
    """

    similarity: np.ndarray
    margin: np.ndarray
    candidate: list[str | None]
    truth: list[str | None]

    def __post_init__(self) -> None:
        sizes = {len(self.similarity), len(self.margin), len(self.candidate), len(self.truth)}
        if len(sizes) != 1:
            raise ValueError("probe score arrays must have the same length")

    @property
    def stranger(self) -> np.ndarray:
        return np.array([t is None for t in self.truth], dtype=bool)

    @property
    def correct_candidate(self) -> np.ndarray:
        return np.array(
            [t is not None and c == t for c, t in zip(self.candidate, self.truth, strict=True)],
            dtype=bool,
        )


@dataclass(frozen=True)
class OpenSetReport:
    """Rates at one (threshold, margin) setting; rates are fractions in [0, 1]."""

    threshold: float
    margin: float
    enrolled_probes: int
    stranger_probes: int
    rank1: float
    enrolled_named_correctly: float
    enrolled_named_wrongly: float
    strangers_named: float


def named(scores: ProbeScores, threshold: float, margin: float) -> np.ndarray:
    """Which probes the matcher would name (as anybody) at this setting."""
    return (scores.similarity >= threshold) & (scores.margin >= margin)


def _rate(count: int | np.integer, total: int) -> float:
    return float(count) / total if total else float("nan")


def evaluate(scores: ProbeScores, threshold: float, margin: float) -> OpenSetReport:
    accepted = named(scores, threshold, margin)
    stranger = scores.stranger
    enrolled = ~stranger
    correct = scores.correct_candidate
    n_enrolled = int(enrolled.sum())
    return OpenSetReport(
        threshold=threshold,
        margin=margin,
        enrolled_probes=n_enrolled,
        stranger_probes=int(stranger.sum()),
        rank1=_rate(correct[enrolled].sum(), n_enrolled),
        enrolled_named_correctly=_rate((accepted & correct)[enrolled].sum(), n_enrolled),
        enrolled_named_wrongly=_rate((accepted & ~correct)[enrolled].sum(), n_enrolled),
        strangers_named=_rate(accepted[stranger].sum(), int(stranger.sum())),
    )


def threshold_for_far(
    stranger_similarity: np.ndarray, stranger_margin: np.ndarray, target_far: float, margin: float
) -> float | None:
    """The lowest threshold (on a 0.001 grid) naming at most ``target_far`` of the strangers.

    None when no stranger passes the margin at all, so any threshold meets the target.
    With fewer than ``1 / target_far`` strangers the target cannot be resolved and the
    threshold names none of them.
    """
    if not 0.0 <= target_far < 1.0:
        raise ValueError(f"target false-accept rate {target_far} must be in [0, 1)")
    contenders = np.sort(np.asarray(stranger_similarity)[np.asarray(stranger_margin) >= margin])
    allowed = math.floor(target_far * len(stranger_similarity) + 1e-9)
    if len(contenders) <= allowed:
        return None
    # Strictly above the (allowed + 1)-th highest stranger similarity.
    highest_refused = float(contenders[::-1][allowed])
    steps = math.floor(highest_refused / THRESHOLD_STEP + 1e-9) + 1
    return round(steps * THRESHOLD_STEP, 6)


def leave_one_out_scores(
    vectors: np.ndarray, person_index: np.ndarray, names: list[str]
) -> ProbeScores:
    """Each enrolled sample probed against the gallery without it (mean matching).

    An estimate of how often enrolled people are named, from the gallery alone: the
    sample's own person is represented by the normalised mean of their other samples;
    a person with a single sample has nothing left to match and counts as missed.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    n_people = len(names)
    sums = np.zeros((n_people, vectors.shape[1] if vectors.ndim == 2 else 0), dtype=np.float32)
    np.add.at(sums, person_index, vectors)
    means = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    per_person = vectors @ means.T
    rows = np.arange(len(vectors))
    own = sums[person_index] - vectors
    own_norm = np.linalg.norm(own, axis=1)
    own_sim = np.einsum("ij,ij->i", vectors, own) / np.maximum(own_norm, 1e-12)
    per_person[rows, person_index] = np.where(own_norm > 1e-6, own_sim, -1.0)
    if n_people > 1:
        order = np.argsort(-per_person, axis=1)
        best, second = order[:, 0], per_person[rows, order[:, 1]]
    else:
        best, second = np.zeros(len(vectors), dtype=np.int64), np.zeros(len(vectors))
    similarity = per_person[rows, best]
    return ProbeScores(
        similarity=similarity.astype(np.float32),
        margin=(similarity - second).astype(np.float32),
        candidate=[names[int(i)] for i in best],
        truth=[names[int(i)] for i in person_index],
    )


@dataclass(frozen=True)
class DomainRate:
    """Strangers of one source named at a threshold, with the rate's 95% interval."""

    domain: str
    faces: int
    named: int

    @property
    def rate(self) -> float:
        return self.named / self.faces if self.faces else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.named, self.faces)


def domain_rates(
    domains: dict[str, ProbeScores], threshold: float, margin: float
) -> list[DomainRate]:
    """Each stranger domain's named count at this setting."""
    return [
        DomainRate(name, len(scores.similarity), int(named(scores, threshold, margin).sum()))
        for name, scores in domains.items()
    ]


def threshold_for_domains(
    domains: dict[str, ProbeScores], target_far: float, margin: float
) -> float | None:
    """The lowest threshold at which every domain's 95% upper bound of strangers named stays
    within ``target_far``: the worst domain decides (a threshold does not transfer across
    photo sources). None when no domain has a stranger near anyone."""
    chosen: list[float] = []
    for scores in domains.values():
        total = len(scores.similarity)
        if total == 0:
            continue
        allowed = allowed_named(total, target_far)
        found = threshold_for_far(scores.similarity, scores.margin, allowed / total, margin)
        if found is not None:
            chosen.append(found)
    return max(chosen) if chosen else None


@dataclass(frozen=True)
class DoorCalibration:
    """A door's identification threshold and what it does to strangers and the household."""

    threshold: float
    found: bool  # False: no stranger came near anyone, so the fallback threshold was kept
    target_far: float
    margin: float
    stranger_faces: int
    strangers_named: float
    enrolled_samples: int
    enrolled_named_correctly: float  # leave-one-out, from the gallery alone
    # Each source of strangers (a folder) at the threshold: the worst one chose it.
    domains: tuple[DomainRate, ...] = ()

    @property
    def resolvable(self) -> bool:
        """Enough stranger faces for the target to mean something (one named is < target)."""
        return (
            min((d.faces for d in self.domains), default=self.stranger_faces) * (self.target_far)
            >= 1.0
        )


def calibrate_door(
    strangers: dict[str, ProbeScores],
    household: ProbeScores,
    target_far: float,
    margin: float,
    fallback_threshold: float,
) -> DoorCalibration:
    """The lowest threshold meeting ``target_far`` on every source of strangers' faces (the
    worst source decides), with its effects on each and on the household.

    ``household`` holds the enrolled samples' leave-one-out scores
    (:func:`leave_one_out_scores`).
    """
    found = [
        threshold_for_far(scores.similarity, scores.margin, target_far, margin)
        for scores in strangers.values()
    ]
    chosen = max((t for t in found if t is not None), default=None)
    threshold = fallback_threshold if chosen is None else chosen
    enrolled = evaluate(household, threshold, margin)
    domains = tuple(domain_rates(strangers, threshold, margin))
    faces = sum(d.faces for d in domains)
    return DoorCalibration(
        threshold=threshold,
        found=chosen is not None,
        target_far=target_far,
        margin=margin,
        stranger_faces=faces,
        strangers_named=sum(d.named for d in domains) / faces if faces else float("nan"),
        enrolled_samples=enrolled.enrolled_probes,
        enrolled_named_correctly=enrolled.enrolled_named_correctly,
        domains=domains,
    )
