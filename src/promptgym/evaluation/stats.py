"""Paired statistics for two prompts scored on the same examples.

Every comparison promptgym reports is paired: both prompts answered the same examples, so the
per-example differences carry the signal and the examples' own difficulty cancels out. 0/1 metrics
use the exact McNemar test (a binomial test on the examples where exactly one prompt was right);
graded metrics a paired bootstrap of the mean difference. Intervals are percentile bootstrap
intervals of the mean difference. scipy does the arithmetic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, Sequence

import numpy as np

Alternative = Literal["greater", "two-sided"]
RESAMPLES = 10_000


@dataclass(frozen=True)
class PairedComparison:
    """B against A on the same ``n`` examples; ``delta`` is mean(B) - mean(A)."""

    n: int
    mean_a: float
    mean_b: float
    delta: float
    low: float  # the delta's 95% paired bootstrap interval
    high: float
    p_value: float
    test: str  # "mcnemar-exact" | "paired-bootstrap"
    alternative: str

    def as_dict(self) -> dict:
        return asdict(self)


def is_binary(*score_lists: Sequence[float]) -> bool:
    return all(s in (0.0, 1.0) for scores in score_lists for s in scores)


def mcnemar_exact(a: Sequence[float], b: Sequence[float], alternative: Alternative = "greater") -> float:
    """Exact McNemar p-value for "B is right more often than A" (or any difference, two-sided)."""
    b_only = sum(1 for x, y in zip(a, b) if y > x)
    a_only = sum(1 for x, y in zip(a, b) if x > y)
    if b_only + a_only == 0:
        return 1.0
    from scipy import stats as scipy_stats  # imported on use: the CLI starts without it

    return float(scipy_stats.binomtest(b_only, b_only + a_only, 0.5, alternative=alternative).pvalue)


def paired_bootstrap_p(a: Sequence[float], b: Sequence[float], alternative: Alternative = "greater",
                       seed: int = 0) -> float:
    """Bootstrap p-value of the mean difference under the null of no difference (the resampled
    differences are centred, as in Efron & Tibshirani's bootstrap test); (count + 1) / (R + 1)."""
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if len(d) == 0 or np.all(d == d[0]) and d[0] == 0:
        return 1.0
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(RESAMPLES, len(d)))].mean(axis=1) - d.mean()
    observed = d.mean()
    extreme = means >= observed if alternative == "greater" else np.abs(means) >= abs(observed)
    return float((extreme.sum() + 1) / (RESAMPLES + 1))


def bootstrap_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(B - A) over the examples."""
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if len(d) == 0:
        return (0.0, 0.0)
    if np.all(d == d[0]):
        return (float(d[0]), float(d[0]))
    from scipy import stats as scipy_stats

    res = scipy_stats.bootstrap((d,), np.mean, confidence_level=level, n_resamples=RESAMPLES,
                                method="percentile", random_state=np.random.default_rng(seed))
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


def paired_p(a: Sequence[float], b: Sequence[float], alternative: Alternative = "greater", seed: int = 0) -> float:
    """The p-value of the paired test that fits the metric (exact McNemar for 0/1 scores)."""
    if len(a) != len(b):
        raise ValueError(f"paired scores differ in length: {len(a)} and {len(b)}")
    if is_binary(a, b):
        return mcnemar_exact(a, b, alternative)
    return paired_bootstrap_p(a, b, alternative, seed)


def compare(a: Sequence[float], b: Sequence[float], alternative: Alternative = "greater",
            seed: int = 0) -> PairedComparison:
    """B against A: the delta, its interval and the paired test that fits the metric."""
    p = paired_p(a, b, alternative, seed)
    binary = is_binary(a, b)
    low, high = bootstrap_interval(a, b, seed=seed)
    mean_a = float(np.mean(a)) if len(a) else 0.0
    mean_b = float(np.mean(b)) if len(b) else 0.0
    return PairedComparison(n=len(a), mean_a=mean_a, mean_b=mean_b, delta=mean_b - mean_a, low=low,
                            high=high, p_value=p, test="mcnemar-exact" if binary else "paired-bootstrap",
                            alternative=alternative)
