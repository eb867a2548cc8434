"""Final selection on a scripted score table where the truth is known (a scripted scorer, not a model)."""

from __future__ import annotations

from promptgym.data.dataset import Example
from promptgym.evaluation.selection import race
from promptgym.tasks.prompt import Prompt

DEV = [Example(f"d{i}", f"x{i}", ("a",), ("a", "b")) for i in range(60)]


def scripted(table: dict[str, list[float]], calls: list[str] | None = None):
    """score(prompt, examples) from a fixed table of per-example scores by instruction."""
    def score(prompt: Prompt, examples):
        if calls is not None:
            calls.extend(prompt.instruction for _ in examples)
        return [table[prompt.instruction][int(e.id[1:])] for e in examples]
    return score


def pattern(right_every: int, n: int = 60, offset: int = 0) -> list[float]:
    return [1.0 if (i + offset) % right_every == 0 else 0.0 for i in range(n)]


START = Prompt("start")


def test_a_candidate_no_better_on_dev_is_rejected_and_the_start_kept():
    table = {"start": pattern(2), "lucky on train": pattern(2, offset=1)}  # same dev accuracy
    sel = race(START, [Prompt("lucky on train")], DEV, scripted(table))
    assert sel.kept_start and sel.chosen is START
    assert sel.record()["dev_initial"] == 0.5


def test_a_clearly_better_candidate_is_taken():
    table = {"start": pattern(3), "good": [1.0] * 50 + [0.0] * 10}
    sel = race(START, [Prompt("good")], DEV, scripted(table))
    assert not sel.kept_start and sel.chosen.instruction == "good"
    assert sel.p_value is not None and sel.p_value < 0.001
    assert sel.record()["dev_best"] == 50 / 60


def test_ties_keep_the_start():
    table = {"start": pattern(2), "same": pattern(2)}
    sel = race(START, [Prompt("same")], DEV, scripted(table))
    assert sel.kept_start and sel.chosen is START


def test_a_slightly_better_winner_needs_more_than_picking_the_best_of_many():
    """Best of 5 on dev by 4 examples: p ~ 0.06 alone, times 5 (Bonferroni) -> start kept."""
    start = pattern(2)
    better = list(start)
    for i in (1, 3, 5, 7):  # right on 4 more examples
        better[i] = 1.0
    table = {"start": start, "better": better, **{f"same{j}": start for j in range(4)}}
    alone = race(START, [Prompt("better")], DEV, scripted(table))
    many = race(START, [Prompt("better")] + [Prompt(f"same{j}") for j in range(4)], DEV, scripted(table))
    assert alone.p_value < 0.1 and many.p_value == min(1.0, alone.p_value * 5)
    assert many.kept_start


def test_racing_drops_a_bad_candidate_early_and_costs_less():
    table = {"start": [1.0] * 60, "good": [1.0] * 60, "bad": [0.0] * 60}
    calls: list[str] = []
    sel = race(START, [Prompt("good"), Prompt("bad")], DEV, scripted(table, calls), round_size=10)
    bad = next(e for e in sel.entrants if e.prompt.instruction == "bad")
    assert bad.dropped_after == 10 and bad.p_worse < 0.1
    assert calls.count("bad") == 10 and len(calls) == 60 + 60 + 10
    assert sel.kept_start  # "good" only ties the start


def test_duplicates_and_the_start_itself_enter_once():
    table = {"start": pattern(2), "x": pattern(2)}
    sel = race(START, [Prompt("start"), Prompt("x"), Prompt("x")], DEV, scripted(table))
    assert [e.prompt.instruction for e in sel.entrants] == ["start", "x"]


def test_plan_picks_the_default_dev_split_when_data_and_budget_allow():
    from promptgym.evaluation.selection import plan_selection

    plan = plan_selection(available=300, budget=600, dev_size=None)
    assert (plan.dev_size, plan.k, plan.reserve, plan.enabled) == (50, 3, 200, True)
    small = plan_selection(available=300, budget=150, dev_size=None)  # half of 150 pays for 18 x 4
    assert (small.dev_size, small.reserve) == (18, 72)


def test_plan_says_plainly_why_selection_is_off():
    import pytest

    from promptgym.evaluation.selection import plan_selection

    assert "data leaves 4 examples" in plan_selection(available=4, budget=600, dev_size=None).reason
    assert "--budget 40 pays for 5" in plan_selection(available=300, budget=40, dev_size=None).reason
    assert "--dev-size 0" in plan_selection(available=300, budget=600, dev_size=0).reason
    assert "--select-k 0" in plan_selection(available=300, budget=600, dev_size=None, k=0).reason
    with pytest.raises(ValueError, match=r"--budget 100 cannot pay for final selection on 30 dev examples \(4 prompts x 30 = 120"):
        plan_selection(available=300, budget=100, dev_size=30)
    assert plan_selection(available=300, budget=None, dev_size=None).dev_size == 50
