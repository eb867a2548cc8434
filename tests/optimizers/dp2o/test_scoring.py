"""DP2O's reward, SUE and rank correlation on hand-computed probabilities."""

from __future__ import annotations

import math

import numpy as np
import pytest

from promptgym.optimizers.dp2o.scoring import (SueWeights, accuracy, entropy_bits, margin, normalized_entropy,
                                               rankdata, reward, spearman, sue)


def test_margin_is_gold_minus_best_other():
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.4, 0.4, 0.2]])
    gold = np.array([0, 2, 1])
    assert margin(probs, gold) == pytest.approx([0.5, -0.2, 0.0])


def test_entropy_in_bits_and_normalised():
    assert entropy_bits(np.array([0.5, 0.5])) == pytest.approx(1.0)
    assert entropy_bits(np.array([1.0, 0.0])) == pytest.approx(0.0)
    assert entropy_bits(np.full(4, 0.25)) == pytest.approx(2.0)
    assert normalized_entropy(np.full(4, 0.25)) == pytest.approx(1.0)


def test_binary_reward_equals_the_released_formula():
    # 10 p_y - 10 p_other - 6.5 p_y log2 p_y - 6.5 p_other log2 p_other
    for p_y in (0.05, 0.3, 0.5, 0.8, 0.99):
        probs = np.array([[p_y, 1 - p_y]])
        expected = (10 * p_y - 10 * (1 - p_y) - 6.5 * p_y * math.log2(p_y)
                    - 6.5 * (1 - p_y) * math.log2(1 - p_y))
        assert reward(probs, np.array([0]))[0] == pytest.approx(expected)


def test_four_class_reward_hand_computed():
    probs = np.array([[0.4, 0.3, 0.2, 0.1]])
    h = -(0.4 * math.log2(0.4) + 0.3 * math.log2(0.3) + 0.2 * math.log2(0.2) + 0.1 * math.log2(0.1))
    assert reward(probs, np.array([1]))[0] == pytest.approx(10 * (0.3 - 0.4) + 6.5 * h / 2)
    assert reward(probs, np.array([0]), margin_weight=1.0, entropy_weight=0.0)[0] == pytest.approx(0.1)


def test_normalised_entropy_keeps_a_certain_right_answer_above_a_flat_wrong_one():
    right = np.array([[1.0, 0.0, 0.0, 0.0]])
    flat_wrong = np.array([[0.1, 0.3, 0.3, 0.3]])
    assert reward(right, np.array([0]))[0] > reward(flat_wrong, np.array([0]))[0]


def test_sue_hand_computed():
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.5, 0.5]])
    gold = np.array([0, 0, 1])
    margins = [0.8, -0.2, 0.0]
    ent = [-(0.9 * math.log2(0.9) + 0.1 * math.log2(0.1)), -(0.4 * math.log2(0.4) + 0.6 * math.log2(0.6)), 1.0]
    expected = 10 * np.mean(margins) + 6.5 * np.mean(ent)
    assert sue(probs, gold) == pytest.approx(expected)
    assert sue(probs, gold, SueWeights(1.0, 0.0)) == pytest.approx(np.mean(margins))
    # GlobalE: predictions are class 0, 1, and 0 (ties go to the first) -> histogram (2/3, 1/3)
    glob = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    assert sue(probs, gold, SueWeights(0.0, 0.0, 1.0)) == pytest.approx(glob)


def test_sue_of_many_candidates_at_once_matches_one_by_one():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=(5, 7))
    gold = rng.integers(0, 4, size=7)
    batch = sue(probs, gold, SueWeights(10, 6.5, 2.0))
    single = [sue(probs[k], gold, SueWeights(10, 6.5, 2.0)) for k in range(5)]
    assert batch == pytest.approx(single)
    assert accuracy(probs, gold).shape == (5,)


def test_rankdata_averages_ties():
    assert rankdata(np.array([10, 20, 20, 5])).tolist() == [2.0, 3.5, 3.5, 1.0]


def test_spearman_known_values():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # hand-computed: ranks x = 1..5, y = (2,1,4,3,5): d^2 = 1+1+1+1+0 = 4 -> 1 - 6*4/(5*24) = 0.8
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    assert spearman([1, 2], [1, 2]) is None
    assert spearman([1, 1, 1], [1, 2, 3]) is None
