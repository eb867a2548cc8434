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

What "better" means is ``statistic``. ``accuracy`` (the default) is the task's own score per
example, tested as ``stats.paired_p`` does (exact McNemar for 0/1). ``probability`` and ``margin``
are the soft evidence a choice task scored by log-probability keeps per example at no extra call
(``Task.evidence``): continuous values, so a paired test on them uses every example, not only the
few on which the two prompts' answers differ. With a soft statistic the race (leader, drops, winner)
runs on it, the winner's one-sided test is the Wilcoxon signed-rank test (``stats.signed_rank_p``),
Bonferroni-adjusted the same way, and a second condition guards what users are scored on: the
winner's dev accuracy may not fall below the start's by more than ``margin`` (default 0: not worse
at all). Which statistic should be the default is for a benchmark to measure
(``benchmarks/selection_statistic.py``), not assumed here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from promptgym.data.dataset import Example
from promptgym.evaluation import stats
from promptgym.tasks.prompt import Prompt

# A prompt's scores on examples: a list of per-example scores, or an object with ``scores`` and the
# soft evidence (``probability``, ``margin``: an ``EvalResult``), which a soft statistic needs.
ScoreFn = Callable[[Prompt, Sequence[Example]], Any]
STATISTICS = ("accuracy", "probability", "margin")
DEFAULT_STATISTIC = "accuracy"  # today's test; a benchmark decides whether a soft one replaces it
DEFAULT_MARGIN = 0.0  # a soft-statistic winner may not lose any dev accuracy to the start


@dataclass
class Entrant:
    prompt: Prompt
    rank: int  # the method's own ranking, 0 = its best; the start is -1
    scores: list[float] = field(default_factory=list)
    dropped_after: int | None = None  # dev examples seen when it left the race
    p_worse: float | None = None  # the test that dropped it
    soft: list[float] = field(default_factory=list)  # the soft statistic's values (soft statistics only)

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores) if self.scores else 0.0

    @property
    def soft_mean(self) -> float:
        return sum(self.soft) / len(self.soft) if self.soft else 0.0

    def record(self) -> dict:
        out = {"candidate_id": self.prompt.id, "rank": self.rank, "dev_n": len(self.scores),
               "dev_score": self.dev_score, "dropped_after": self.dropped_after, "p_worse": self.p_worse}
        if self.soft:
            out["dev_statistic"] = self.soft_mean
        return out

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
    statistic: str = DEFAULT_STATISTIC
    p_accuracy: float | None = None  # Bonferroni-adjusted one-sided p of the accuracy test, whatever decided
    margin: float = DEFAULT_MARGIN
    accuracy_ok: bool | None = None  # soft statistics: the winner's dev accuracy within ``margin`` of the start's
    soft_comparison: stats.PairedComparison | None = None  # the winner against the start on the soft statistic

    def record(self) -> dict:
        start = self.entrants[0]
        out = {"kept_start": self.kept_start, "p_value": self.p_value, "level": self.level,
               "dev_size": self.dev_size, "chosen_id": self.chosen.id, "dev_initial": start.dev_score,
               "dev_best": next(e.dev_score for e in self.entrants if e.prompt.id == self.chosen.id),
               "candidates": [e.record() for e in self.entrants],
               "comparison": self.comparison.as_dict() if self.comparison else None,
               "statistic": self.statistic, "p_accuracy": self.p_accuracy}
        if self.statistic != "accuracy":
            out.update(margin=self.margin, accuracy_ok=self.accuracy_ok,
                       soft_comparison=self.soft_comparison.as_dict() if self.soft_comparison else None)
        return out


def _scores(out: Any) -> list[float]:
    return list(out.scores) if hasattr(out, "scores") else list(out)


def _soft(out: Any, statistic: str, prompt: Prompt) -> list[float]:
    values = list(getattr(out, statistic, None) or []) if hasattr(out, "scores") else []
    if len(values) != len(_scores(out)) or any(v is None for v in values):
        raise ValueError(f"--select-statistic {statistic} needs each dev example's {statistic}, which only a "
                         f"choice task scored by log-probability gives (prompt {prompt.id} has none)")
    return [float(v) for v in values]


def race(start: Prompt, ranked: Sequence[Prompt], dev: Sequence[Example], score: ScoreFn, *,
         level: float = 0.05, drop_level: float = 0.1, round_size: int = 10, seed: int = 0,
         statistic: str = DEFAULT_STATISTIC, margin: float = DEFAULT_MARGIN) -> Selection:
    """Race ``ranked`` (the method's top candidates, best first) against ``start`` on ``dev``,
    deciding by ``statistic`` (see the module docstring; ``margin`` only for a soft one)."""
    if statistic not in STATISTICS:
        raise ValueError(f"--select-statistic must be one of {', '.join(STATISTICS)}, got {statistic!r}")
    soft = statistic != "accuracy"

    def value(e: Entrant) -> float:
        return e.soft_mean if soft else e.mean

    def worse_p(a: Entrant, b: Entrant) -> float:  # one-sided: "b beats a"
        return stats.signed_rank_p(a.soft, b.soft, "greater") if soft else stats.paired_p(a.scores, b.scores,
                                                                                           "greater", seed)
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
            out = score(entrant.prompt, chunk)
            entrant.scores += _scores(out)
            if soft:
                entrant.soft += _soft(out, statistic, entrant.prompt)
        leader = max([entrants[0], *racing], key=value)  # first (start, then rank) wins ties
        for entrant in list(racing):
            if entrant is leader or done >= len(dev):
                continue
            p = worse_p(entrant, leader)
            if p < drop_level:
                entrant.dropped_after, entrant.p_worse = done, p
                racing.remove(entrant)
    return decide(entrants, racing, level=level, dev_size=len(dev), seed=seed, statistic=statistic, margin=margin)


def decide(entrants: list[Entrant], racing: list[Entrant], *, level: float, dev_size: int, seed: int = 0,
           statistic: str = DEFAULT_STATISTIC, margin: float = DEFAULT_MARGIN) -> Selection:
    """The race's last step, apart so that recorded races can be decided again offline
    (``benchmarks/selection_statistic.py``): the best of ``racing`` by ``statistic`` against the start
    (``entrants[0]``) on the dev examples both answered, Bonferroni over every finalist that entered."""
    kept = dict(statistic=statistic, margin=margin)
    if not racing:
        return Selection(entrants[0].prompt, True, None, None, entrants, level, dev_size, **kept)
    soft = statistic != "accuracy"
    winner = max(racing, key=lambda e: e.soft_mean if soft else e.mean)
    first = entrants[0]
    m = len(entrants) - 1  # Bonferroni: the finalists that entered the race
    comparison = stats.compare(first.scores, winner.scores, "greater", seed)
    p_accuracy = min(1.0, comparison.p_value * m)
    if not soft:
        better = winner.mean > first.mean and p_accuracy < level
        return Selection(winner.prompt if better else first.prompt, not better, p_accuracy, comparison, entrants,
                         level, dev_size, p_accuracy=p_accuracy, **kept)
    p_soft = stats.signed_rank_p(first.soft, winner.soft, "greater")
    low, high = stats.bootstrap_interval(first.soft, winner.soft, seed=seed)
    soft_comparison = stats.PairedComparison(n=len(first.soft), mean_a=first.soft_mean, mean_b=winner.soft_mean,
                                             delta=winner.soft_mean - first.soft_mean, low=low, high=high,
                                             p_value=p_soft, test="wilcoxon-signed-rank", alternative="greater")
    p_adjusted = min(1.0, p_soft * m)
    accuracy_ok = winner.mean >= first.mean - margin - 1e-12  # means over the same examples
    better = winner.soft_mean > first.soft_mean and p_adjusted < level and accuracy_ok
    return Selection(winner.prompt if better else first.prompt, not better, p_adjusted, comparison, entrants, level,
                     dev_size, p_accuracy=p_accuracy, accuracy_ok=accuracy_ok, soft_comparison=soft_comparison,
                     **kept)


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
    statistic: str = DEFAULT_STATISTIC
    margin: float = DEFAULT_MARGIN

    @property
    def enabled(self) -> bool:
        return not self.reason

    def record(self) -> dict:
        return {"enabled": self.enabled, "dev_size": self.dev_size, "k": self.k, "level": self.level,
                "reserve": self.reserve, "reason": self.reason, "statistic": self.statistic,
                **({"margin": self.margin} if self.statistic != DEFAULT_STATISTIC else {})}


def plan_selection(available: int, budget: int | None, dev_size: int | None, k: int = DEFAULT_K,
                   level: float = DEFAULT_LEVEL, statistic: str = DEFAULT_STATISTIC,
                   margin: float = DEFAULT_MARGIN) -> SelectionPlan:
    """The dev split and the budget kept for selection. ``available`` is what the data leaves after
    train and test; ``dev_size`` None means choose (``DEFAULT_DEV``, less if the data or half the
    budget cannot pay for it). Raises ValueError with a one-line reason when the user's own choice
    cannot work."""
    plan = _plan(available, budget, dev_size, k, level)
    if statistic not in STATISTICS:
        raise ValueError(f"--select-statistic must be one of {', '.join(STATISTICS)}, got {statistic!r}")
    if not (isinstance(margin, (int, float)) and 0 <= margin <= 1):
        raise ValueError(f"--select-margin must be between 0 and 1 (an accuracy difference), got {margin}")
    return SelectionPlan(plan.dev_size, plan.k, plan.level, plan.reserve, plan.reason, statistic, float(margin))


def _plan(available: int, budget: int | None, dev_size: int | None, k: int, level: float) -> SelectionPlan:
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


DETECT_POWER = 0.8  # the report's "would have been noticed": detected four times out of five


def detectable(selection: Selection, plan: SelectionPlan, budget: int | None, available: int | None = None,
               power: float = DETECT_POWER) -> dict | None:
    """When the start was kept: how large a gain the race could have detected on the dev examples it
    had (a power calculation for the test that decided, at its Bonferroni level ``level / m`` with m
    finalists, and ``power``), from the disagreement observed on dev between the start and the
    finalists, pooled over the examples each answered; and the dev size and budget that would detect
    half that gain, at the plan's cost of k + 1 calls per dev example with the search's share as it
    was. None when the start was not kept, nothing raced, or the prompts never disagreed.

    Exact McNemar power for 0/1 scores (``stats.mcnemar_power``); otherwise a normal approximation
    with the observed spread of per-example differences (the signed-rank test's efficiency 3/pi for
    a soft statistic)."""
    start, finalists = selection.entrants[0], selection.entrants[1:]
    if not selection.kept_start or not finalists or not start.scores:
        return None
    n, m = selection.dev_size, len(finalists)
    alpha = selection.level / m
    soft = selection.statistic != "accuracy"
    pairs = [(a, b) for f in finalists
             for a, b in zip(start.soft if soft else start.scores, f.soft if soft else f.scores)]
    if not pairs:
        return None
    if not soft and stats.is_binary([a for a, _ in pairs], [b for _, b in pairs]):
        test = "mcnemar-exact"
        psi = sum(1 for a, b in pairs if a != b) / len(pairs)
        gain = stats.mcnemar_detectable(n, psi, alpha, power)
        target = (gain if gain is not None else psi) / 2
        needed = stats.mcnemar_pairs_needed(target, psi, alpha, power, start=n)
        spread: dict = {"discordance": psi}
    else:
        test = "wilcoxon-signed-rank" if soft else "paired-bootstrap"
        efficiency = stats.SIGNED_RANK_EFFICIENCY if soft else 1.0
        diffs = [b - a for a, b in pairs]
        mean = sum(diffs) / len(diffs)
        sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / max(len(diffs) - 1, 1))
        gain = stats.shift_detectable(n, sd, alpha, power, efficiency)
        target = gain / 2 if gain is not None else None
        needed = stats.shift_pairs_needed(target, sd, alpha, power, efficiency) if target else None
        spread = {"sd": sd}
    if not (spread.get("discordance") or spread.get("sd")):  # the same answers everywhere: no disagreement to size
        return {"statistic": selection.statistic, "test": test, "gain": None, "dev_size": n, "level": alpha,
                "power": power, "finalists": m, **spread, "target": None, "dev_needed": None, "budget_needed": None,
                "sentence": (f"on the {n} dev examples the finalists scored exactly as your prompt did, so no gain "
                             "could be seen there, and more dev examples would not change that")}
    search = None if budget is None else budget - plan.reserve  # the search's calls, kept as they were
    budget_needed = None if search is None or needed is None else search + (plan.k + 1) * needed
    what = "" if selection.statistic == "accuracy" else f" in {selection.statistic}"
    if gain is None:
        head = (f"no gain{what} would reliably have been noticed with {n} dev examples: the prompts disagreed "
                f"on only {spread.get('discordance', 0):.0%} of them")
    else:
        head = f"a gain{what} under +{gain:.2f} would not have been noticed with {n} dev examples"
    if needed is None:
        advice = ""
    elif budget_needed is None:
        advice = f"; raise --dev-size to about {needed} to detect +{target:.2f}"
    else:
        advice = f"; raise --budget to about {budget_needed} (with --dev-size {needed}) to detect +{target:.2f}"
    if needed is not None and available is not None and needed > available:
        advice += f" (the data leaves only {available} examples for dev)"
    return {"statistic": selection.statistic, "test": test, "gain": gain, "dev_size": n, "level": alpha,
            "power": power, "finalists": m, **spread, "target": target, "dev_needed": needed,
            "budget_needed": budget_needed, "sentence": head + advice}
