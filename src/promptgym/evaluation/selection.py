"""Final selection: better than the user's prompt on dev, or the user's prompt back.

A method ranks its candidates on the examples it searched on, and on 20 examples that ranking
overfits (in the recorded methods benchmark, of 25 runs whose best prompt beat the start on train,
14 were worse on test). So the runner re-scores the method's top ``k`` and the starting prompt on a
dev split the method never saw, and hands back a new prompt only when a paired test says it beats
the start there.

Scoring ``k`` candidates on the whole dev split is expensive, so they race (as Optuna's
WilcoxonPruner prunes trials): dev is scored in rounds, and after each round a candidate that a
one-sided paired test says is worse than the current leader (at ``drop_level``) leaves the race.
The start is never dropped. The survivor with the best dev mean is tested against the start on
all of dev; with ``m`` candidates in the race its p-value is multiplied by ``m`` (Bonferroni), because
picking the best of ``m`` on dev and then testing it on the same dev favours it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from promptgym.data.dataset import Example
from promptgym.evaluation import stats
from promptgym.tasks.prompt import Prompt

ScoreFn = Callable[[Prompt, Sequence[Example]], list[float]]


@dataclass
class Entrant:
    prompt: Prompt
    rank: int  # the method's own ranking, 0 = its best; the start is -1
    scores: list[float] = field(default_factory=list)
    dropped_after: int | None = None  # dev examples seen when it left the race
    p_worse: float | None = None  # the test that dropped it

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores) if self.scores else 0.0

    def record(self) -> dict:
        return {"candidate_id": self.prompt.id, "rank": self.rank, "dev_n": len(self.scores),
                "dev_score": self.dev_score, "dropped_after": self.dropped_after, "p_worse": self.p_worse}

    @property
    def dev_score(self) -> float | None:
        """The mean for the record: None when it never raced (no finalist: nothing was scored)."""
        return self.mean if self.scores else None


@dataclass
class Selection:
    """What the runner hands back and stores: the chosen prompt and how it was chosen."""

    chosen: Prompt
    kept_start: bool
    p_value: float | None  # Bonferroni-adjusted one-sided p of "winner beats the start" on dev
    comparison: stats.PairedComparison | None
    entrants: list[Entrant]
    level: float
    dev_size: int

    def record(self) -> dict:
        start = self.entrants[0]
        return {"kept_start": self.kept_start, "p_value": self.p_value, "level": self.level,
                "dev_size": self.dev_size, "chosen_id": self.chosen.id, "dev_initial": start.dev_score,
                "dev_best": next(e.dev_score for e in self.entrants if e.prompt.id == self.chosen.id),
                "candidates": [e.record() for e in self.entrants],
                "comparison": self.comparison.as_dict() if self.comparison else None}


def race(start: Prompt, ranked: Sequence[Prompt], dev: Sequence[Example], score: ScoreFn, *,
         level: float = 0.05, drop_level: float = 0.1, round_size: int = 10, seed: int = 0) -> Selection:
    """Race ``ranked`` (the method's top candidates, best first) against ``start`` on ``dev``."""
    seen: set[str] = {start.id}
    entrants = [Entrant(start, -1)]
    for rank, prompt in enumerate(ranked):
        if prompt.id not in seen:
            seen.add(prompt.id)
            entrants.append(Entrant(prompt, rank))
    racing = entrants[1:]
    done = 0
    while racing and done < len(dev):
        chunk = dev[done: done + round_size]
        done += len(chunk)
        for entrant in [entrants[0], *racing]:
            entrant.scores += score(entrant.prompt, chunk)
        leader = max([entrants[0], *racing], key=lambda e: e.mean)  # first (start, then rank) wins ties
        for entrant in list(racing):
            if entrant is leader or done >= len(dev):
                continue
            p = stats.paired_p(entrant.scores, leader.scores, "greater", seed)
            if p < drop_level:
                entrant.dropped_after, entrant.p_worse = done, p
                racing.remove(entrant)
    if not racing:
        return Selection(start, True, None, None, entrants, level, len(dev))
    winner = max(racing, key=lambda e: e.mean)
    comparison = stats.compare(entrants[0].scores, winner.scores, "greater", seed)
    p_adjusted = min(1.0, comparison.p_value * (len(entrants) - 1))
    better = winner.mean > entrants[0].mean and p_adjusted < level
    return Selection(winner.prompt if better else start, not better, p_adjusted, comparison, entrants,
                     level, len(dev))


# Defaults chosen by benchmarks/selection_defaults.py (results/selection-defaults.md): with 50 dev
# examples, 3 finalists and level 0.1 the guard returned a truly worse prompt in 1.3% of simulated
# runs (against ~75% for the method's own pick) and kept a real +0.08 gain often enough to gain
# +0.017 on average, at ~176 of 200 reserved calls.
DEFAULT_K = 3
DEFAULT_LEVEL = 0.1
DEFAULT_DEV = 50
MIN_DEV = 10  # fewer dev examples cannot tell a real gain from noise: selection is off, said so
BUDGET_SHARE = 0.5  # an automatic dev split takes at most this share of the budget


@dataclass(frozen=True)
class SelectionPlan:
    """How the runner splits data and budget for final selection, decided before the search."""

    dev_size: int
    k: int
    level: float
    reserve: int  # calls kept back from the search for the race: (k + 1) x dev, the worst case
    reason: str = ""  # why selection is off, in words for the report

    @property
    def enabled(self) -> bool:
        return not self.reason

    def record(self) -> dict:
        return {"enabled": self.enabled, "dev_size": self.dev_size, "k": self.k, "level": self.level,
                "reserve": self.reserve, "reason": self.reason}


def plan_selection(available: int, budget: int | None, dev_size: int | None, k: int = DEFAULT_K,
                   level: float = DEFAULT_LEVEL) -> SelectionPlan:
    """The dev split and the budget kept for selection. ``available`` is what the data leaves after
    train and test; ``dev_size`` None means choose (``DEFAULT_DEV``, less if the data or half the
    budget cannot pay for it). Raises ValueError with a one-line reason when the user's own choice
    cannot work."""
    if not 0 < level < 1:
        raise ValueError(f"--select-level must be between 0 and 1, got {level}")
    if k < 0:
        raise ValueError(f"--select-k must be 0 or more, got {k}")
    if k == 0:
        return SelectionPlan(dev_size or 0, 0, level, 0, "off (--select-k 0): the method's best is returned unguarded")
    if dev_size == 0:
        return SelectionPlan(0, k, level, 0, "off (--dev-size 0): the method's best is returned unguarded")
    if dev_size is not None:
        reserve = (k + 1) * dev_size
        if budget is not None and reserve >= budget:
            raise ValueError(f"--budget {budget} cannot pay for final selection on {dev_size} dev examples "
                             f"({k + 1} prompts x {dev_size} = {reserve} calls): raise --budget, or lower "
                             f"--dev-size or --select-k (0 turns selection off)")
        return SelectionPlan(dev_size, k, level, reserve)
    by_budget = DEFAULT_DEV if budget is None else int(budget * BUDGET_SHARE) // (k + 1)
    size = min(DEFAULT_DEV, available, by_budget)
    if size < MIN_DEV:
        why = (f"the data leaves {available} examples after train and test" if available < by_budget
               else f"--budget {budget} pays for {by_budget} dev examples")
        return SelectionPlan(0, k, level, 0, f"off: {why}, fewer than the {MIN_DEV} a dev split needs; "
                             "the method's best is returned unguarded")
    return SelectionPlan(size, k, level, (k + 1) * size)
