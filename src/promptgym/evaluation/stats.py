"""Paired statistics for two prompts scored on the same examples.

Every comparison promptgym reports is paired: both prompts answered the same examples, so the
per-example differences carry the signal and the examples' own difficulty cancels out. 0/1 metrics
use the exact McNemar test (a binomial test on the examples where exactly one prompt was right);
graded metrics a paired bootstrap of the mean difference; continuous soft evidence (a choice
option's probability or margin) the Wilcoxon signed-rank test. Intervals are percentile bootstrap
intervals of the mean difference. The power functions say how large a gain a test of ``n`` pairs
would have noticed (the report's "a gain under +X would not have been noticed"). scipy does the
arithmetic. ``betting_wealth`` is the one test here that stays valid when looked at after every
example (sequential final selection).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, Sequence

import math
import warnings

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


def signed_rank_p(a: Sequence[float], b: Sequence[float], alternative: Alternative = "greater") -> float:
    """Wilcoxon signed-rank p-value for "B's per-example values exceed A's" (final selection on a
    soft statistic).

    Why this test: under the null that the two prompts are interchangeable, each example's
    difference is as likely positive as negative (the sign-flip symmetry McNemar also rests on), and
    the signed-rank test is exact under it for the dev sizes used (scipy's exact distribution up to 50
    non-zero differences without ties; the normal approximation beyond). Ranks make it robust to the
    heavy tails of log-probability margins, where one example at -30 would swing a paired t-test or
    a bootstrap of the mean, and its efficiency against the t-test is still 3/pi (0.955) on normal
    data. Zero differences (both prompts gave the same answer) are dropped, as McNemar drops
    concordant pairs."""
    if len(a) != len(b):
        raise ValueError(f"paired values differ in length: {len(a)} and {len(b)}")
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    d = d[d != 0]  # dropped here, so scipy's exact distribution applies to the rest
    if len(d) == 0:
        return 1.0
    from scipy import stats as scipy_stats

    with warnings.catch_warnings():  # scipy warns that a handful of pairs is few: the exact test copes
        warnings.simplefilter("ignore")
        res = scipy_stats.wilcoxon(d, alternative=alternative)
    return float(res.pvalue)


def share_better(a: Sequence[float], b: Sequence[float], seed: int = 0) -> float:
    """The share of ``RESAMPLES`` paired bootstrap resamples of the examples in which B's mean is
    above A's (strictly; a tie counts as not better). Held-out evidence in resampling terms, not a
    Bayesian posterior: about the chance that B would again come out ahead on another sample of the
    same size, given these examples."""
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if len(d) == 0:
        return 0.0
    rng = np.random.default_rng(seed)
    above = 0
    for start in range(0, RESAMPLES, 1000):  # in chunks: a large test split stays small in memory
        size = min(1000, RESAMPLES - start)
        above += int((d[rng.integers(0, len(d), size=(size, len(d)))].mean(axis=1) > 0).sum())
    return above / RESAMPLES


def mcnemar_power(n: int, discordance: float, gain: float, alpha: float) -> float:
    """Power of the one-sided exact McNemar test (reject when p < ``alpha``) on ``n`` pairs when a
    share ``discordance`` of them are discordant and B is right on ``gain`` more of them than A.

    Exact, not the normal approximation (dev splits are 10 to 50 examples): the number of discordant
    pairs D ~ Binomial(n, psi) and, given D, B's share of them ~ Binomial(D, (psi + gain) / (2 psi)); the
    power is the sum over D of P(D) x P(B's count reaches the test's critical value for D)."""
    if discordance <= 0 or gain <= 0:
        return 0.0
    gain = min(gain, discordance)
    from scipy import stats as scipy_stats

    d = np.arange(n + 1)
    # smallest count k with P(X >= k | D, 1/2) < alpha: the exact test's critical value for each D
    k = scipy_stats.binom.ppf(1 - alpha, d, 0.5) + 1
    k = np.where(scipy_stats.binom.sf(k - 1, d, 0.5) < alpha, k, k + 1)
    reach = scipy_stats.binom.sf(k - 1, d, (discordance + gain) / (2 * discordance))
    return float(np.sum(scipy_stats.binom.pmf(d, n, discordance) * reach))


def mcnemar_detectable(n: int, discordance: float, alpha: float, power: float = 0.8) -> float | None:
    """The smallest gain (in accuracy) the exact McNemar test on ``n`` pairs detects with ``power``
    at ``alpha``, the discordance held at ``discordance``; None if even B right on every
    discordant pair would not be (too few pairs disagree)."""
    if n <= 0 or discordance <= 0 or mcnemar_power(n, discordance, discordance, alpha) < power:
        return None
    low, high = 0.0, discordance
    for _ in range(40):  # bisection: power grows with the gain
        mid = (low + high) / 2
        low, high = (mid, high) if mcnemar_power(n, discordance, mid, alpha) < power else (low, mid)
    return high


def mcnemar_pairs_needed(gain: float, discordance: float, alpha: float, power: float = 0.8,
                         start: int = 1, most: int = 10**6) -> int | None:
    """About how many pairs the exact McNemar test needs to detect ``gain`` with ``power`` (the
    exact power saw-tooths in n, so "about"): doubling, then bisection. None beyond ``most``."""
    if gain <= 0 or discordance <= 0:
        return None
    low, high = 0, max(start, 1)
    while mcnemar_power(high, discordance, gain, alpha) < power:
        low, high = high, high * 2
        if high > most:
            return None
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if mcnemar_power(mid, discordance, gain, alpha) < power else (low, mid)
    return high


SIGNED_RANK_EFFICIENCY = 3 / math.pi  # Wilcoxon against the t-test on normal data (Pitman ARE)


def shift_detectable(n: int, sd: float, alpha: float, power: float = 0.8, efficiency: float = 1.0) -> float | None:
    """The smallest mean shift of per-example differences a one-sided paired test of ``n`` pairs
    detects with ``power`` at ``alpha``, by the normal approximation: (z_(1-alpha) + z_power) x sd /
    sqrt(n x efficiency). ``efficiency`` is the test's relative to the t-test (3/pi for the
    signed-rank test, 1 for the paired bootstrap of the mean). None without spread or pairs."""
    if n <= 0 or not sd > 0:
        return None
    from scipy import stats as scipy_stats

    z = scipy_stats.norm.ppf(1 - alpha) + scipy_stats.norm.ppf(power)
    return float(z * sd / math.sqrt(n * efficiency))


def shift_pairs_needed(gain: float, sd: float, alpha: float, power: float = 0.8, efficiency: float = 1.0) -> int | None:
    """The pairs ``shift_detectable`` needs to reach ``gain`` (its inverse, rounded up)."""
    if gain <= 0 or not sd > 0:
        return None
    from scipy import stats as scipy_stats

    z = scipy_stats.norm.ppf(1 - alpha) + scipy_stats.norm.ppf(power)
    return int(math.ceil((z * sd / gain) ** 2 / efficiency))


BET_CAP = 0.5  # the largest share of its wealth the bettor stakes on one example (WSR's c = 1/2)


def betting_wealth(d: Sequence[float], cap: float = BET_CAP) -> np.ndarray:
    """An anytime-valid test of "the mean of ``d`` is above 0" by betting (Waudby-Smith & Ramdas
    2023, "Estimating means of bounded random variables by betting", JRSS-B): the wealth after each
    example, ``K_t = prod_{i<=t} (1 + b_i d_i)``, for paired differences ``d_i`` in [-1, 1].

    Why it is valid at every look: the bet ``b_i`` in [0, ``cap``] is chosen from the examples
    before ``i`` only, so under the null (each difference's mean at most 0 given the past) every
    factor has mean at most 1 and ``K`` is a nonnegative supermartingale; by Ville's inequality
    P(K_t >= 1/alpha for some t) <= alpha. So one may look after every example and stop whenever,
    and ``1 / max_t K_t`` is a p-value; ``betting_wealth(-d)`` tests the other way ("below 0").

    The bet is WSR's aGRAPA (their section 5.3, written for differences in [-1, 1]): the
    growth-optimal bet under a quadratic approximation, ``mean / (variance + mean^2)`` of the
    differences seen so far, regularised by one pseudo-example of mean 0 and variance 1 (so the
    first bet is 0) and clipped to [0, ``cap``]. A capped bet keeps each factor at least
    ``1 - cap``: one bad example never ruins the bettor. Against a uniform mixture of fixed bets
    it did as well in a simulation of 0/1 differences (a +0.15 gain, 30% discordant: 19% against 12%
    reached a threshold of 30 within 50 examples, 53% against 56% within 100)."""
    values = np.asarray(d, dtype=float)
    if values.size and (np.abs(values) > 1 + 1e-12).any():
        raise ValueError(f"betting needs differences in [-1, 1], got {values[np.abs(values) > 1][0]:g}")
    if not 0 <= cap < 1:
        raise ValueError(f"the bet cap must be in [0, 1), got {cap}")
    wealth = np.empty(values.size)
    current, total, spread, mean = 1.0, 0.0, 1.0, 0.0
    for t, x in enumerate(values):
        variance = spread / (t + 1)
        bet = min(max(mean / (variance + mean * mean), 0.0), cap)
        current *= 1.0 + bet * x
        wealth[t] = current
        total += x
        mean = total / (t + 2)  # the pseudo-example counts as one
        spread += (x - mean) ** 2
    return wealth
