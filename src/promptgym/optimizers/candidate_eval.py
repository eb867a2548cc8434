"""``candidate_eval`` and ``saved_calls``: how a method scores a pool of candidates, shared by the
methods that score pools (APE, OPRO, EvoPrompt GA, Promptbreeder, GRIPS; ProTeGi's own ``selector``
offers the same strategies within its bandit allowance).

``candidate_eval=full`` (the default) is each paper's scoring: every candidate on every example.
``halving`` and ``rejects`` race the pool (``evaluation.arms``: sequential halving and continuous
rejects, as TRIPLE does): the candidates a method goes on with are scored on every example, as in
full, and clearly worse ones on a few. A race costs far fewer calls; ``saved_calls`` says where
they go:

- ``selection`` (default): the method runs the plan it makes in full (the same candidates, the
  same steps) and stops there; methods that otherwise go on past their plan while the budget pays
  (OPRO, EvoPrompt GA, Promptbreeder) do not (``last_step``). The calls a race saves stay in the
  budget for what comes after the search. The runner's final selection (fixed or sequential)
  spends at most the reserve it kept back before the search, (k + 1) x dev calls, so today they
  are left unspent: the run costs less.
- ``candidates``: the method proposes more candidates per pool, as many as its races can score for
  the calls its full plan would spend (``more_candidates``).

Racing is not the default because it is not what the papers do, and because a candidate eliminated
after a few examples has a noisy score: a method that reads every candidate's score (OPRO's
meta-prompt) then reads some noisy ones, and a good candidate that starts badly can be lost. Which
use of the saved calls helps more is for a benchmark to say.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from promptgym.evaluation.arms import STRATEGIES
from promptgym.optimizers.params import UNSTATED, Param

if TYPE_CHECKING:  # pragma: no cover
    from promptgym.optimizers.base import Context

SAVED_CALLS = ("selection", "candidates")
PARAMETERS = {
    "candidate_eval": Param("full", "how a pool of candidates is scored: full (every candidate on every example), "
                            "halving or rejects (a race: the best on every example, clearly worse ones on "
                            "fewer; see docs/candidate-eval.md)", choices=STRATEGIES),
    "saved_calls": Param("selection", "with halving or rejects, what the calls a race saves go to: selection "
                         "(the plan stays; the calls are left in the budget) or candidates (more candidates "
                         "per pool, for the calls full would spend)", choices=SAVED_CALLS, paper=UNSTATED),
}
MOST = 64  # more_candidates never asks for more than this many times the full plan's count


def racing(params: dict[str, Any]) -> bool:
    return params.get("candidate_eval", "full") != "full"


def last_step(params: dict[str, Any], planned: int, most: int) -> int:
    """The step a method ends at: ``most`` (methods that go on past their plan while the budget
    pays), or with a race and ``saved_calls=selection`` the plan's ``planned``: the saved calls are
    left, not spent on more steps."""
    return planned if racing(params) and params["saved_calls"] == "selection" else most


def more_candidates(ctx: "Context", params: dict[str, Any], count: int, full_cost: Callable[[int], float],
                    race_cost: Callable[[int], float], name: str) -> int:
    """``count`` candidates per pool, or with ``saved_calls=candidates`` (and a race) the most whose
    raced cost stays within what ``count`` costs in full; never fewer. Recorded in
    ``ctx.stats["candidate_eval"]`` (``name``: the planned count, then the one used)."""
    if not racing(params) or params["saved_calls"] != "candidates":
        return count
    target, more = full_cost(count), count
    while more < MOST * max(count, 1) and race_cost(more + 1) <= target:
        more += 1
    ctx.stats.setdefault("candidate_eval", {})[name] = dict(planned=count, used=more)
    return more
