"""Identification decisions, both matching strategies, reloads and the threshold's source."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device.errors import ConfigError, GalleryError, ModelError
from device.identity.gallery import EmbeddingRows, Gallery, Sample
from device.identity.matching import (
    NO_MATCH_SIMILARITY,
    GalleryIndex,
    Matcher,
    Strategy,
    resolve_threshold,
)

SHA = "c" * 64
OTHER_SHA = "d" * 64


def unit(vector: np.ndarray) -> np.ndarray:
    normed: np.ndarray = vector / np.linalg.norm(vector, axis=-1, keepdims=True)
    return normed.astype(np.float32)


def axis(i: int, dim: int = 8) -> np.ndarray:
    vector = np.zeros(dim, dtype=np.float32)
    vector[i] = 1.0
    return vector


def rows(people: dict[str, list[np.ndarray]]) -> EmbeddingRows:
    names = list(people)
    vectors = [v for name in names for v in people[name]]
    index = [i for i, name in enumerate(names) for _ in people[name]]
    return EmbeddingRows(names, np.array(index), np.stack(vectors).astype(np.float32))


def test_accepts_only_above_threshold_and_margin() -> None:
    index = GalleryIndex(rows({"a": [axis(0)], "b": [axis(1)]}), Strategy.BEST_SAMPLE)
    close_to_a = unit(axis(0) * 0.9 + axis(2) * 0.3)
    match = index.identify(close_to_a, threshold=0.5, margin=0.1)
    assert match.person == "a" and match.known
    assert match.similarity == pytest.approx(0.9 / np.hypot(0.9, 0.3), abs=1e-6)
    assert match.margin == pytest.approx(match.similarity, abs=1e-6)
    assert not index.identify(close_to_a, threshold=0.99, margin=0.1).known
    between = unit(axis(0) + axis(1) * 0.95)
    ambiguous = index.identify(between, threshold=0.5, margin=0.1)
    assert ambiguous.person is None and ambiguous.candidate == "a"
    assert ambiguous.margin == pytest.approx(ambiguous.similarity - float(between[1]), abs=1e-6)


def test_best_sample_and_mean_score_people_differently() -> None:
    # "a" has one sample right on the probe and one far away; "b" two moderately close.
    probe = axis(0)
    people = {
        "a": [axis(0), axis(3)],
        "b": [unit(axis(0) * 0.8 + axis(1) * 0.6), unit(axis(0) * 0.8 + axis(2) * 0.6)],
    }
    best = GalleryIndex(rows(people), Strategy.BEST_SAMPLE).person_similarities(probe)
    mean = GalleryIndex(rows(people), Strategy.MEAN).person_similarities(probe)
    np.testing.assert_allclose(best, [1.0, 0.8], atol=1e-6)
    np.testing.assert_allclose(mean, [np.sqrt(0.5), 0.8 / np.sqrt(0.64 + 0.18)], atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(1, 5), min_size=1, max_size=6),
    seed=st.integers(0, 2**31 - 1),
)
def test_person_scores_equal_brute_force(counts: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    people = {f"p{i}": list(unit(rng.standard_normal((n, 16)))) for i, n in enumerate(counts)}
    probe = unit(rng.standard_normal(16))
    best = GalleryIndex(rows(people), Strategy.BEST_SAMPLE).person_similarities(probe)
    mean = GalleryIndex(rows(people), Strategy.MEAN).person_similarities(probe)
    for i, vectors in enumerate(people.values()):
        stack = np.stack(vectors)
        assert best[i] == pytest.approx(float(np.max(stack @ probe)), abs=1e-5)
        assert mean[i] == pytest.approx(float(unit(stack.sum(axis=0)) @ probe), abs=1e-5)
    match = GalleryIndex(rows(people), Strategy.MEAN).identify(probe, -1.0, 0.0)
    assert match.candidate == f"p{int(np.argmax(mean))}"
    ordered = np.sort(mean)[::-1]
    expected_margin = ordered[0] - (ordered[1] if len(ordered) > 1 else 0.0)
    assert match.margin == pytest.approx(float(expected_margin), abs=1e-5)


def test_empty_gallery_names_nobody() -> None:
    empty = EmbeddingRows([], np.zeros(0, dtype=np.int64), np.zeros((0, 8), dtype=np.float32))
    for strategy in Strategy:
        match = GalleryIndex(empty, strategy).identify(axis(0), 0.0, 0.0)
        assert match.person is None and match.similarity == NO_MATCH_SIMILARITY


def test_matcher_loads_only_its_model_and_sees_other_connections(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    with Gallery.open(path) as writer, Gallery.open(path) as reader:
        writer.add_person_samples("Anna", [Sample(axis(0), 1.0, "t")], SHA, append=False)
        writer.add_person_samples("Old", [Sample(axis(1), 1.0, "t")], OTHER_SHA, append=False)
        matcher = Matcher.from_gallery(reader, SHA, threshold=0.5, margin=0.05)
        assert matcher.people == ["Anna"]
        assert not matcher.identify(axis(1)).known
        assert matcher.refresh() is False
        writer.add_person_samples("Bob", [Sample(axis(1), 1.0, "t")], SHA, append=False)
        assert matcher.refresh() is True
        assert matcher.identify(axis(1)).person == "Bob"
        writer.touch_last_seen("Bob", 5.0)
        assert matcher.refresh() is False
        writer.remove_person("Anna")
        assert matcher.refresh() is True
        assert matcher.people == ["Bob"]
        assert not matcher.identify(axis(0)).known


def test_resolve_threshold_prefers_override_and_refuses_nothing() -> None:
    assert resolve_threshold(0.4, None) == 0.4
    assert resolve_threshold(0.4, 0.55) == 0.55
    assert resolve_threshold(None, 0.3) == 0.3
    with pytest.raises(ModelError, match="identification_threshold"):
        resolve_threshold(None, None)
    with pytest.raises(ConfigError):
        resolve_threshold(0.4, 1.5)


def test_refresh_reports_a_damaged_gallery_as_one_line(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    with Gallery.open(path) as gallery:
        gallery.add_person_samples("Anna", [Sample(axis(0), 1.0, "t")], SHA, append=False)
        matcher = Matcher.from_gallery(gallery, SHA, threshold=0.5, margin=0.05)
        with sqlite3.connect(path) as other:
            other.execute("DROP TABLE state")
        with pytest.raises(GalleryError, match="cannot read gallery"):
            matcher.refresh()
        assert matcher.identify(axis(0)).person == "Anna"
