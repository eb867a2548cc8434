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
                "dev_score": self.mean, "dropped_after": self.dropped_after, "p_worse": self.p_worse}


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
                "dev_size": self.dev_size, "chosen_id": self.chosen.id, "dev_initial": start.mean,
                "dev_best": next(e.mean for e in self.entrants if e.prompt.id == self.chosen.id),
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
