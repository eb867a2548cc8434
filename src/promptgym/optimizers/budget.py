"""Sizing a method's plan to the run's call budget, the same way in every method.

A method states what its plan costs in model calls and how to make it smaller, least harmful
reduction first; ``fit`` shrinks the paper's defaults until they fit, never raises them.

Plans are sized by the run's whole budget (``planning_budget``) and a method counts its own spend
(``PlannedSpend``); neither reads the budget meter. A resumed run replays its finished calls from the
cache for free, so by then part of the meter is spent, yet it must make the same plan and the same
decisions as the interrupted attempt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

from promptgym.tasks.judge import calls_per_answer

if TYPE_CHECKING:  # pragma: no cover
    from promptgym.optimizers.base import Context

Plan = TypeVar("Plan")
Reduction = Callable[[Plan], "Plan | None"]


def fit(plan: Plan, cost: Callable[[Plan], float], limit: float, reductions: Sequence[Reduction],
        ctx: "Context | None" = None, names: dict[str, str] | None = None) -> Plan:
    """The largest plan that fits ``limit``.

    While ``cost(plan)`` exceeds the limit, the first of ``reductions`` that still applies is
    applied (a reduction returns a smaller plan, or None when it cannot shrink it further) and
    the search starts again from the first. When no reduction applies, the smallest plan is
    returned although it does not fit (the budget then stops the run). An unlimited budget
    (``inf``) returns ``plan`` unchanged.

    With ``ctx``, what was changed is recorded (``note``): ``names`` maps a plan entry to the
    parameter the user sets (``{"per_step": "per_step"}``); entries not named are not reported."""
    asked = plan
    while cost(plan) > limit:
        for reduce in reductions:
            smaller = reduce(plan)
            if smaller is not None:
                plan = smaller
                break
        else:
            break
    if ctx is not None:
        note(ctx, {names[k]: asked[k] for k in names or {}}, {names[k]: plan[k] for k in names or {}},  # type: ignore[index]
             needs=None if cost(plan) <= limit else int(cost(plan)), limit=limit)
    return plan


def note(ctx: "Context", asked: dict[str, Any], used: dict[str, Any], needs: int | None = None,
         limit: float = math.inf) -> None:
    """Record in ``ctx.stats`` the parameters a method's plan changed to fit the budget
    (``adjusted``: name -> {asked, used}) and, when even its smallest plan does not fit
    (``needs`` calls), ``plan_short`` ({needs, budget}): the runner prints both before the run and
    the projection carries them (a setting changed in silence ran as another experiment)."""
    changed = {k: dict(asked=asked[k], used=used[k]) for k in asked if asked[k] != used[k]}
    if changed:
        ctx.stats.setdefault("adjusted", {}).update(changed)
    if needs is not None and not math.isinf(limit):
        ctx.stats["plan_short"] = dict(needs=needs, budget=int(limit))


def adjusted_line(stats: dict[str, Any], method: str) -> str | None:
    """The parameters changed to fit the budget, in words (None when none was)."""
    parts = []
    changed = stats.get("adjusted") or {}
    if changed:
        parts.append(f"{method}'s plan was cut to fit the budget: "
                     + ", ".join(f"{k} {v['asked']} -> {v['used']}" for k, v in changed.items()))
    short = stats.get("plan_short")
    if short:
        parts.append(f"even {method}'s smallest plan needs about {short['needs']} calls, more than the "
                     f"{short['budget']} the search has: the budget stops it early (raise --budget)")
    return "; ".join(parts) or None


def lower(key: str, floor: int | Callable[[dict[str, Any]], int] = 1,
          to: Callable[[int], int] = lambda v: v - 1, **reset: Any) -> Reduction:
    """A reduction of a dict plan: ``plan[key]`` to ``to(value)`` (one less by default), never
    below ``floor`` (a number, or a function of the plan); None once it is at the floor.
    ``reset`` puts other entries back (e.g. the step count, to try it again at a smaller size)."""

    def reduce(plan: dict[str, Any]) -> dict[str, Any] | None:
        least = floor(plan) if callable(floor) else floor
        if plan[key] <= least:
            return None
        return {**plan, **reset, key: max(least, to(plan[key]))}

    return reduce


def planning_budget(ctx: "Context") -> float:
    """The run's whole call budget (``inf`` when unlimited): what a method sizes its plan by; under
    calibration, less the share its prompts' priors take (``calibration_share``). Plans count one
    call per scored example; where a judge scores each answer (``tasks.judge``), one scored example
    costs 1 + the judge's calls, so the plan gets the budget divided by that (its proposals are then
    under-counted a little: the plan stays inside the budget)."""
    limit = ctx.evaluator.budget.limit
    if limit is None:
        return float("inf")
    return float(math.floor(limit * calibration_share(ctx))) / calls_per_answer(getattr(ctx.task, "metric", None))


def calibration_share(ctx: "Context") -> float:
    """The share of the budget a method's own plan may spend when the task calibrates its choices.

    A calibrated prompt costs ``calibration_calls`` (3) more calls the first time it is scored (its
    content-free requests), which no method's cost formula counts. Every method scores a new prompt
    on a batch of examples, so the calls a prompt costs grow from n to n + 3: the plan is sized on
    n / (n + 3) of the budget, with n the training split, the batch of most methods (APE's
    subsample, OPRO, GRIPS, EvoPrompt, GPO). A method that scores prompts on smaller batches
    (Promptbreeder's, ProTeGi's bandit rounds, RLPrompt's) may be stopped by the budget before the
    end of its plan; the budget stays a hard cap either way. 1.0 when the task does not calibrate."""
    extra = ctx.task.calibration_calls
    n = max(len(ctx.train), 1)
    return n / (n + extra) if extra else 1.0


@dataclass
class PlannedSpend:
    """What a run's own requests would cost a fresh run, against the whole budget.

    A method plans for the worst case (every candidate kept and scored); a small model's dropped
    candidates cost their generation call only and leave budget over, which a method spends on more
    steps or samples. It counts that itself instead of reading the budget meter (see the module
    docstring)."""

    limit: float = math.inf
    spent: int = 0

    @classmethod
    def of(cls, ctx: "Context") -> "PlannedSpend":
        return cls(planning_budget(ctx))

    def add(self, calls: int) -> None:
        self.spent += calls

    @property
    def left(self) -> float:
        """Calls the plan has left (``inf`` if unlimited)."""
        return self.limit - self.spent

    def count(self, cost: float) -> float:
        """How many items of ``cost`` calls each the budget left pays for (``inf`` if unlimited)."""
        return math.inf if math.isinf(self.limit) else self.left // cost

    def affords(self, calls: int) -> bool:
        """Whether the budget left pays for ``calls`` more calls: "can I afford one more (step, child,
        replication)?", asked with that item's worst-case cost."""
        return self.count(calls) >= 1
