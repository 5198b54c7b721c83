"""Open-set identification: which enrolled person is this embedding, if anyone.

A probe is compared with every person of the current model by cosine
similarity (embeddings are L2-normalised, so a dot product). A person's score
is the similarity to the normalised mean of their samples (``mean``, the
default) or the best over their samples (``best-sample``). Mean was chosen by
measurement on celebrity112 (docs/gallery.md): at the same rate of strangers
named it names more enrolled faces, and it is faster (one row per person). The best person is named only when their score reaches the
threshold AND beats the runner-up by the margin; otherwise the face is unknown.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from device.errors import ConfigError, ModelError
from device.identity.gallery import EmbeddingRows, Gallery

# With a single person enrolled there is no runner-up: an unrelated face scores about 0.
NO_RUNNER_UP = 0.0
# What an empty gallery answers: nobody, with the lowest possible cosine.
NO_MATCH_SIMILARITY = -1.0


class Strategy(enum.StrEnum):
    BEST_SAMPLE = "best-sample"
    MEAN = "mean"


@dataclass(frozen=True)
class Match:
    """The answer for one probe: the named person (None: unknown) and the evidence."""

    person: str | None
    similarity: float
    margin: float
    candidate: str | None = None

    @property
    def known(self) -> bool:
        return self.person is not None


class GalleryIndex:
    """The embeddings of one model, laid out for fast matching."""

    def __init__(self, rows: EmbeddingRows, strategy: Strategy = Strategy.MEAN) -> None:
        self.names = rows.names
        self.strategy = strategy
        vectors = np.ascontiguousarray(rows.vectors, dtype=np.float32)
        if strategy is Strategy.MEAN and len(vectors):
            sums = np.zeros((len(self.names), vectors.shape[1]), dtype=np.float32)
            np.add.at(sums, rows.person_index, vectors)
            norms = np.linalg.norm(sums, axis=1, keepdims=True)
            self.vectors = sums / np.maximum(norms, 1e-12)
            self.starts = np.arange(len(self.names))
        else:
            self.vectors = vectors
            # Rows of a person are contiguous: each person's block starts where the index changes.
            changes = np.flatnonzero(np.diff(rows.person_index)) + 1
            self.starts = np.concatenate(([0], changes)) if len(vectors) else changes

    def person_similarities(self, probe: np.ndarray) -> np.ndarray:
        """Cosine of the probe to each person, in ``names`` order."""
        sims: np.ndarray = self.vectors @ np.asarray(probe, dtype=np.float32)
        if self.strategy is Strategy.MEAN:
            return sims
        best: np.ndarray = np.maximum.reduceat(sims, self.starts)
        return best

    def identify(self, probe: np.ndarray, threshold: float, margin: float) -> Match:
        if not self.names:
            return Match(None, NO_MATCH_SIMILARITY, 0.0)
        scores = self.person_similarities(probe)
        best, runner_up = top_two(scores)
        similarity = float(scores[best])
        second = NO_RUNNER_UP if runner_up is None else float(scores[runner_up])
        gap = similarity - second
        name = self.names[best]
        accepted = similarity >= threshold and gap >= margin
        return Match(name if accepted else None, similarity, gap, candidate=name)


def top_two(scores: np.ndarray) -> tuple[int, int | None]:
    """Indices of the highest and second-highest scores (None when there is one)."""
    if len(scores) == 1:
        return 0, None
    pair = np.argpartition(scores, -2)[-2:]
    first, second = int(pair[1]), int(pair[0])
    if scores[second] > scores[first]:
        first, second = second, first
    return first, second


class Matcher:
    """Identifies probes against a gallery's rows of one model; reloads when the gallery changes."""

    def __init__(
        self,
        gallery: Gallery,
        embedding_key: str,
        threshold: float,
        margin: float,
        strategy: Strategy = Strategy.MEAN,
    ) -> None:
        self.gallery = gallery
        self.embedding_key = embedding_key
        self.threshold = threshold
        self.margin = margin
        self.strategy = strategy
        self._generation = gallery.generation()
        self.index = GalleryIndex(gallery.embeddings(embedding_key), strategy)

    @classmethod
    def from_gallery(
        cls,
        gallery: Gallery,
        embedding_key: str,
        threshold: float,
        margin: float,
        strategy: Strategy = Strategy.MEAN,
    ) -> Matcher:
        return cls(gallery, embedding_key, threshold, margin, strategy)

    @property
    def people(self) -> list[str]:
        return list(self.index.names)

    def identify(self, embedding: np.ndarray) -> Match:
        return self.index.identify(embedding, self.threshold, self.margin)

    @property
    def generation(self) -> int:
        """The gallery generation the loaded embeddings come from."""
        return self._generation

    def refresh(self) -> bool:
        """Reload if anyone (this or another process) changed the gallery since the last load."""
        generation = self.gallery.generation()
        if generation == self._generation:
            return False
        self.index = GalleryIndex(self.gallery.embeddings(self.embedding_key), self.strategy)
        self._generation = generation
        return True


def resolve_threshold(manifest_threshold: float | None, override: float | None) -> float:
    """The identification threshold: the config's override, else the model manifest's."""
    if override is not None:
        if not -1.0 <= override <= 1.0:
            raise ConfigError(f"[model] threshold {override} is not a cosine in [-1, 1]")
        return float(override)
    if manifest_threshold is None:
        raise ModelError(
            "the model's manifest has no identification_threshold; set [model] threshold "
            "in the config or run 'peephole calibrate'"
        )
    return float(manifest_threshold)
