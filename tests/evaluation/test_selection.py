"""Final selection on a scripted score table where the truth is known (a scripted scorer, not a model)."""

from __future__ import annotations

import pytest

from promptgym.data.dataset import Example
from promptgym.evaluation import stats
from promptgym.evaluation.selection import plan_selection, race, race_sequential
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

    plan = plan_selection(available=300, budget=600, dev_size=None)  # one finalist: 100 dev x 2 prompts
    assert (plan.dev_size, plan.k, plan.reserve, plan.enabled) == (100, 1, 200, True)
    small = plan_selection(available=300, budget=150, dev_size=None)  # half of 150 pays for 37 x 2
    assert (small.dev_size, small.reserve) == (37, 74)
    three = plan_selection(available=300, budget=600, dev_size=None, k=3)  # half of 600 pays for 75 x 4
    assert (three.dev_size, three.reserve) == (75, 300)
    assert plan_selection(available=40, budget=600, dev_size=None).dev_size == 40  # what the data leaves


def test_plan_pays_for_the_twins_raced_beside_the_methods_k():
    from promptgym.evaluation.selection import plan_selection

    plan = plan_selection(available=300, budget=600, dev_size=None, k=3, twins=2)  # 3 finalists + 2 twins + the start
    assert (plan.dev_size, plan.k, plan.twins, plan.reserve) == (50, 3, 2, 300) and plan.record()["twins"] == 2
    small = plan_selection(available=300, budget=150, dev_size=None, k=3, twins=2)  # half of 150 pays for 12 x 6
    assert (small.dev_size, small.reserve) == (12, 72)
    assert plan_selection(available=300, budget=600, dev_size=20, k=3, twins=2).reserve == 120
    assert "twins" not in plan_selection(available=300, budget=600, dev_size=None).record()
    assert plan_selection(available=300, budget=600, dev_size=None, k=0, twins=2).twins == 0  # selection off
    import pytest

    with pytest.raises(ValueError, match=r"\(6 prompts x 30 = 180"):
        plan_selection(available=300, budget=150, dev_size=30, k=3, twins=2)


def test_plan_says_plainly_why_selection_is_off():
    import pytest

    from promptgym.evaluation.selection import plan_selection

    assert "data leaves 4 examples" in plan_selection(available=4, budget=600, dev_size=None).reason
    assert "--budget 30 pays for 7" in plan_selection(available=300, budget=30, dev_size=None).reason
    assert "--dev-size 0" in plan_selection(available=300, budget=600, dev_size=0).reason
    assert "--select-k 0" in plan_selection(available=300, budget=600, dev_size=None, k=0).reason
    with pytest.raises(ValueError, match=r"--budget 100 cannot pay for final selection on 30 dev examples \(4 prompts x 30 = 120"):
        plan_selection(available=300, budget=100, dev_size=30, k=3)
    assert plan_selection(available=300, budget=None, dev_size=None).dev_size == 100


# -- a soft statistic (the right option's probability or margin) ------------------------------------------

class Soft:
    """What the runner's scorer hands the race: per-example scores and soft evidence."""

    def __init__(self, scores, probability, margin):
        self.scores, self.probability, self.margin = scores, probability, margin


def soft_scored(table: dict[str, tuple[list[float], list[float]]]):
    """score(prompt, examples) from (accuracy, probability) tables; the margin is 2 x probability - 1."""
    def score(prompt: Prompt, examples):
        acc, prob = table[prompt.instruction]
        idx = [int(e.id[1:]) for e in examples]
        return Soft([acc[i] for i in idx], [prob[i] for i in idx], [2 * prob[i] - 1 for i in idx])
    return score


START_ACC = pattern(2)  # right on half of dev
START_PROB = [0.55 if a else 0.45 for a in START_ACC]


def test_a_soft_statistic_replaces_when_the_signed_rank_test_says_so_and_accuracy_holds():
    """Same answers (accuracy equal, McNemar sees nothing), but surer of the right option on every
    example: the signed-rank test sees it and the accuracy condition (not worse) holds."""
    surer = [p + 0.05 for p in START_PROB]
    table = {"start": (START_ACC, START_PROB), "surer": (START_ACC, surer)}
    by_accuracy = race(START, [Prompt("surer")], DEV, soft_scored(table), level=0.1)
    assert by_accuracy.kept_start and by_accuracy.p_value == 1.0
    for statistic in ("probability", "margin"):
        sel = race(START, [Prompt("surer")], DEV, soft_scored(table), level=0.1, statistic=statistic)
        assert not sel.kept_start and sel.chosen.instruction == "surer", statistic
        assert sel.p_value < 1e-6 and sel.p_accuracy == 1.0 and sel.accuracy_ok
        record = sel.record()
        assert record["statistic"] == statistic and record["p_accuracy"] == 1.0 and record["margin"] == 0.0
        assert record["soft_comparison"]["test"] == "wilcoxon-signed-rank"
        assert record["soft_comparison"]["delta"] == pytest.approx(0.05 if statistic == "probability" else 0.1)
        assert record["candidates"][1]["dev_statistic"] == pytest.approx(sum(table["surer"][1]) / 60 * (
            1 if statistic == "probability" else 2) - (0 if statistic == "probability" else 1))


def test_a_soft_winner_that_loses_accuracy_beyond_the_margin_is_refused():
    """Surer on average, but wrong on 3 more of 60 dev examples: refused at margin 0, taken at 0.1."""
    acc = list(START_ACC)
    for i in (0, 2, 4):  # three examples the start gets right
        acc[i] = 0.0
    prob = [p + 0.05 for p in START_PROB]
    for i in (0, 2, 4):
        prob[i] = 0.49
    table = {"start": (START_ACC, START_PROB), "surer": (acc, prob)}
    strict = race(START, [Prompt("surer")], DEV, soft_scored(table), level=0.1, statistic="probability")
    assert strict.kept_start and strict.accuracy_ok is False and strict.p_value < 0.1
    assert strict.record()["accuracy_ok"] is False
    loose = race(START, [Prompt("surer")], DEV, soft_scored(table), level=0.1, statistic="probability", margin=0.1)
    assert not loose.kept_start and loose.accuracy_ok


def test_a_soft_statistic_without_soft_evidence_is_an_error_not_a_guess():
    table = {"start": pattern(2), "x": pattern(2)}
    with pytest.raises(ValueError, match="needs each dev example's probability"):
        race(START, [Prompt("x")], DEV, scripted(table), statistic="probability")
    with pytest.raises(ValueError, match="--select-statistic must be one of"):
        race(START, [Prompt("x")], DEV, scripted(table), statistic="f1")


def test_the_default_statistic_decides_exactly_as_before():
    """accuracy: the record gains only which statistic decided and the accuracy p (the same p)."""
    table = {"start": pattern(3), "good": [1.0] * 50 + [0.0] * 10}
    sel = race(START, [Prompt("good")], DEV, scripted(table))
    assert sel.statistic == "accuracy" and sel.p_accuracy == sel.p_value
    assert "margin" not in sel.record() and "dev_statistic" not in sel.record()["candidates"][1]


def test_plan_checks_the_statistic_and_the_margin():
    from promptgym.evaluation.selection import plan_selection

    plan = plan_selection(available=300, budget=600, dev_size=None, statistic="margin", margin=0.02)
    assert (plan.statistic, plan.margin) == ("margin", 0.02) and plan.record()["statistic"] == "margin"
    with pytest.raises(ValueError, match="--select-statistic"):
        plan_selection(available=300, budget=600, dev_size=None, statistic="f1")
    with pytest.raises(ValueError, match="--select-margin"):
        plan_selection(available=300, budget=600, dev_size=None, margin=2.0)


# -- what a kept start could have detected -----------------------------------------------------------

def test_detectable_gain_of_a_kept_start_in_words_with_the_budget_that_would_detect_half():
    from promptgym.evaluation.selection import SelectionPlan, detectable

    cand = list(START_ACC)
    for i in (1, 3, 5, 7):  # disagrees with the start on 8 of 60: right on 4 more, wrong on 4 it had
        cand[i] = 1.0
    for i in (0, 2, 4, 6):
        cand[i] = 0.0
    sel = race(START, [Prompt("c")], DEV, scripted({"start": START_ACC, "c": cand}), level=0.1)
    assert sel.kept_start
    plan = SelectionPlan(60, 3, 0.1, 240)
    out = detectable(sel, plan, budget=500)
    assert out["test"] == "mcnemar-exact" and out["discordance"] == pytest.approx(8 / 60)
    assert out["level"] == 0.1 and out["finalists"] == 1  # one finalist: no Bonferroni share
    assert 0 < out["gain"] <= 8 / 60 and out["target"] == pytest.approx(out["gain"] / 2)
    assert out["dev_needed"] > 60 and out["budget_needed"] == 500 - 240 + 4 * out["dev_needed"]
    assert out["sentence"] == (f"a gain under +{out['gain']:.2f} would not have been noticed with 60 dev examples; "
                               f"raise --budget to about {out['budget_needed']} (with --dev-size {out['dev_needed']}) "
                               f"to detect +{out['target']:.2f}")
    assert detectable(sel, plan, budget=None)["sentence"].endswith(
        f"raise --dev-size to about {out['dev_needed']} to detect +{out['target']:.2f}")
    taken = race(START, [Prompt("good")], DEV, scripted({"start": START_ACC, "good": [1.0] * 60}))
    assert not taken.kept_start and detectable(taken, plan, budget=500) is None
    same = race(START, [Prompt("same")], DEV, scripted({"start": START_ACC, "same": START_ACC}))
    assert "scored exactly as your prompt did" in detectable(same, plan, budget=500)["sentence"]


# -- the sequential race -----------------------------------------------------------------------------------

POOL = [Example(f"d{i}", f"x{i}", ("a",), ("a", "b")) for i in range(200)]


def first_round_reaching(start: list[float], better: list[float], need: float, round_size: int = 10) -> int:
    """The first round after which the bet of ``better`` against ``start`` (``stats.betting_wealth``)
    has reached ``need`` at some example so far: where the race must stop."""
    wealth = stats.betting_wealth([b - a for a, b in zip(start, better)])
    first = next(i for i, w in enumerate(wealth) if w >= need)
    return first // round_size + 1


def test_a_clearly_better_candidate_wins_early_and_the_race_records_the_round():
    start, good = pattern(2, 200), pattern(2, 200)
    for i in range(1, 200, 4):  # right on a quarter more: +0.25
        good[i] = 1.0
    table = {"start": start, "good": good, "same": pattern(2, 200), "worse": pattern(4, 200)}
    calls: list[str] = []
    sel = race_sequential(START, [Prompt("same"), Prompt("good"), Prompt("worse")], POOL, scripted(table, calls),
                          reserve=400, level=0.1)
    assert not sel.kept_start and sel.chosen.instruction == "good"
    course = sel.record()["race"]
    expected = first_round_reaching(start, good, need=3 / 0.1)
    assert course["stop"] == "decided" and course["decided_round"] == course["rounds"] == expected
    assert course["decided_dev_n"] == sel.dev_size == 10 * expected < len(POOL)
    assert course["race_calls"] == len(calls) <= 400 and course["e_value"] >= course["threshold"] == 30
    assert sel.p_value == pytest.approx(3 / course["e_value"]) and sel.p_value <= 0.1
    assert course["sentence"].startswith(f"decided in round {expected}, on {10 * expected} dev examples")


def test_an_equal_candidate_keeps_the_start_and_the_race_stops_within_its_reserve():
    table = {"start": pattern(2, 200), "same": pattern(2, 200, offset=1)}  # disagree everywhere, equal means
    for reserve in (37, 120, 300, 1000):
        calls: list[str] = []
        sel = race_sequential(START, [Prompt("same")], POOL, scripted(table, calls), reserve=reserve)
        course = sel.record()["race"]
        assert sel.kept_start and course["decided_round"] is None and sel.p_value > 0.1
        assert len(calls) == course["race_calls"] <= reserve and calls.count("start") == calls.count("same")
        if reserve < 2 * len(POOL):  # it goes on until the reserve cannot pay for one more example
            assert course["stop"] == "reserve" and course["race_calls"] >= reserve - 1
        else:
            assert course["stop"] == "pool" and course["dev_n"] == len(POOL)


def test_calls_never_exceed_the_reserve_and_the_start_is_never_dropped():
    import numpy as np

    rng = np.random.default_rng(0)
    for trial in range(20):
        table = {name: list((rng.random(200) < p).astype(float))
                 for name, p in (("start", 0.5), ("a", 0.6), ("b", 0.3), ("c", 0.5))}
        reserve = int(rng.integers(4, 500))
        calls: list[str] = []
        sel = race_sequential(START, [Prompt("a"), Prompt("b"), Prompt("c")], POOL, scripted(table, calls),
                              reserve=reserve)
        start = sel.entrants[0]
        assert len(calls) == sel.record()["race"]["race_calls"] <= reserve, trial
        assert start.dropped_after is None and len(start.scores) == max(len(e.scores) for e in sel.entrants)
        assert calls.count("start") == len(start.scores) == sel.dev_size


def test_a_candidate_worse_than_the_start_leaves_for_futility():
    """Alone against the start and clearly worse: no leader rule needed, its bet the other way drops it."""
    table = {"start": [1.0] * 200, "bad": pattern(2, 200)}
    sel = race_sequential(START, [Prompt("bad")], POOL, scripted(table), reserve=400)
    bad = sel.entrants[1]
    assert sel.kept_start and bad.dropped_why == "worse than your prompt" and bad.p_worse <= 0.1
    assert sel.record()["race"]["stop"] == "futility" and bad.dropped_after < 200
    assert sel.record()["candidates"][1]["dropped_why"] == "worse than your prompt"


def test_a_finalist_that_can_no_longer_reach_the_threshold_leaves_and_its_calls_are_not_spent():
    """Even after 4 rounds (80 calls), with 15 calls left: 7 more examples, and 1.5^7 < 30 (the
    threshold of 3 finalists at 0.1), so the race ends there rather than pay 14 calls for nothing."""
    table = {"start": pattern(2, 200), "even": pattern(2, 200, offset=1)}
    sel = race_sequential(START, [Prompt("even")], POOL, scripted(table), reserve=95, level=0.1 / 3)
    even = sel.entrants[1]
    assert even.dropped_why == "out of reach" and even.dropped_after == 40
    assert sel.record()["race"]["race_calls"] == 80 and sel.record()["race"]["stop"] == "futility"
    spent = race_sequential(START, [Prompt("even")], POOL, scripted(table), reserve=100, level=0.1 / 3)
    assert spent.record()["race"]["stop"] == "reserve" and spent.entrants[1].dropped_why is None


def test_the_margin_is_bet_on_through_the_logistic_and_the_soft_winner_keeps_its_accuracy_guard():
    surer = [p + 0.2 for p in START_PROB] * 4
    table = {"start": (START_ACC * 4, START_PROB * 4), "surer": (START_ACC * 4, surer)}
    for statistic in ("probability", "margin"):
        sel = race_sequential(START, [Prompt("surer")], POOL[:240], soft_scored(table), reserve=480,
                              statistic=statistic)
        assert not sel.kept_start and sel.accuracy_ok and sel.record()["race"]["stop"] == "decided", statistic
    acc = [0.0] * 240  # surer of the right option, yet never right: refused however high its bet goes
    sel = race_sequential(START, [Prompt("surer")], POOL[:240], soft_scored({**table, "surer": (acc, surer)}),
                          reserve=480, statistic="probability", margin=0.1)
    assert sel.kept_start and sel.accuracy_ok is False


def test_the_fixed_race_record_is_unchanged_by_the_sequential_one():
    table = {"start": pattern(3), "good": [1.0] * 50 + [0.0] * 10}
    record = race(START, [Prompt("good")], DEV, scripted(table)).record()
    assert "race" not in record and "e_value" not in record["candidates"][1]


def test_run_race_follows_the_plan_and_the_plan_records_sequential_only_when_asked():
    from promptgym.evaluation.selection import plan_selection, run_race

    table = {"start": pattern(3, 200), "good": [1.0] * 200}
    fixed = plan_selection(available=300, budget=600, dev_size=None, k=3)
    sequential = plan_selection(available=300, budget=600, dev_size=None, k=3, sequential=True)
    assert "sequential" not in fixed.record() and sequential.record()["sequential"] is True
    assert (sequential.dev_size, sequential.reserve) == (fixed.dev_size, fixed.reserve)  # the same reserve
    assert (fixed.pool_size, sequential.pool_size) == (75, 150)  # 300 calls: 150 examples for two prompts
    assert "race" not in run_race(fixed, START, [Prompt("good")], POOL[:50], scripted(table)).record()
    assert run_race(sequential, START, [Prompt("good")], POOL, scripted(table)).record()["race"]["stop"] == "decided"


def test_a_judged_example_costs_more_calls_and_the_reserve_pays_for_them():
    plain = plan_selection(100, 200, 10, k=2)
    judged = plan_selection(100, 200, 10, k=2, per_example=2)
    assert (plain.reserve, judged.reserve) == (30, 60) and judged.per_example == 2
    assert plan_selection(100, 200, None, k=2, per_example=2).dev_size == 200 // 2 // 3 // 2  # half the budget
    with pytest.raises(ValueError, match=r"3 prompts x 10 x 3 calls an example \(a judge's included\) = 90 calls"):
        plan_selection(100, 90, 10, k=2, per_example=3)
    sequential = plan_selection(100, 200, 10, k=2, sequential=True, per_example=2)
    assert sequential.pool_size == 60 // 4  # one finalist left: two prompts, two calls each, per example
