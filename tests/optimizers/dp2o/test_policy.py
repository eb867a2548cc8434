"""DP2O's numpy policy: exact gradients, AdamW, reward normalisation, and learning a synthetic
contextual bandit whose best arm per state is known."""

from __future__ import annotations

import numpy as np
import pytest

from promptgym.optimizers.dp2o import inference
from promptgym.optimizers.dp2o.policy import (AdamW, PolicyNet, RunningStats, normalize_rewards, orthogonal,
                                              train_policy)
from promptgym.optimizers.dp2o.scoring import reward


def test_orthogonal_init_like_torch():
    rng = np.random.default_rng(0)
    w = orthogonal(rng, 20, 8, gain=1.0)  # (in, out): the out x in weight has orthonormal rows
    assert w.shape == (20, 8)
    assert w.T @ w == pytest.approx(np.eye(8), abs=1e-10)
    small = orthogonal(rng, 8, 3, gain=0.01)
    assert small.T @ small == pytest.approx(1e-4 * np.eye(3), abs=1e-12)


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(1)
    net = PolicyNet.init(rng, 5, 7, 4, last_gain=1.0)
    x = rng.normal(size=(6, 5))
    actions = rng.integers(0, 4, size=6)
    adv = rng.normal(size=6)
    loss, grads = net.grads(x, actions, adv, entropy_coef=0.3)
    eps = 1e-6
    for param, grad in zip(net.params, grads):
        flat = param.reshape(-1)
        for idx in range(0, flat.size, max(1, flat.size // 7)):
            old = flat[idx]
            flat[idx] = old + eps
            up, _ = net.grads(x, actions, adv, 0.3)
            flat[idx] = old - eps
            down, _ = net.grads(x, actions, adv, 0.3)
            flat[idx] = old
            assert grad.reshape(-1)[idx] == pytest.approx((up - down) / (2 * eps), rel=1e-4, abs=1e-7)
    assert np.isfinite(loss)


def test_adamw_first_step_matches_the_formula():
    p = np.array([1.0, -2.0])
    opt = AdamW([p], lr=0.1, eps=1e-5, weight_decay=0.01)
    opt.step([np.array([0.5, -0.25])])
    # decay, then the bias-corrected first step is lr * g / (|g| + eps)
    expected = np.array([1.0, -2.0]) * (1 - 0.1 * 0.01) - 0.1 * np.array([0.5, -0.25]) / (np.array([0.5, 0.25]) + 1e-5)
    assert p == pytest.approx(expected)


def test_running_normalisation_never_uses_the_batch_itself():
    stats = RunningStats()
    first = normalize_rewards(np.array([1.0, 3.0]), "running", stats)  # first batch: its own stats
    assert first == pytest.approx([-1.0, 1.0], abs=1e-6)
    second = normalize_rewards(np.array([10.0, 10.0]), "running", stats)
    # earlier values (1, 3): mean 2, sample std sqrt(2); no spurious zero was pushed
    assert second == pytest.approx([(10 - 2) / np.sqrt(2)] * 2, rel=1e-6)
    assert stats.n == 4
    assert normalize_rewards(np.array([1.0, 2.0, 3.0]), "batch", RunningStats()).mean() == pytest.approx(0.0)


def _bandit(n: int, rng: np.random.Generator, arms: int = 4, dim: int = 16):
    """States in ``arms`` clusters; the arm equal to an input's cluster makes the model right with
    p=0.9, every other arm leaves it wrong (p_gold=0.3)."""
    cluster = rng.integers(0, arms, size=n)
    states = np.zeros((n, dim))
    states[np.arange(n), cluster] = 3.0
    states += rng.normal(0, 0.3, size=(n, dim))
    gold = rng.integers(0, 2, size=n)
    table = np.zeros((arms, n, 2))
    for a in range(arms):
        p_gold = np.where(cluster == a, 0.9, 0.3)
        table[a, np.arange(n), gold] = p_gold
        table[a, np.arange(n), 1 - gold] = 1 - p_gold
    return states, cluster, gold, table


def test_policy_learns_the_best_arm_per_state():
    rng = np.random.default_rng(0)
    states, cluster, gold, table = _bandit(32, rng)
    dev_states, dev_cluster, dev_gold, dev_table = _bandit(32, np.random.default_rng(7))

    def dev_score(policy):
        pi = policy.probs(dev_states)
        return (float((inference.greedy(pi, dev_table) == dev_gold).mean()),)

    result = train_policy(states, reward(table, gold), np.random.default_rng(1), dev_score=dev_score)
    test_states, test_cluster, _, _ = _bandit(300, np.random.default_rng(9))
    pi = result.policy.probs(test_states)
    assert (pi.argmax(axis=1) == test_cluster).mean() >= 0.95
    assert result.best_score[0] == pytest.approx(1.0)
    assert result.curve[-1]["reward"] > result.curve[0]["reward"]
    assert result.policy.n_params == 16 * 600 + 600 + 600 * 4 + 4


def test_training_is_deterministic_and_survives_serialisation():
    states, _, gold, table = _bandit(16, np.random.default_rng(2))
    a = train_policy(states, reward(table, gold), np.random.default_rng(3), hidden=32, episodes=20)
    b = train_policy(states, reward(table, gold), np.random.default_rng(3), hidden=32, episodes=20)
    assert np.array_equal(a.policy.w1, b.policy.w1)
    back = PolicyNet.from_dict(a.policy.to_dict())
    assert back.probs(states) == pytest.approx(a.policy.probs(states), abs=1e-5)


def test_dev_selection_keeps_the_best_not_the_last():
    states, _, gold, table = _bandit(16, np.random.default_rng(4))
    scores = iter([(0.1,), (0.9,)] + [(0.2,)] * 100)
    result = train_policy(states, reward(table, gold), np.random.default_rng(0), hidden=8, episodes=10,
                          dev_score=lambda policy: next(scores))
    assert result.best_episode == 0 and result.best_score == (0.9,)


def test_inference_greedy_ensemble_and_nearest():
    # two inputs, three prompts, two classes
    table = np.array([[[0.9, 0.1], [0.6, 0.4]],
                      [[0.2, 0.8], [0.3, 0.7]],
                      [[0.5, 0.5], [0.45, 0.55]]])
    pi = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]])
    assert inference.greedy(pi, table).tolist() == [0, 1]
    # input 0, top-2 = prompts 0, 1: 0.5*log(.9)+0.3*log(.2) vs 0.5*log(.1)+0.3*log(.8) -> class 0
    assert inference.ensemble(pi, table, 2).tolist() == [0, 1]
    assert inference.nearest(np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([[0.0, 1.0], [3.0, 0.1]])).tolist() == [1, 0]
    need = inference.needed_pairs(pi, 1, [np.array([1, 1])])
    assert need == {0: [0], 1: [0, 1], 2: [1]}
