"""Context.evaluate_pool on the scripted model: ``full`` is the methods' usual scoring, a race records
each candidate once and keeps partly scored candidates out of the split's ranking."""

from __future__ import annotations

import re

import pytest

from promptgym.errors import PromptgymError
from promptgym.models.scripted import ScriptedBackend
from promptgym.optimizers.base import PARTIAL
from promptgym.tasks.prompt import Prompt
from support import LABELS, Recording

GOLD = re.compile(r"the service was (\w+) overall")
SHARES = (0.2, 0.3, 0.4, 0.5, 0.6, 0.9, 0.35, 0.45)  # candidate k is right on about SHARES[k] of the inputs
BEST = 5


def share_logprob(prompt: str, option: str) -> float:
    """"Use strategy K." answers right on the inputs whose number is below SHARES[K] x 100 (mod 100)."""
    arm = int(re.search(r"Use strategy (\d+)\.", prompt).group(1))
    number = int(re.search(r"Review number (\d+)", prompt).group(1))
    gold = GOLD.search(prompt).group(1)
    right = (number * 37) % 100 < SHARES[arm] * 100
    wrong = next(label for label in LABELS if label != gold)
    return 0.0 if option.strip() == (gold if right else wrong) else -5.0


def pool() -> list[Prompt]:
    return [Prompt(f"Use strategy {k}.") for k in range(len(SHARES))]


def context(scripted_context, train: int = 60, seed: int = 0):
    ctx = scripted_context(seed=seed, backend=ScriptedBackend(option_logprob=share_logprob), train=train)
    ctx.recorder = Recording()
    rows: list[dict] = []
    ctx.evaluator.ledger = rows.extend
    return ctx, rows


def task_calls(rows: list[dict]) -> int:
    return sum(1 for r in rows if r["role"] == "task" and not r["cached"])


def test_full_is_evaluate_on_every_candidate_in_order(scripted_context):
    ctx, rows = context(scripted_context)
    race = ctx.evaluate_pool(pool(), ctx.train, split="train")
    expected, _ = context(scripted_context)
    for prompt in pool():
        expected.evaluate(prompt, expected.train, split="train")
    assert ctx.recorder.scored == expected.recorder.scored
    assert task_calls(rows) == race.requested == len(SHARES) * 60
    assert ctx.ranked("train")[0].instruction == f"Use strategy {BEST}."
    assert "candidate_eval" not in ctx.stats  # the default leaves no trace


@pytest.mark.parametrize("strategy", ["halving", "rejects"])
def test_a_race_records_each_candidate_once_partial_ones_apart(strategy, scripted_context):
    ctx, rows = context(scripted_context)
    race = ctx.evaluate_pool(pool(), ctx.train, split="train", strategy=strategy)
    assert task_calls(rows) == race.requested < len(SHARES) * 60 / 2
    assert sorted(p for p, _, _ in ctx.recorder.scored) == sorted(p.id for p in pool())  # one row each
    whole = [(p, ids) for p, split, ids in ctx.recorder.scored if split == "train"]
    assert [p for p, _ in whole] == [pool()[BEST].id] and len(whole[0][1]) == 60
    assert all(split == "train" + PARTIAL and len(ids) < 60 for p, split, ids in ctx.recorder.scored
               if p != pool()[BEST].id)
    assert ctx.best("train")[0] == pool()[BEST]  # partly scored candidates are not compared with it
    assert ctx.stats["candidate_eval"]["raced"] == dict(pools=1, candidates=len(SHARES), requested=race.requested,
                                                        full=len(SHARES) * 60)


def test_a_race_keeps_as_many_as_asked_scored_in_full(scripted_context):
    ctx, _ = context(scripted_context)
    race = ctx.evaluate_pool(pool(), ctx.train, split="train", strategy="halving", keep=3)
    top = race.ranking()[:3]
    assert BEST in top and all(race.seen[k] == 60 for k in top)
    assert {p.id for p in ctx.ranked("train")} == {pool()[k].id for k in top}


def test_a_race_never_scores_held_out_examples(scripted_context):
    ctx, _ = context(scripted_context)
    with pytest.raises(PromptgymError, match="held-out"):
        ctx.evaluate_pool(pool(), ctx.train[:30] + ctx.test_examples, strategy="halving")


def test_a_pool_too_small_to_race_is_scored_in_full(scripted_context):
    ctx, rows = context(scripted_context)
    ctx.evaluate_pool(pool()[:3], ctx.train, split="train", strategy="rejects")
    assert [split for _, split, _ in ctx.recorder.scored] == ["train"] * 3
    assert task_calls(rows) == 3 * 60 and "candidate_eval" not in ctx.stats
