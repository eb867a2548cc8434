"""DP2O's numbers from class probabilities: the per-input reward, the SUE screening score, and a
rank correlation to check SUE against dev accuracy. Pure numpy; no model calls here.

Arrays: ``probs`` has shape (..., n_examples, n_classes), rows sum to 1; ``gold`` holds the
index of each example's label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_TINY = 1e-12


def margin(probs: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """p_y - max_{c != y} p_c, in [-1, 1]: > 0 exactly when the prediction is right."""
    probs = np.asarray(probs, dtype=np.float64)
    gold = np.broadcast_to(np.asarray(gold), probs.shape[:-1])
    p_gold = np.take_along_axis(probs, gold[..., None], axis=-1)[..., 0]
    others = probs.copy()
    np.put_along_axis(others, gold[..., None], -np.inf, axis=-1)
    return p_gold - others.max(axis=-1)


def entropy_bits(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy of each row, in bits (0 log 0 = 0)."""
    probs = np.asarray(probs, dtype=np.float64)
    return -(probs * np.log2(np.clip(probs, _TINY, 1.0))).sum(axis=-1)


def normalized_entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy in bits divided by log2(n_classes): 1 for a uniform row, 0 for a one-hot row.
    For two classes this is the plain entropy in bits, as in the official reward."""
    n_classes = np.asarray(probs).shape[-1]
    return entropy_bits(probs) / max(np.log2(n_classes), _TINY)


def reward(probs: np.ndarray, gold: np.ndarray, margin_weight: float = 10.0,
           entropy_weight: float = 6.5) -> np.ndarray:
    """DP2O's per-input reward: ``margin_weight * margin + entropy_weight * H(p) / log2(C)``.

    With two classes this equals the released code's ``10 (p_y - p_other) + 6.5 H_2(p)``. The
    entropy is normalised by log2(C) so that with more classes a flat (uninformative) prediction
    cannot out-score a confident right one (with raw bits and 4 classes, a wrong but flat
    prediction would earn more than a certain right one). A negative ``entropy_weight`` turns the
    term into a confidence bonus instead.
    """
    return margin_weight * margin(probs, gold) + entropy_weight * normalized_entropy(probs)


@dataclass(frozen=True)
class SueWeights:
    """Weights of the SUE reconstruction (the published formula is not available)."""

    supervised: float = 10.0    # mean margin (label-using)
    unsupervised: float = 6.5   # mean normalised per-input entropy (label-free, "LocalE")
    global_: float = 0.0        # normalised entropy of the predicted-label histogram ("GlobalE")


def sue(probs: np.ndarray, gold: np.ndarray, weights: SueWeights = SueWeights()) -> np.ndarray:
    """SUE of one candidate (probs (n, C)) or of many at once (probs (k, n, C)) -> scalar or (k,).

    ``SUE = a * mean(margin) + b * mean(H(p)/log2 C) + g * H(histogram of argmax p)/log2 C``:
    with the default weights it is the mean DP2O reward before normalisation. Linear cost: one
    pass over the examples per candidate.
    """
    probs = np.asarray(probs, dtype=np.float64)
    gold = np.broadcast_to(np.asarray(gold), probs.shape[:-1])
    value = (weights.supervised * margin(probs, gold).mean(axis=-1)
             + weights.unsupervised * normalized_entropy(probs).mean(axis=-1))
    if weights.global_:
        n_classes = probs.shape[-1]
        predicted = probs.argmax(axis=-1)
        hist = np.stack([(predicted == c).mean(axis=-1) for c in range(n_classes)], axis=-1)
        value = value + weights.global_ * normalized_entropy(hist)
    return value


def accuracy(probs: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Share of examples whose argmax class is the gold one (last two axes: examples, classes)."""
    probs = np.asarray(probs)
    return (probs.argmax(axis=-1) == np.asarray(gold)).mean(axis=-1)


def rankdata(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties get the average of their ranks (as scipy.stats.rankdata 'average')."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_vals = values[order]
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_vals[end + 1] == sorted_vals[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rank correlation (Pearson on average ranks); None when undefined (n < 3 or a
    constant input)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) != len(y):
        raise ValueError("x and y differ in length")
    if len(x) < 3:
        return None
    rx, ry = rankdata(x), rankdata(y)
    rx -= rx.mean()
    ry -= ry.mean()
    denom = np.sqrt((rx ** 2).sum() * (ry ** 2).sum())
    if denom == 0:
        return None
    return float((rx * ry).sum() / denom)
