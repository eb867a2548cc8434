"""A pool of candidates scored under a call budget, as fixed-budget best-arm identification does it.

Methods that score a pool of candidates (APE's proposals, an OPRO step, EvoPrompt's children,
Promptbreeder's mutants, GRIPS's edits, ProTeGi's beam) spend most of their calls on candidates
that are clearly worse than the best. Here a candidate is an arm, and scoring it on one example is
one pull: one call, unless the response cache already holds the answer. Every arm walks one shared
order of the examples, without replacement: arms that saw m examples saw the same m (common random
numbers), no pull repeats an example (with deterministic, cached scoring a repeat tells nothing),
and an arm that saw every example has its exact mean.

``score_pool`` scores a pool with one of ``STRATEGIES``:

- ``full``: every candidate on every example, one scoring request per candidate, in pool order;
  what the methods' papers do.
- ``halving``: sequential halving (Karnin, Koren and Somekh, ICML 2013) as TRIPLE-SH uses it (Shi,
  Yang, Chen, Li, Yang and Shen, "Efficient Prompt Optimization Through the Lens of Best Arm
  Identification", NeurIPS 2024; official code ShenGroup/TRIPLE). ceil(log2(n / keep)) rounds; in
  each, every surviving arm gets an equal share of the round's budget (at least one example), then
  the better half (ceil) goes on, ranked by the mean over every example the arm has seen (the
  official code keeps that cumulative mean, not the round's alone).
- ``rejects``: continuous rejects (Wang, Tzeng and Proutiere, "Best Arm Identification with Fixed
  Budget: A Large Deviation Perspective", NeurIPS 2023) as TRIPLE-CR uses it: each pull goes to the
  active arm that has seen the fewest examples; after each pull the worst active arm l is rejected
  when it has seen more examples than every arm rejected before it and the mean of the other active
  arms exceeds its mean by more than G(beta) = 1/sqrt(beta) - 1, where beta = (examples seen by the
  active arms) x logbar(number active) / (T - examples seen by the rejected arms) and logbar(m) =
  1/2 + sum_{i=2..m} 1/i. This is the paper's CR-A rule; the official code accepts CR-A or CR-C, and
  CR-C (the smallest gap instead of the mean one) implies CR-A, so the two agree.

The race's budget T is ceil(log2(n / keep)) x max(N, n) calls for n candidates on N examples, the
same for both strategies: each halving round costs about as much as scoring one candidate in full,
and never less than one example per candidate (the first round must see every candidate). Then the
``keep`` best are scored on every example, so the candidates a method goes on with are measured
exactly as ``full`` measures them; ``pool_cost`` is the most a pool can cost (for a method's budget
plan). A pool so small that racing cannot cost less than ``full`` is scored in full.

Decisions where the papers leave it open: rewards are the task's per-example scores in [0, 1] (CR's
G compares gaps of such means); an arm is judged by CR only once every active arm has been pulled
(the official code would compare an unpulled arm's mean of 0); unspent round budget carries over to
the next round (an arm that has seen every example cannot use its share); ties go to the earlier
candidate (the newer one is eliminated), as everywhere in promptgym.

ProTeGi's selectors (``ucb``, ``successive_rejects``, ``uniform``; see ``optimizers/protegi.py``)
run on the same ``Arms`` with ProTeGi's own allowance, and ProTeGi also offers ``halving`` and
``rejects`` there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from promptgym.data.dataset import Example
from promptgym.evaluation.evaluator import EvalResult

STRATEGIES = ("full", "halving", "rejects")

# A candidate's scores on a batch of examples: an EvalResult, or the per-example scores.
Score = Callable[[Any, Sequence[Example]], Any]


def _scores(out: Any) -> list[float]:
    return list(out.scores) if hasattr(out, "scores") else [float(s) for s in out]


@dataclass
class Arms:
    """Candidates as arms over one shared order of ``examples``; the one place a strategy spends
    its ``allowance`` (candidate x example evaluations requested through ``score``).

    ``order`` is the shared order (indices into ``examples``); without it, ``rng`` draws one, and
    without either the examples are walked as given. ``rng`` also breaks a selector's ties."""

    candidates: Sequence[Any]
    examples: Sequence[Example]
    score: Score
    allowance: float = math.inf
    rng: np.random.Generator | None = None
    order: list[int] | None = None
    requested: int = 0
    pulls: int = 0
    seen: list[int] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)  # eliminated arms, in elimination order
    outputs: list[list[Any]] = field(default_factory=list)  # per arm: what ``score`` returned, per pull

    def __post_init__(self) -> None:
        if self.order is None:
            n = len(self.examples)
            self.order = self.rng.permutation(n).tolist() if self.rng is not None else list(range(n))
        self.seen = [0] * len(self.candidates)
        self.total = [0.0] * len(self.candidates)
        self.outputs = [[] for _ in self.candidates]

    def __len__(self) -> int:
        return len(self.candidates)

    @property
    def left(self) -> float:
        return max(self.allowance - self.requested, 0)

    def exhausted(self, i: int) -> bool:
        return self.seen[i] >= len(self.examples)

    def mean(self, i: int) -> float:
        return self.total[i] / self.seen[i] if self.seen[i] else 0.0

    def pull(self, i: int, size: int, within_allowance: bool = True) -> int:
        """Score arm ``i`` on its next ``size`` examples (fewer if the examples, or the allowance
        unless told otherwise, run out); returns how many were scored."""
        room = len(self.examples) - self.seen[i]
        take = int(min(size, room, self.left) if within_allowance else min(size, room))
        if take <= 0:
            return 0
        start = self.seen[i]
        out = self.score(self.candidates[i], [self.examples[j] for j in self.order[start: start + take]])
        self.outputs[i].append(out)
        self.total[i] += sum(_scores(out))
        self.seen[i] += take
        self.requested += take
        self.pulls += 1
        return take

    def fill(self, arms: Sequence[int]) -> None:
        """Spend what is left evenly over ``arms`` (water-filling past exhausted ones)."""
        active = [i for i in arms if not self.exhausted(i)]
        while self.left > 0 and active:
            share, extra = divmod(int(self.left), len(active))
            for rank, i in enumerate(active):
                self.pull(i, share + (1 if rank < extra else 0))
            active = [i for i in active if not self.exhausted(i)]

    def complete(self, arms: Sequence[int]) -> None:
        """Score ``arms`` on every example they have not seen, past the allowance."""
        for i in arms:
            self.pull(i, len(self.examples), within_allowance=False)

    def ranking(self) -> list[int]:
        """Arm indices best first: arms not eliminated by mean (unpulled last, ties keep pool
        order), then eliminated arms, the last eliminated first."""
        out = set(self.rejected)
        alive = [i for i in range(len(self)) if i not in out]
        return sorted(alive, key=lambda i: (self.seen[i] == 0, -self.mean(i), i)) + self.rejected[::-1]

    def result(self, i: int) -> EvalResult | None:
        """Arm ``i``'s scores on every example it saw, as one result (None if never pulled or when
        ``score`` returns bare scores)."""
        parts = self.outputs[i]
        if not parts or not all(isinstance(p, EvalResult) for p in parts):
            return None
        return parts[0] if len(parts) == 1 else EvalResult.joined(parts)


# -- strategies for a pool -------------------------------------------------------------------------

def select_full(arms: Arms, **_: Any) -> None:
    """Every candidate on every example, one request each, in pool order."""
    for i in range(len(arms)):
        arms.pull(i, len(arms.examples))


def select_halving(arms: Arms, keep: int = 1, **_: Any) -> None:
    """Sequential halving down to ``keep`` arms, then what is left to the survivors."""
    alive = list(range(len(arms)))
    rounds = halving_rounds(len(arms), keep)
    for r in range(rounds):
        share = max(1, int(arms.left) // ((rounds - r) * len(alive)))  # unspent budget carries over
        for i in alive:
            arms.pull(i, share)
        ranked = sorted(alive, key=lambda i: (-arms.mean(i), i))
        survivors = max(keep, math.ceil(len(alive) / 2))
        arms.rejected += ranked[survivors:][::-1]  # the worst eliminated first
        alive = ranked[:survivors]
    arms.fill(alive)


def logbar(m: int) -> float:
    """Successive rejects' log-bar: 1/2 + sum_{i=2..m} 1/i."""
    return 0.5 + sum(1.0 / i for i in range(2, m + 1))


def select_rejects(arms: Arms, keep: int = 1, **_: Any) -> None:
    """Continuous rejects (CR-A) until ``keep`` arms are active or the allowance is spent."""
    budget = arms.left
    active = list(range(len(arms)))
    while arms.left > 0:
        open_arms = [i for i in active if not arms.exhausted(i)]
        if not open_arms:
            break
        arms.pull(min(open_arms, key=lambda i: (arms.seen[i], i)), 1)
        if len(active) <= keep or any(arms.seen[i] == 0 for i in active):
            continue
        worst = min(active, key=lambda i: (arms.mean(i), -i))  # ties: the newer candidate
        if arms.seen[worst] <= max((arms.seen[i] for i in arms.rejected), default=0):
            continue
        others = [arms.mean(i) for i in active if i != worst]
        rest = budget - sum(arms.seen[i] for i in arms.rejected)
        beta = sum(arms.seen[i] for i in active) * logbar(len(active)) / rest if rest > 0 else math.inf
        if sum(others) / len(others) - arms.mean(worst) > 1 / math.sqrt(beta) - 1:
            active.remove(worst)
            arms.rejected.append(worst)


# -- ProTeGi's selectors (its allowance B; see optimizers/protegi.py for the decisions) -------------

def select_uniform(arms: Arms, **_: Any) -> None:
    """Every candidate on (about) B / n examples: ProTeGi's brute-force evaluator."""
    fair = arms.rng.permutation(len(arms)).tolist()  # who gets the remainder's extra example
    arms.fill(fair)


def select_ucb(arms: Arms, per_round: int = 8, batch: int = 32, c: float = 1.0, **_: Any) -> None:
    """UCB: repeatedly pull the ``per_round`` arms with the largest upper confidence bound."""
    tiebreak = arms.rng.permutation(len(arms)).tolist()

    def bound(i: int, t: int) -> float:
        if arms.seen[i] == 0:
            return math.inf
        return arms.mean(i) + c * math.sqrt(math.log(t) / arms.seen[i])

    while arms.left > 0:
        active = [i for i in range(len(arms)) if not arms.exhausted(i)]
        if not active:
            break
        t = arms.pulls + 1
        chosen = sorted(active, key=lambda i: (-bound(i, t), tiebreak[i]))[:per_round]
        for i in chosen:
            arms.pull(i, batch)


def select_successive_rejects(arms: Arms, keep: int = 4, **_: Any) -> None:
    """Successive rejects until ``keep`` arms survive; the schedule spends the allowance exactly."""
    n = len(arms)
    rejections = n - keep
    alive = list(range(n))
    if rejections > 0:
        harmonic = sum(1.0 / i for i in range(1, rejections + 1))
        scale = arms.left / (harmonic + keep)
        done = 0
        for k in range(1, rejections + 1):
            target = max(done + 1, int(scale / (rejections + 1 - k)))
            for i in alive:
                arms.pull(i, target - arms.seen[i])
            done = target
            worst = min(alive, key=lambda i: (arms.mean(i), -i))
            alive.remove(worst)
            arms.rejected.append(worst)
    arms.fill(alive)


SELECTORS: dict[str, Callable[..., None]] = {
    "full": select_full, "halving": select_halving, "rejects": select_rejects,
    "ucb": select_ucb, "successive_rejects": select_successive_rejects, "uniform": select_uniform}


# -- a pool -----------------------------------------------------------------------------------------

def halving_rounds(n: int, keep: int = 1) -> int:
    """Rounds that halve ``n`` arms down to ``keep``: ceil(log2(n / keep)), 0 when n <= keep."""
    return math.ceil(math.log2(n / keep)) if n > keep >= 1 else 0


def race_budget(n: int, size: int, keep: int = 1) -> int:
    """The race's calls for ``n`` candidates on ``size`` examples: per round a full score's worth,
    or one example per candidate when there are more candidates than examples."""
    return halving_rounds(n, keep) * max(size, n)


def pool_cost(strategy: str, n: int, size: int, keep: int = 1) -> int:
    """The most scoring a pool of ``n`` candidates on ``size`` examples costs: ``n x size`` in full,
    else the race and the ``keep`` best completed, when that is less."""
    full = n * size
    if strategy == "full":
        return full
    return min(full, race_budget(n, size, keep) + min(keep, n) * size)


def races(strategy: str, n: int, size: int, keep: int = 1) -> bool:
    """Whether ``strategy`` races a pool of ``n`` on ``size`` examples (else it is scored in full)."""
    return strategy != "full" and pool_cost(strategy, n, size, max(1, min(keep, n))) < n * size


def score_pool(candidates: Sequence[Any], examples: Sequence[Example], score: Score, strategy: str = "full",
               keep: int = 1, rng: np.random.Generator | None = None, budget: int | None = None) -> Arms:
    """Score ``candidates`` on ``examples`` as ``strategy`` allocates the calls (module docstring).

    ``score(candidate, batch)`` scores one candidate on a batch (an EvalResult or per-example
    scores; it is the caller's one scoring path, so the cache and the budget see every call).
    ``keep`` candidates end up scored on every example; ``budget`` replaces the race's default
    (``race_budget``). ``rng`` draws the shared order of the examples (a race only). Returns the
    arms: ``mean(i)``, ``seen[i]`` (examples candidate i was scored on), ``requested`` (the calls
    asked for; cached answers cost nothing), ``ranking()``, ``result(i)``."""
    if strategy not in STRATEGIES:
        raise ValueError(f"candidate_eval must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    n, size = len(candidates), len(examples)
    keep = max(1, min(keep, n))
    if not races(strategy, n, size, keep):
        arms = Arms(candidates, examples, score)
        select_full(arms)
        return arms
    arms = Arms(candidates, examples, score, race_budget(n, size, keep) if budget is None else budget, rng=rng)
    SELECTORS[strategy](arms, keep=keep)
    arms.complete(arms.ranking()[:keep])
    return arms
