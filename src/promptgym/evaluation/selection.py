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

``race_sequential`` (``--select-sequential``) races instead on dev examples drawn while the race is
undecided, from the examples in neither train nor test, within the same reserve, and decides by a
test that stays valid however often it is looked at (a betting e-process per finalist); see there.
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
# Accuracy by measurement (benchmarks/results/deliver.md): with one finalist on 75-90 dev examples the
# probability replaced the start a little more often on Gemma 3 270M, but on the embedded SmolLM2
# it returned prompts worse than the start on test (its probabilities move without its accuracy).
DEFAULT_STATISTIC = "accuracy"
DEFAULT_MARGIN = 0.0  # a soft-statistic winner may not lose any dev accuracy to the start


@dataclass
class Entrant:
    prompt: Prompt
    rank: int  # the method's own ranking, 0 = its best; the start is -1
    scores: list[float] = field(default_factory=list)
    dropped_after: int | None = None  # dev examples seen when it left the race
    p_worse: float | None = None  # the test that dropped it
    soft: list[float] = field(default_factory=list)  # the soft statistic's values (soft statistics only)
    e_value: float | None = None  # sequential race: the largest wealth its bet against the start reached
    wealth: float = 1.0  # sequential race: that bet's wealth now
    dropped_why: str | None = None  # sequential race: the rule that dropped it (``FUTILE``, ...)

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
        if self.e_value is not None:
            out.update(e_value=self.e_value, dropped_why=self.dropped_why)
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
    sequential: dict | None = None  # the sequential race's course (``race_sequential``); None for the fixed one

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
        if self.sequential is not None:
            out["race"] = self.sequential
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
    _check_statistic(statistic)
    entrants = _entrants(start, ranked)
    racing = entrants[1:]
    done = 0
    while racing and done < len(dev):
        chunk = dev[done: done + round_size]
        done += len(chunk)
        for entrant in [entrants[0], *racing]:
            _score_round(entrant, score, chunk, statistic)
        if done < len(dev):
            _drop_behind_leader(entrants[0], racing, done, drop_level, seed, statistic)
    return decide(entrants, racing, level=level, dev_size=len(dev), seed=seed, statistic=statistic, margin=margin)


def _check_statistic(statistic: str) -> None:
    if statistic not in STATISTICS:
        raise ValueError(f"--select-statistic must be one of {', '.join(STATISTICS)}, got {statistic!r}")


def _entrants(start: Prompt, ranked: Sequence[Prompt]) -> list[Entrant]:
    """The start first, then each ranked prompt once (a duplicate or the start itself enters once)."""
    seen: set[str] = {start.id}
    entrants = [Entrant(start, -1)]
    for rank, prompt in enumerate(ranked):
        if prompt.id not in seen:
            seen.add(prompt.id)
            entrants.append(Entrant(prompt, rank))
    return entrants


def _score_round(entrant: Entrant, score: ScoreFn, chunk: Sequence[Example], statistic: str) -> None:
    out = score(entrant.prompt, chunk)
    entrant.scores += _scores(out)
    if statistic != "accuracy":
        entrant.soft += _soft(out, statistic, entrant.prompt)


def _drop_behind_leader(start: Entrant, racing: list[Entrant], done: int, drop_level: float, seed: int,
                        statistic: str) -> None:
    """Drop every finalist that a one-sided paired test (at ``drop_level``) says is worse than the
    current leader by ``statistic``; the start, never racing itself, is never dropped."""
    soft = statistic != "accuracy"
    leader = max([start, *racing], key=lambda e: e.soft_mean if soft else e.mean)  # start, then rank, win ties
    for entrant in list(racing):
        if entrant is leader:
            continue
        p = (stats.signed_rank_p(entrant.soft, leader.soft, "greater") if soft
             else stats.paired_p(entrant.scores, leader.scores, "greater", seed))
        if p < drop_level:
            entrant.dropped_after, entrant.p_worse, entrant.dropped_why = done, p, BEHIND_LEADER
            racing.remove(entrant)


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


# Defaults chosen by measurement. Level 0.1: benchmarks/selection_defaults.py (results/selection-
# defaults.md), where the guard returned a truly worse prompt in 1.3% of simulated runs. One
# finalist on as many dev examples as half the budget pays for (DEFAULT_DEV at most):
# benchmarks/deliver.py (results/deliver.md), where two finalists on 30 dev examples delivered 16% of
# the gain the methods found on Gemma 3 270M and one finalist on 90 most of it.
DEFAULT_K = 1
DEFAULT_LEVEL = 0.1
DEFAULT_DEV = 100
MIN_DEV = 10  # fewer dev examples cannot tell a real gain from noise: selection is off, said so
BUDGET_SHARE = 0.5  # an automatic dev split takes at most this share of the budget


@dataclass(frozen=True)
class SelectionPlan:
    """How the runner splits data and budget for final selection, decided before the search."""

    dev_size: int
    k: int
    level: float
    reserve: int  # calls kept back from the search for the race: (k + 1 + twins) x dev x per_example, the worst case
    reason: str = ""  # why selection is off, in words for the report
    statistic: str = DEFAULT_STATISTIC
    margin: float = DEFAULT_MARGIN
    sequential: bool = False  # race on dev drawn while undecided (``race_sequential``), same reserve
    per_example: int = 1  # model calls one scored example costs (1 + a judge's calls)
    twins: int = 0  # finalists raced beyond the method's k (the reasoning twins), paid from the reserve too

    @property
    def enabled(self) -> bool:
        return not self.reason

    @property
    def pool_size(self) -> int:
        """The most dev examples the race can use: the dev split, or for the sequential race what
        the reserve pays for with one finalist left (two calls an example), if the data has them."""
        pairs = self.reserve // (2 * self.per_example)
        return max(self.dev_size, pairs) if self.sequential and self.enabled else self.dev_size

    def record(self) -> dict:
        return {"enabled": self.enabled, "dev_size": self.dev_size, "k": self.k, "level": self.level,
                "reserve": self.reserve, "reason": self.reason, "statistic": self.statistic,
                **({"margin": self.margin} if self.statistic != DEFAULT_STATISTIC else {}),
                **({"sequential": True} if self.sequential else {}),
                **({"twins": self.twins} if self.twins else {})}


def plan_selection(available: int, budget: int | None, dev_size: int | None, k: int = DEFAULT_K,
                   level: float = DEFAULT_LEVEL, statistic: str = DEFAULT_STATISTIC,
                   margin: float = DEFAULT_MARGIN, sequential: bool = False, per_example: int = 1,
                   twins: int = 0) -> SelectionPlan:
    """The dev split and the budget kept for selection. ``available`` is what the data leaves after
    train and test; ``dev_size`` None means choose (``DEFAULT_DEV``, less if the data or half the
    budget cannot pay for it). Raises ValueError with a one-line reason when the user's own choice
    cannot work. ``sequential`` keeps the same dev split and reserve: the sequential race draws
    further dev examples from what the data leaves, and spends no more than the reserve.
    ``per_example``: the calls one scored example costs (2 or 3 where a judge scores the answers):
    the reserve pays for that many per example. ``twins`` more finalists race besides the method's
    ``k`` (``--reasoning search``: the reasoning twins of the method's best and of the start), and
    the reserve pays for them too."""
    plan = _plan(available, budget, dev_size, k, level, per_example, twins)
    _check_statistic(statistic)
    if not (isinstance(margin, (int, float)) and 0 <= margin <= 1):
        raise ValueError(f"--select-margin must be between 0 and 1 (an accuracy difference), got {margin}")
    return SelectionPlan(plan.dev_size, plan.k, plan.level, plan.reserve, plan.reason, statistic, float(margin),
                         bool(sequential), per_example, twins if plan.k else 0)


def run_race(plan: SelectionPlan, start: Prompt, ranked: Sequence[Prompt], dev: Sequence[Example],
             score: ScoreFn, seed: int = 0) -> Selection:
    """The race ``plan`` asks for: on the fixed ``dev``, or sequential on ``dev`` as its pool."""
    options = dict(level=plan.level, seed=seed, statistic=plan.statistic, margin=plan.margin)
    if plan.sequential:
        return race_sequential(start, ranked, dev, score, reserve=plan.reserve // plan.per_example, **options)
    return race(start, ranked, dev, score, **options)


def _plan(available: int, budget: int | None, dev_size: int | None, k: int, level: float,
          per_example: int = 1, twins: int = 0) -> SelectionPlan:
    if not 0 < level < 1:
        raise ValueError(f"--select-level must be between 0 and 1, got {level}")
    if k < 0:
        raise ValueError(f"--select-k must be 0 or more, got {k}")
    if k == 0:
        return SelectionPlan(dev_size or 0, 0, level, 0, "off (--select-k 0): the method's best is returned unguarded")
    if dev_size == 0:
        return SelectionPlan(0, k, level, 0, "off (--dev-size 0): the method's best is returned unguarded")
    raced = k + 1 + twins  # the prompts in the race, the start included
    if dev_size is not None:
        reserve = raced * dev_size * per_example
        if budget is not None and reserve >= budget:
            calls = "" if per_example == 1 else f" x {per_example} calls an example (a judge's included)"
            raise ValueError(f"--budget {budget} cannot pay for final selection on {dev_size} dev examples "
                             f"({raced} prompts x {dev_size}{calls} = {reserve} calls): raise --budget, or lower "
                             f"--dev-size or --select-k (0 turns selection off)")
        return SelectionPlan(dev_size, k, level, reserve)
    by_budget = DEFAULT_DEV if budget is None else int(budget * BUDGET_SHARE) // (raced * per_example)
    size = min(DEFAULT_DEV, available, by_budget)
    if size < MIN_DEV:
        why = (f"the data leaves {available} examples after train and test" if available < by_budget
               else f"--budget {budget} pays for {by_budget} dev examples")
        return SelectionPlan(0, k, level, 0, f"off: {why}, fewer than the {MIN_DEV} a dev split needs; "
                             "the method's best is returned unguarded")
    return SelectionPlan(size, k, level, raced * size * per_example)


# -- the sequential race ------------------------------------------------------------------------------
# Fixed dev is cut before the search, and 30 to 50 examples scored 0/1 cannot tell a +0.10 prompt from
# noise. The sequential race instead draws dev examples while it is undecided, from the examples in
# neither train nor test (as many as its reserve could use), and stops as soon as it is decided. Its test must then stay valid
# however often it is looked at: a betting e-process per finalist (``stats.betting_wealth``).

SEQUENTIAL_ROUND = 10  # dev examples per entrant per round (why: ``race_sequential``)
BEHIND_LEADER = "worse than the leader"
FUTILE = "worse than your prompt"
OUT_OF_REACH = "out of reach"


def race_sequential(start: Prompt, ranked: Sequence[Prompt], pool: Sequence[Example], score: ScoreFn, *,
                    reserve: int, level: float = DEFAULT_LEVEL, drop_level: float = 0.1,
                    round_size: int = SEQUENTIAL_ROUND, seed: int = 0, statistic: str = DEFAULT_STATISTIC,
                    margin: float = DEFAULT_MARGIN) -> Selection:
    """Race ``ranked`` against ``start`` on ``pool`` (dev examples in a fixed order) round by round,
    spending at most ``reserve`` calls (one per entrant per example), until it is decided.

    Each finalist bets against the start on the per-example differences of ``statistic`` (accuracy
    clipped to [-1, 1]; the probability as it is; the margin, an unbounded log-probability gap,
    through the logistic function: the right option's probability in a two-way choice against the
    best wrong one, in [0, 1] and in the same order, so each example's difference keeps its sign).
    A finalist wins once its wealth reaches ``m / level`` with ``m`` the finalists that entered
    (Bonferroni: a threshold that fell as finalists dropped out would let a survivor reuse the level
    the dropped ones were given, which no union bound covers), and, for a soft statistic, its accuracy
    on the examples so far is within ``margin`` of the start's. By Ville's inequality a finalist no
    better than the start wins with probability at most ``level / m`` however the race went, so the
    start is replaced by a prompt that is not better with probability at most ``level``.

    After a round without a winner a finalist leaves the race (the start never does) when
    - its bet the other way reaches ``1 / drop_level``: an anytime-valid bound says its gain is
      below 0 (``FUTILE``);
    - even winning every example still to come at the largest bet could not reach the threshold,
      with the reserve left to it alone and the start (``OUT_OF_REACH``; certain, not a guess);
    - the fixed race's rule, a paired test at ``drop_level`` against the leader, says it is behind
      (``BEHIND_LEADER``). That test is not anytime-valid and need not be: dropping only costs power,
      never the guarantee above, and it hands the dropped finalist's calls to the others.

    The race stops when a finalist wins (``decided``), every finalist has left (``futility``), the
    reserve cannot pay one more example for every entrant (``reserve``) or ``pool`` is used up
    (``pool``). Rounds of ``SEQUENTIAL_ROUND`` examples: a bet of at most 1/2 grows the wealth at
    most 1.5-fold per example, so at the default level 0.1 and 3 finalists (threshold 30) no race can
    be decided before its 9th example; a round of 10 looks first about when a decision becomes
    possible, and a decision wastes at most 9 examples per entrant of its round. The bet itself
    sees every example, so a look after each would change nothing but the calls."""
    _check_statistic(statistic)
    entrants = _entrants(start, ranked)
    first, racing = entrants[0], entrants[1:]
    need = max(len(racing), 1) / level
    spent = rounds = 0
    winner: Entrant | None = None
    stop: str | None = None
    while racing and winner is None and stop is None:
        size = min(round_size, len(pool) - len(first.scores), (reserve - spent) // (1 + len(racing)))
        if size <= 0:
            stop = "pool" if len(first.scores) >= len(pool) else "reserve"
            continue
        chunk = pool[len(first.scores): len(first.scores) + size]
        for entrant in (first, *racing):
            _score_round(entrant, score, chunk, statistic)
        spent, rounds = spent + size * (1 + len(racing)), rounds + 1
        for entrant in racing:
            _bet(first, entrant, statistic)
        winners = [e for e in racing if e.e_value >= need and _accuracy_holds(first, e, statistic, margin)]
        winner = max(winners, key=lambda e: e.e_value) if winners else None  # ties: the method's rank
        if winner is None:
            left = min(len(pool) - len(first.scores), (reserve - spent) // 2)
            _drop_futile(first, racing, statistic, need, left, drop_level)
            if len(racing) > 1:
                _drop_behind_leader(first, racing, len(first.scores), drop_level, seed, statistic)
    stop = stop or ("decided" if winner else "futility" if len(entrants) > 1 else "no finalist")
    course = dict(rounds=rounds, round_size=round_size, stop=stop, pool=len(pool), reserve=reserve,
                  race_calls=spent, threshold=need, decided_round=rounds if winner else None,
                  decided_dev_n=len(first.scores) if winner else None, dev_n=len(first.scores),
                  e_value=max((e.e_value for e in entrants[1:] if e.e_value is not None), default=None))
    course["sentence"] = race_sentence(course)
    return _sequential_selection(entrants, racing, winner, level, course, seed, statistic, margin)


STOP_WORDS = {
    "futility": "every finalist had left the race (worse than your prompt, or out of reach of the reserve left)",
    "reserve": "the reserve could not pay one more example for every prompt still racing",
    "pool": "the data had no more examples for dev",
}


def race_sentence(course: dict) -> str:
    """The sequential race's course in words (the CLI summary's line, the run page's)."""
    if course["stop"] == "no finalist":
        return "the method offered no finalist to race, so your prompt was kept at no cost"
    cost = f"{course['race_calls']} of the {course['reserve']} reserved calls"
    e = f"{course['e_value']:.3g}" if course["e_value"] is not None else "-"
    if course["stop"] == "decided":
        return (f"decided in round {course['decided_round']}, on {course['decided_dev_n']} dev examples: a "
                f"finalist's e-value reached {e} ({course['threshold']:.3g} needed); {cost}")
    return (f"stopped undecided in round {course['rounds']}, on {course['dev_n']} dev examples: "
            f"{STOP_WORDS[course['stop']]}; the best e-value was {e} ({course['threshold']:.3g} needed); {cost}")


def _values(entrant: Entrant, statistic: str) -> list[float]:
    """The per-example values the bet compares, each in [0, 1] (accuracy: the task's score)."""
    if statistic == "margin":
        return [1 / (1 + math.exp(-min(max(v, -700.0), 700.0))) for v in entrant.soft]
    return entrant.soft if statistic == "probability" else entrant.scores


def _differences(start: Entrant, entrant: Entrant, statistic: str) -> list[float]:
    """``entrant`` minus the start per example, clipped to [-1, 1] (only a reward outside [0, 1] needs it)."""
    ours, theirs = _values(entrant, statistic), _values(start, statistic)
    return [min(1.0, max(-1.0, b - a)) for a, b in zip(theirs, ours)]


def _bet(start: Entrant, entrant: Entrant, statistic: str) -> None:
    wealth = stats.betting_wealth(_differences(start, entrant, statistic))
    entrant.e_value, entrant.wealth = float(wealth.max()), float(wealth[-1])


def _accuracy_holds(start: Entrant, entrant: Entrant, statistic: str, margin: float) -> bool:
    """A soft statistic's winner may not lose more than ``margin`` of accuracy to the start on the
    examples both answered (the fixed race's guard, read at the moment of the decision)."""
    n = len(entrant.scores)
    return statistic == "accuracy" or entrant.mean >= sum(start.scores[:n]) / max(n, 1) - margin - 1e-12


def _drop_futile(start: Entrant, racing: list[Entrant], statistic: str, need: float, left: int,
                 drop_level: float) -> None:
    """``FUTILE`` and ``OUT_OF_REACH`` of ``race_sequential``; ``left``: the most examples a finalist
    racing the start alone could still be scored on (none left: the race stops on its reserve or
    pool, and says so, rather than calling its finalists futile)."""
    for entrant in list(racing):
        against = float(stats.betting_wealth([-d for d in _differences(start, entrant, statistic)]).max())
        if against >= 1 / drop_level:
            entrant.dropped_why, entrant.p_worse = FUTILE, 1 / against
        elif 0 < left and entrant.wealth * (1 + stats.BET_CAP) ** left < need:  # at 0 the reserve says it
            entrant.dropped_why = OUT_OF_REACH
        else:
            continue
        entrant.dropped_after = len(entrant.scores)
        racing.remove(entrant)


def _sequential_selection(entrants: list[Entrant], racing: list[Entrant], winner: Entrant | None, level: float,
                          course: dict, seed: int, statistic: str, margin: float) -> Selection:
    """The sequential race's result: the winner, or the start with the finalist ahead on the bet
    (``comparison``: it against the start on the examples both answered, for the record). The
    p-value is ``m / e``, with ``e`` the largest wealth a finalist reached: anytime-valid, as a
    sup over the race (Ville), and below ``level`` exactly when a finalist reached the threshold."""
    first, m = entrants[0], len(entrants) - 1
    best = winner or max(racing, key=lambda e: e.e_value or 0.0, default=None)
    reached = course["e_value"]
    p_value = None if reached is None else min(1.0, m / reached)
    comparison = accuracy_ok = None
    if best is not None:
        comparison = stats.compare(first.scores[:len(best.scores)], best.scores, "greater", seed)
        accuracy_ok = _accuracy_holds(first, best, statistic, margin) if statistic != "accuracy" else None
    chosen = winner.prompt if winner else first.prompt
    return Selection(chosen, winner is None, p_value, comparison, entrants, level, len(first.scores),
                     statistic=statistic, margin=margin, accuracy_ok=accuracy_ok, sequential=course)


DETECT_POWER = 0.8  # the report's "would have been noticed": detected four times out of five


def detectable(selection: Selection, plan: SelectionPlan, budget: int | None, available: int | None = None,
               power: float = DETECT_POWER) -> dict | None:
    """When the start was kept: how large a gain the race could have detected on the dev examples it
    had (a power calculation for the test that decided, at its Bonferroni level ``level / m`` with m
    finalists, and ``power``), from the disagreement observed on dev between the start and the
    finalists, pooled over the examples each answered; and the dev size and budget that would detect
    half that gain, at the plan's cost of k + 1 calls per dev example (plus the twins') with the
    search's share as it was. None when the start was not kept, nothing raced, or the prompts never disagreed.

    Exact McNemar power for 0/1 scores (``stats.mcnemar_power``); otherwise a normal approximation
    with the observed spread of per-example differences (the signed-rank test's efficiency 3/pi for
    a soft statistic). None for the sequential race too: its record says where it stopped and why,
    and a fixed test's power says nothing about a race whose length was not fixed."""
    start, finalists = selection.entrants[0], selection.entrants[1:]
    if not selection.kept_start or not finalists or not start.scores or selection.sequential is not None:
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
    budget_needed = None if search is None or needed is None else search + (plan.k + 1 + plan.twins) * needed
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
