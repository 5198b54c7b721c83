"""Verification metrics as pure numpy functions (after InsightFace's eval/verification.py).

Inputs are cosine similarities of pairs and whether each pair is the same person.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VerificationResult:
    """k-fold verification: threshold chosen on k-1 folds, accuracy on the held-out fold."""

    accuracy_mean: float
    accuracy_std: float
    threshold: float
    fold_accuracies: tuple[float, ...]
    fold_thresholds: tuple[float, ...]
    tar_at_far: float
    far_target: float


def accuracy_at(similarities: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """Fraction of pairs classified right when "same" means similarity >= threshold."""
    predicted = similarities >= threshold
    return float(np.mean(predicted == same))


def best_threshold(similarities: np.ndarray, same: np.ndarray) -> float:
    """The threshold maximising accuracy, at the midpoint between neighbouring scores."""
    order = np.argsort(similarities)
    sorted_scores = similarities[order]
    sorted_same = same[order].astype(np.int64)
    # Threshold below index i: pairs [0, i) say "different", [i, n) say "same".
    correct_different = np.concatenate([[0], np.cumsum(1 - sorted_same)])
    correct_same = np.concatenate([np.cumsum(sorted_same[::-1])[::-1], [0]])
    correct = correct_different + correct_same
    candidates = np.concatenate(
        [
            [sorted_scores[0] - 1e-6],
            (sorted_scores[1:] + sorted_scores[:-1]) / 2,
            [sorted_scores[-1] + 1e-6],
        ]
    )
    best = np.flatnonzero(correct == correct.max())
    return float(candidates[best[len(best) // 2]])


def roc_curve(
    similarities: np.ndarray, same: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false accept rate, true accept rate, threshold) for every distinct threshold, descending."""
    order = np.argsort(-similarities, kind="stable")
    scores = similarities[order]
    positives = same[order].astype(np.float64)
    true_accepts = np.cumsum(positives)
    false_accepts = np.cumsum(1.0 - positives)
    distinct = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tar = true_accepts[distinct] / max(1.0, positives.sum())
    far = false_accepts[distinct] / max(1.0, (1.0 - positives).sum())
    return np.r_[0.0, far], np.r_[0.0, tar], np.r_[scores[0] + 1e-6, scores[distinct]]


def tar_at_far(similarities: np.ndarray, same: np.ndarray, far_target: float) -> float:
    """Highest true accept rate whose false accept rate does not exceed the target."""
    far, tar, _ = roc_curve(similarities, same)
    allowed = far <= far_target
    return float(tar[allowed].max()) if np.any(allowed) else 0.0


def kfold_verification(
    similarities: np.ndarray,
    same: np.ndarray,
    folds: np.ndarray | int = 10,
    far_target: float = 1e-3,
) -> VerificationResult:
    """k-fold cross-validated verification accuracy.

    ``folds`` is either a fold id per pair (LFW's pairs.txt defines its folds)
    or a number of contiguous folds. The returned threshold is the mean of the
    per-fold thresholds: the one to deploy.
    """
    similarities = np.asarray(similarities, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    if isinstance(folds, int):
        fold_ids = np.arange(len(similarities)) * folds // max(1, len(similarities))
    else:
        fold_ids = np.asarray(folds)
    accuracies, thresholds = [], []
    for fold in np.unique(fold_ids):
        test = fold_ids == fold
        threshold = best_threshold(similarities[~test], same[~test])
        thresholds.append(threshold)
        accuracies.append(accuracy_at(similarities[test], same[test], threshold))
    return VerificationResult(
        accuracy_mean=float(np.mean(accuracies)),
        accuracy_std=float(np.std(accuracies)),
        threshold=float(np.mean(thresholds)),
        fold_accuracies=tuple(accuracies),
        fold_thresholds=tuple(thresholds),
        tar_at_far=tar_at_far(similarities, same, far_target),
        far_target=far_target,
    )
