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
