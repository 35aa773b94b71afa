"""Binary-classification metrics in NumPy (exact, no streaming approximations): accuracy at 0.5,
ROC AUC (Mann-Whitney, ties counted half), log loss. The trainer writes them as JSON; a sweep
compares trials by them."""

from __future__ import annotations

import numpy as np

EPSILON = 1e-7  # probabilities are clipped to [EPSILON, 1 - EPSILON] before the log, as Keras does


def accuracy(labels, probabilities, threshold: float = 0.5) -> float:
    labels, probabilities = _flat(labels), _flat(probabilities)
    return float(np.mean((probabilities >= threshold) == (labels >= 0.5)))


def log_loss(labels, probabilities) -> float:
    labels, p = _flat(labels), np.clip(_flat(probabilities), EPSILON, 1 - EPSILON)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def auc(labels, scores) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a random
    negative (ties count one half). NaN when only one class is present."""
    labels, scores = _flat(labels) >= 0.5, _flat(scores)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def binary_classification(labels, probabilities) -> dict[str, float]:
    return {
        "accuracy": accuracy(labels, probabilities),
        "auc": auc(labels, probabilities),
        "log_loss": log_loss(labels, probabilities),
    }


def _flat(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1)
