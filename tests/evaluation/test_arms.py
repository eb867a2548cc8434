"""The pool strategies on synthetic arms: fixed per-example 0/1 score tables, no model.

Arm k is right on a known share of the examples (a fixed table drawn once), so every arm's exact mean
is known and a strategy's pick can be checked against it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from promptgym.data.dataset import Example
from promptgym.evaluation import arms as pool
from promptgym.evaluation.arms import Arms, logbar, pool_cost, race_budget, races, score_pool

SHARES = (0.30, 0.35, 0.40, 0.42, 0.45, 0.48, 0.50, 0.52, 0.55, 0.55, 0.58, 0.60, 0.62, 0.65, 0.68, 0.85)
BEST = 15
N = 200


def examples(n: int = N) -> list[Example]:
    return [Example(id=f"e{j}", input=f"input {j}", targets=("a",), choices=("a", "b")) for j in range(n)]


def table(shares=SHARES, n: int = N, seed: int = 0) -> np.ndarray:
    """0/1 scores, arm x example: arm k is right on exactly round(shares[k] x n) examples."""
    rng = np.random.default_rng(seed)
    out = np.zeros((len(shares), n))
    for k, share in enumerate(shares):
        out[k, rng.permutation(n)[: round(share * n)]] = 1.0
    return out


class Scorer:
    """score(arm, batch) -> per-example scores from the table; logs every request."""

    def __init__(self, scores: np.ndarray):
        self.scores = scores
        self.log: list[tuple[int, tuple[str, ...]]] = []

    def __call__(self, arm: int, batch):
        self.log.append((arm, tuple(e.id for e in batch)))
        return [float(self.scores[arm, int(e.id[1:])]) for e in batch]

    @property
    def calls(self) -> int:  # candidate x example evaluations asked for
        return sum(len(ids) for _, ids in self.log)


def run(strategy: str, seed: int = 0, keep: int = 1, shares=SHARES, n: int = N, budget=None):
    scorer = Scorer(table(shares, n))
    result = score_pool(list(range(len(shares))), examples(n), scorer, strategy, keep=keep,
                        rng=np.random.default_rng(seed), budget=budget)
    return result, scorer


def test_full_scores_every_candidate_on_every_example_once_in_order():
    result, scorer = run("full")
    assert scorer.log == [(k, tuple(f"e{j}" for j in range(N))) for k in range(len(SHARES))]
    assert result.requested == len(SHARES) * N == pool_cost("full", len(SHARES), N)
    assert [result.mean(k) for k in range(len(SHARES))] == pytest.approx(list(table().mean(axis=1)))
    assert result.ranking()[0] == BEST


@pytest.mark.parametrize("strategy", ["halving", "rejects"])
@pytest.mark.parametrize("seed", range(6))
def test_races_find_the_clearly_best_arm_with_far_fewer_examples(strategy, seed):
    result, scorer = run(strategy, seed)
    assert result.ranking()[0] == BEST
    assert result.seen[BEST] == N  # the winner is measured as full measures it
    assert result.mean(BEST) == pytest.approx(table()[BEST].mean())
    full = len(SHARES) * N
    assert scorer.calls == result.requested <= pool_cost(strategy, len(SHARES), N) < full / 3
    assert max(result.seen[k] for k in range(len(SHARES)) if k != BEST) < N  # no loser measured in full


@pytest.mark.parametrize("strategy", ["halving", "rejects"])
@pytest.mark.parametrize("budget", [1, 16, 57, 300, 800, 5000])
def test_a_race_never_asks_for_more_than_its_budget(strategy, budget):
    arms = Arms(list(range(len(SHARES))), examples(), Scorer(table()), budget, rng=np.random.default_rng(0))
    pool.SELECTORS[strategy](arms, keep=1)
    assert arms.requested <= budget
    assert arms.requested == min(budget, len(SHARES) * N) or all(arms.exhausted(k) for k in range(len(SHARES))
                                                                  if k not in arms.rejected)


@pytest.mark.parametrize("strategy", ["halving", "rejects"])
def test_a_pool_costs_at_most_its_bound_with_the_kept_completed(strategy):
    result, scorer = run(strategy, keep=3)
    assert scorer.calls <= pool_cost(strategy, len(SHARES), N, keep=3) == race_budget(len(SHARES), N, 3) + 3 * N
    assert all(result.seen[k] == N for k in result.ranking()[:3])


@pytest.mark.parametrize("strategy", ["halving", "rejects"])
def test_deterministic_for_a_seed(strategy):
    first, a = run(strategy, seed=3)
    second, b = run(strategy, seed=3)
    assert a.log == b.log and first.ranking() == second.ranking()
    _, c = run(strategy, seed=4)
    assert c.log != a.log  # the seed draws the shared order of the examples


def test_halving_keeps_the_better_half_each_round_and_arms_share_examples():
    result, scorer = run("halving", seed=1)
    rounds = math.ceil(math.log2(len(SHARES)))
    assert result.requested <= race_budget(len(SHARES), N) + N
    # eliminated arms leave in rounds of 8, 4, 2: 8 saw the first round's share, 4 two rounds', ...
    firsts = sorted({result.seen[k] for k in result.rejected})
    assert len(firsts) == rounds
    assert [sum(result.seen[k] == s for k in result.rejected) for s in firsts] == [8, 4, 2, 1]
    # common random numbers: every arm's n-th example is the same example
    batches: dict[int, list[str]] = {}
    for arm, ids in scorer.log:
        batches.setdefault(arm, []).extend(ids)
    longest = max(batches.values(), key=len)
    assert all(ids == longest[: len(ids)] for ids in batches.values())


def test_halving_eliminates_by_mean_so_far_ties_to_the_earlier_candidate():
    shares = (0.5, 0.5, 0.5, 0.5)  # four equal arms on one table row pattern: every mean ties
    scores = np.tile(table((0.5,), 16)[0], (4, 1))
    arms = Arms([0, 1, 2, 3], examples(16), Scorer(scores), race_budget(4, 16), rng=np.random.default_rng(0))
    pool.select_halving(arms, keep=1)
    assert len(shares) == 4 and arms.ranking()[0] == 0 and arms.rejected == [3, 2, 1]


def test_rejects_follows_the_continuous_rejects_rule():
    result, scorer = run("rejects", seed=2)
    # each rejected arm had seen more examples than every arm rejected before it
    seen_at_rejection = [result.seen[k] for k in result.rejected]
    assert seen_at_rejection == sorted(set(seen_at_rejection))
    # pulls go to the active arm that has seen the fewest, one example at a time, during the race
    race = [ids for _, ids in scorer.log[: len(scorer.log) - 1]]
    assert all(len(ids) == 1 for ids in race)
    assert len(result.rejected) == len(SHARES) - 1  # the race ended with one arm left
    assert logbar(2) == 1.0 and logbar(3) == pytest.approx(1 + 1 / 3)


def test_rejects_keeps_every_arm_while_the_gaps_are_within_its_threshold():
    # two equal arms: a gap of 0 never exceeds G(beta) >= 0 while beta <= 1 (the race budget is spent first)
    scores = np.tile(table((0.5,), 40)[0], (2, 1))
    arms = Arms([0, 1], examples(40), Scorer(scores), 40, rng=np.random.default_rng(0))
    pool.select_rejects(arms, keep=1)
    assert arms.rejected == [] and arms.seen == [20, 20]


def test_small_pools_are_scored_in_full_racing_cannot_save_there():
    assert not races("halving", 3, 50) and not races("rejects", 2, 50) and races("halving", 4, 50)
    assert not races("halving", 8, 50, keep=8) and not races("full", 16, 50)
    result, scorer = run("halving", shares=(0.2, 0.8, 0.5))
    assert scorer.log == [(k, tuple(f"e{j}" for j in range(N))) for k in range(3)]
    assert result.ranking() == [1, 2, 0]


def test_unknown_strategy_is_one_clear_error():
    with pytest.raises(ValueError, match="candidate_eval must be one of full, halving, rejects"):
        score_pool([0, 1], examples(4), Scorer(table((0.1, 0.2), 4)), "thompson")


@pytest.mark.parametrize("strategy", ["halving", "rejects"])
def test_more_candidates_than_examples_each_get_at_least_one(strategy):
    shares = tuple(float(x) for x in np.linspace(0.1, 0.9, 40))
    result, scorer = run(strategy, shares=shares, n=12)
    assert min(result.seen) >= 1  # the race's budget pays for the first round's example each
    assert scorer.calls <= pool_cost(strategy, 40, 12) < 40 * 12
    assert race_budget(40, 12) == math.ceil(math.log2(40)) * 40
