"""Shared proposer machinery: the planned-spend counter the budget-aware methods share."""

from __future__ import annotations

import math

from promptgym.optimizers.proposals import PlannedSpend


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


def test_planned_spend_reads_the_run_budget(scripted_context):
    assert PlannedSpend.of(scripted_context(budget=150)).count(1) == 150
    assert PlannedSpend.of(scripted_context(budget=None)).count(1) == math.inf
