"""Paired statistics against values computed by hand."""

from __future__ import annotations

import math

import pytest

from promptgym.evaluation import stats

A = [1, 1, 0, 0, 1, 0, 0, 0]
B = [1, 0, 1, 1, 1, 1, 1, 0]  # B alone right on 4 examples, A alone on 1


def test_exact_mcnemar_is_the_binomial_tail_on_discordant_pairs():
    # P(X >= 4) for X ~ Bin(5, 1/2) = (C(5,4) + C(5,5)) / 32
    assert stats.mcnemar_exact(A, B) == pytest.approx(6 / 32)
    assert stats.mcnemar_exact(A, B, "two-sided") == pytest.approx(12 / 32)
    assert stats.mcnemar_exact(B, A) == pytest.approx(31 / 32)  # P(X >= 1)
    assert stats.mcnemar_exact(A, A) == 1.0  # no discordant pair: no evidence


def test_compare_picks_the_test_that_fits_the_metric():
    binary = stats.compare(A, B)
    assert binary.test == "mcnemar-exact" and binary.n == 8
    assert binary.delta == pytest.approx(6 / 8 - 3 / 8)
    assert binary.low <= binary.delta <= binary.high
    graded = stats.compare([0.5, 0.2, 0.1], [0.6, 0.2, 0.4])
    assert graded.test == "paired-bootstrap"
    with pytest.raises(ValueError, match="length"):
        stats.compare([1, 0], [1])


def test_bootstrap_interval_of_a_constant_difference_is_that_difference():
    assert stats.bootstrap_interval([0, 0, 0], [0.5, 0.5, 0.5]) == (0.5, 0.5)


def test_bootstrap_interval_matches_the_normal_approximation_on_large_samples():
    a = [0.0] * 400
    b = [1.0 if i % 2 else 0.0 for i in range(400)]  # mean difference 0.5, sd 0.5
    low, high = stats.bootstrap_interval(a, b)
    half = 1.96 * 0.5 / math.sqrt(400)
    assert low == pytest.approx(0.5 - half, abs=0.01) and high == pytest.approx(0.5 + half, abs=0.01)


def test_paired_bootstrap_p_is_small_for_a_clear_gain_and_large_for_none():
    base = [0.2, 0.4, 0.3, 0.5, 0.1] * 8
    assert stats.paired_bootstrap_p(base, [x + 0.3 for x in base]) < 0.001
    noise = [0.1, -0.1] * 20
    assert stats.paired_bootstrap_p(base, [x + e for x, e in zip(base, noise)]) > 0.3
    assert stats.paired_bootstrap_p(base, base) == 1.0
    assert stats.paired_bootstrap_p(base, [x + 0.3 for x in base], seed=1) == \
        stats.paired_bootstrap_p(base, [x + 0.3 for x in base], seed=1)


# -- the signed-rank test, the bootstrap share, and power --------------------------------------------------

def test_signed_rank_p_is_the_exact_tail_of_the_rank_sum():
    # differences 1, 2, 3, 4, -5: W+ = 10; P(W+ >= 10) = P(W- <= 5) = 10 of the 32 sign patterns
    a = [0.0] * 5
    assert stats.signed_rank_p(a, [1.0, 2.0, 3.0, 4.0, -5.0]) == pytest.approx(10 / 32)
    assert stats.signed_rank_p(a, [1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(1 / 32)
    assert stats.signed_rank_p([0.0] * 6, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(1 / 32)  # a zero is dropped
    assert stats.signed_rank_p([0.3, 0.4], [0.3, 0.4]) == 1.0  # nothing differs: no evidence


def test_share_better_counts_resamples_in_which_b_is_ahead():
    assert stats.share_better([0, 0, 0], [1, 1, 1]) == 1.0
    assert stats.share_better([1, 1, 1], [0, 0, 0]) == 0.0
    assert stats.share_better([0, 1] * 10, [0, 1] * 10) == 0.0  # a tie is not better
    # one example of two better: a resample is ahead unless it draws only the tied one (1/4)
    assert stats.share_better([0, 0], [1, 0]) == pytest.approx(0.75, abs=0.02)


def _mcnemar_rejections(n, discordance, gain, alpha, runs, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    p_b, p_a = (discordance + gain) / 2, (discordance - gain) / 2
    hits = 0
    for _ in range(runs):
        kind = rng.choice(3, size=n, p=[p_b, p_a, 1 - discordance])
        a, b = (kind == 1).astype(float), (kind == 0).astype(float)
        hits += stats.mcnemar_exact(a, b) < alpha
    return hits / runs


def test_mcnemar_detectable_gain_has_the_power_it_claims_in_a_simulation():
    """30 dev examples, 40% discordant, level 0.1 over 3 finalists: the exact power formula's gain is
    detected by the real test in 80% of 2,000 simulated dev splits (+-3 points), and half of it far less."""
    n, psi, alpha = 30, 0.4, 0.1 / 3
    gain = stats.mcnemar_detectable(n, psi, alpha)
    assert 0.2 < gain < psi
    assert stats.mcnemar_power(n, psi, gain, alpha) == pytest.approx(0.8, abs=1e-6)
    assert _mcnemar_rejections(n, psi, gain, alpha, 2000) == pytest.approx(0.8, abs=0.03)
    assert _mcnemar_rejections(n, psi, gain / 2, alpha, 1000, seed=1) < 0.5
    needed = stats.mcnemar_pairs_needed(gain / 2, psi, alpha, start=n)
    assert 3 * n < needed < 6 * n  # half the gain: about four times the pairs
    assert stats.mcnemar_power(needed, psi, gain / 2, alpha) >= 0.8
    assert stats.mcnemar_detectable(10, 0.05, alpha) is None  # too few disagreements to see anything


def test_shift_detectable_for_the_signed_rank_test_matches_a_simulation():
    import numpy as np

    n, sd, alpha = 40, 0.2, 0.05
    shift = stats.shift_detectable(n, sd, alpha, efficiency=stats.SIGNED_RANK_EFFICIENCY)
    assert shift == pytest.approx((1.6449 + 0.8416) * sd / math.sqrt(n * 3 / math.pi), rel=1e-3)
    rng = np.random.default_rng(2)
    hits = sum(stats.signed_rank_p([0.0] * n, rng.normal(shift, sd, n)) < alpha for _ in range(1000))
    assert hits / 1000 == pytest.approx(0.8, abs=0.04)
    assert stats.shift_pairs_needed(shift / 2, sd, alpha, efficiency=stats.SIGNED_RANK_EFFICIENCY) in range(4 * n - 2, 4 * n + 3)


# -- the betting e-process (sequential final selection) ---------------------------------------------------

def _differences(rng, n: int, gain: float, discordance: float = 0.3):
    """Paired differences of two 0/1 scores: +1 or -1 on a share ``discordance`` of examples, mean ``gain``."""
    import numpy as np

    u = rng.random(n)
    up, down = (discordance + gain) / 2, (discordance - gain) / 2
    return np.where(u < up, 1.0, np.where(u < up + down, -1.0, 0.0))


@pytest.mark.parametrize("null", ["mean 0", "slightly negative", "fair coin", "uniform"])
def test_betting_wealth_looked_at_after_every_example_rejects_a_true_null_at_most_alpha(null):
    """Ville: the wealth's running maximum reaches 1/alpha in at most alpha of the sequences, checked
    after each of 200 examples; at alpha 0.5 too, where a bet that peeked at its example would not hold."""
    import numpy as np

    rng = np.random.default_rng(3)
    draw = {"mean 0": lambda: _differences(rng, 200, 0.0), "slightly negative": lambda: _differences(rng, 200, -0.05),
            "fair coin": lambda: rng.choice([-1.0, 1.0], 200), "uniform": lambda: rng.uniform(-1, 1, 200)}[null]
    runs = 1500
    peaks = np.array([stats.betting_wealth(draw()).max() for _ in range(runs)])
    for alpha in (0.1, 0.5):
        slack = 3 * math.sqrt(alpha * (1 - alpha) / runs)  # Monte-Carlo error, three standard errors
        assert (peaks >= 1 / alpha).mean() <= alpha + slack


def test_betting_wealth_finds_a_real_gain_with_the_power_it_documents():
    """+0.15, 30% discordant: the threshold 30 (3 finalists at 0.1) is reached within 100 examples in
    about 53% of sequences (the docstring's figure), 1/0.1 within 200 in about 95%, and never within 8."""
    import numpy as np

    rng = np.random.default_rng(4)
    peaks = {n: np.array([stats.betting_wealth(_differences(rng, n, 0.15)).max() for _ in range(1000)])
             for n in (8, 100, 200)}
    assert (peaks[100] >= 30).mean() == pytest.approx(0.53, abs=0.05)
    assert (peaks[200] >= 10).mean() > 0.9
    assert (peaks[8] >= 30).mean() == 0.0  # 1.5 ** 8 < 30: a capped bet cannot get there sooner


def test_betting_wealth_bets_nothing_first_never_loses_more_than_half_and_checks_its_input():
    wealth = stats.betting_wealth([1.0, -1.0, -1.0, -1.0, 1.0, 1.0])
    assert wealth[0] == 1.0  # the first bet is 0: nothing is known yet
    assert all(w >= 0.5 ** (i + 1) for i, w in enumerate(wealth))
    assert stats.betting_wealth([-1.0] * 20)[-1] == 1.0  # it never bets on a gain it has not seen
    assert stats.betting_wealth([1.0] * 20)[-1] > 30 and stats.betting_wealth([]).size == 0
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        stats.betting_wealth([0.5, 1.5])
