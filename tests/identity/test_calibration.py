"""Open-set metrics and the threshold chosen for a false-accept target."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.identity.calibration import (
    ProbeScores,
    evaluate,
    leave_one_out_scores,
    named,
    threshold_for_far,
)
from device.identity.gallery import EmbeddingRows
from device.identity.matching import GalleryIndex, Strategy


def test_evaluate_counts_each_outcome() -> None:
    scores = ProbeScores(
        similarity=np.array([0.9, 0.6, 0.45, 0.3, 0.7, 0.2]),
        margin=np.array([0.5, 0.02, 0.3, 0.2, 0.4, 0.1]),
        candidate=["a", "b", "c", "a", "b", "a"],
        truth=["a", "b", "a", "a", None, None],
    )
    report = evaluate(scores, threshold=0.4, margin=0.05)
    assert report.enrolled_probes == 4 and report.stranger_probes == 2
    assert report.rank1 == 0.75
    # "a"(0.9) named right; "b" fails the margin; "c" named wrongly; 0.3 below threshold.
    assert report.enrolled_named_correctly == 0.25
    assert report.enrolled_named_wrongly == 0.25
    assert report.strangers_named == 0.5


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    count=st.integers(1, 400),
    target=st.sampled_from([0.0, 0.005, 0.01, 0.05, 0.2]),
    margin=st.sampled_from([0.0, 0.05]),
)
def test_threshold_meets_the_target_and_is_the_lowest_on_its_grid(
    seed: int, count: int, target: float, margin: float
) -> None:
    rng = np.random.default_rng(seed)
    similarity = rng.uniform(-0.2, 0.8, count)
    gaps = rng.uniform(0.0, 0.3, count)
    threshold = threshold_for_far(similarity, gaps, target, margin)
    passes_margin = gaps >= margin
    if threshold is None:
        assert passes_margin.sum() <= np.floor(target * count + 1e-9)
        return
    accepted = (similarity >= threshold) & passes_margin
    assert accepted.mean() <= target + 1e-12
    lower = round(threshold - 0.001, 6)
    assert ((similarity >= lower) & passes_margin).mean() > target


def test_threshold_rejects_an_impossible_target() -> None:
    with pytest.raises(ValueError):
        threshold_for_far(np.array([0.5]), np.array([0.5]), 1.0, 0.0)


def test_named_needs_both_threshold_and_margin() -> None:
    scores = ProbeScores(
        np.array([0.5, 0.5, 0.3]), np.array([0.1, 0.01, 0.2]), ["a"] * 3, [None] * 3
    )
    assert named(scores, 0.4, 0.05).tolist() == [True, False, False]


def test_leave_one_out_matches_a_gallery_without_the_sample() -> None:
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((3, 32))
    vectors, index = [], []
    for person, count in enumerate([4, 3, 1]):
        for _ in range(count):
            vectors.append(centres[person] + 0.8 * rng.standard_normal(32))
            index.append(person)
    stack = np.stack(vectors).astype(np.float32)
    stack /= np.linalg.norm(stack, axis=1, keepdims=True)
    names = ["a", "b", "c"]
    scores = leave_one_out_scores(stack, np.array(index), names)
    for i in range(len(stack)):
        keep = np.arange(len(stack)) != i
        rest = EmbeddingRows(
            [n for p, n in enumerate(names) if (np.array(index)[keep] == p).any()],
            np.unique(np.array(index)[keep], return_inverse=True)[1],
            stack[keep],
        )
        match = GalleryIndex(rest, Strategy.MEAN).identify(stack[i], -1.0, 0.0)
        if names[index[i]] in rest.names:
            assert scores.candidate[i] == match.candidate
            assert scores.similarity[i] == pytest.approx(match.similarity, abs=1e-5)
            assert scores.margin[i] == pytest.approx(match.margin, abs=1e-5)
    lonely = index.index(2)
    assert scores.candidate[lonely] != "c"
