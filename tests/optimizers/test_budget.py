"""The budget planner the methods share: ``fit`` (the largest plan that fits), ``lower`` (a
reduction of one entry) and the planned-spend counter."""

from __future__ import annotations

import math

from promptgym.optimizers.budget import PlannedSpend, fit, lower, planning_budget


def cost(plan):
    return plan["steps"] * plan["per_step"]


def test_fit_applies_reductions_in_order_and_returns_the_largest_plan_that_fits():
    plan = fit({"steps": 10, "per_step": 8}, cost, 40, [lower("steps"), lower("per_step")])
    assert plan == {"steps": 5, "per_step": 8}  # steps first, as far as needed and no further
    plan = fit({"steps": 10, "per_step": 8}, cost, 6, [lower("steps"), lower("per_step")])
    assert plan == {"steps": 1, "per_step": 6}  # steps at their floor, then per_step


def test_a_plan_that_fits_is_never_changed_and_an_unlimited_budget_fits_anything():
    start = {"steps": 10, "per_step": 8}
    assert fit(start, cost, 80, [lower("steps")]) is start
    assert fit(start, cost, math.inf, [lower("steps")]) is start


def test_when_nothing_fits_the_smallest_plan_is_returned():
    plan = fit({"steps": 3, "per_step": 2}, cost, 0, [lower("steps"), lower("per_step")])
    assert plan == {"steps": 1, "per_step": 1}


def test_each_reduction_restarts_from_the_first():
    """After a later reduction applies, earlier ones are tried again (here: steps, reset by the
    second reduction, shrink again at the smaller size)."""
    seen = []

    def tracked(plan):
        seen.append((plan["steps"], plan["per_step"]))
        return cost(plan)

    fit({"steps": 3, "per_step": 3}, tracked, 4, [lower("steps", 2), lower("per_step", 1, steps=3)])
    assert seen == [(3, 3), (2, 3), (3, 2), (2, 2)]


def test_lower_clamps_at_its_floor_which_may_depend_on_the_plan():
    halve = lower("size", 8, lambda v: v // 2)
    assert halve({"size": 12}) == {"size": 8}  # 6 would go below the floor
    assert halve({"size": 8}) is None
    to_seeds = lower("candidates", lambda plan: plan["seeds"])
    assert to_seeds({"candidates": 5, "seeds": 4}) == {"candidates": 4, "seeds": 4}
    assert to_seeds({"candidates": 4, "seeds": 4}) is None


def test_planned_spend_counts_what_the_rest_of_the_budget_pays_for():
    spend = PlannedSpend(200)
    spend.add(20)
    assert spend.count(21) == 8  # 180 // 21
    spend.add(180)
    assert spend.count(21) == 0 and spend.count(1) == 0


def test_unlimited_budget_pays_for_anything():
    spend = PlannedSpend(math.inf)
    spend.add(10**6)
    assert spend.count(21) == math.inf and int(min(8, spend.count(21))) == 8


def test_planned_spend_reads_the_whole_run_budget_not_the_meter(scripted_context):
    ctx = scripted_context(budget=150)
    ctx.evaluator.budget.spent = 100  # a resumed run: part of the budget is already charged
    assert PlannedSpend.of(ctx).count(1) == 150 and planning_budget(ctx) == 150
    assert PlannedSpend.of(scripted_context(budget=None)).count(1) == math.inf


def test_under_calibration_a_plan_is_sized_on_the_share_its_prompts_own_calls_take(scripted_context):
    from promptgym.tasks.task import ChoiceTask

    ctx = scripted_context(budget=100, train=12)
    ctx.task = ChoiceTask(calibrate=True)  # a prompt costs 12 + 3 calls where a plan counts 12
    assert planning_budget(ctx) == 80 and PlannedSpend.of(ctx).count(13) == 6
    assert planning_budget(scripted_context(budget=100, train=12)) == 100


def test_a_calibrated_apes_plan_fits_its_budget_with_the_priors(scripted_context):
    from promptgym.optimizers import get_method
    from promptgym.tasks.task import ChoiceTask

    ctx = scripted_context(budget=100, train=12)
    ctx.task = ChoiceTask(calibrate=True)
    get_method("ape")().run(ctx)
    # 6 proposals of 1 + 12 calls each fit 80; with their priors (3 each) 96 of the 100 (7 would need 112)
    assert ctx.stats["adjusted"]["proposals (num_subsamples x prompts_per_subsample)"]["used"] == 6
    assert ctx.stats["stopped_by"] == "done" and not ctx.stats.get("budget_exhausted")
    assert ctx.evaluator.budget.spent <= 100
