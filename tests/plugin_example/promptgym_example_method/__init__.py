"""An example promptgym method in a package of its own: the optimizer model rewrites the best
instruction so far, and a rewrite replaces it when it scores higher on the training split.

Everything a method needs comes from ``promptgym.optimizers``: the ``Optimizer`` base class (plan in
``setup``, one step in ``step``, ``state.finished`` when done), typed ``Param``s, and the ``Context``
(``ctx.ask`` for the optimizer model, ``ctx.evaluate`` to score, ``ctx.add`` to record a candidate
with its parents), and ``budget.PlannedSpend`` to end cleanly when the budget cannot pay for another
round. The base class keeps the hard budget, the stoppers and the result: by default the best
candidate on the training split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from promptgym.optimizers import Context, Optimizer, budget
from promptgym.optimizers.base import State
from promptgym.optimizers.metaprompt import MetaPrompt
from promptgym.optimizers.params import Param
from promptgym.optimizers.proposals import clean_instruction
from promptgym.tasks.prompt import Prompt

REWRITE = MetaPrompt("example-rewrite.rewrite",
                     "Rewrite this instruction so that it is clearer and more precise. Reply with the new "
                     "instruction only.\n\nInstruction: {{ instruction }}",
                     parser=clean_instruction, max_tokens=60)


@dataclass
class RewriteState(State):
    best: Prompt | None = None
    best_score: float = 0.0
    rounds: int = 0
    spend: budget.PlannedSpend = field(default_factory=budget.PlannedSpend)  # this run's calls


class RewriteSearch(Optimizer):
    name = "example-rewrite"
    summary = "Example plugin: the optimizer model rewrites the best instruction; a rewrite that scores higher replaces it"
    parameters = {
        "rounds": Param(3, "rewrite rounds (a step each)", low=1),
        "per_round": Param(2, "rewrites asked for per round", low=1),
        "temperature": Param(0.8, "sampling temperature of the rewrites", low=0),
    }

    def setup(self, ctx: Context) -> RewriteState:
        return RewriteState(best=ctx.initial, spend=budget.PlannedSpend.of(ctx))

    def step(self, ctx: Context, state: RewriteState) -> None:
        if state.rounds == 0:  # the first step scores the start
            state.best_score = ctx.evaluate(ctx.initial, ctx.train).mean
            state.spend.add(len(ctx.train))
        parent = state.best
        replies = ctx.ask([("user", REWRITE.render(instruction=parent.instruction))],
                          n=self.params["per_round"], temperature=self.params["temperature"],
                          max_tokens=REWRITE.max_tokens)
        texts = dict.fromkeys(REWRITE.parse(r) for r in replies)  # in order, each once
        state.spend.add(len(replies))
        for text in [t for t in texts if t and t != parent.instruction]:
            state.spend.add(len(ctx.train))
            candidate = ctx.add(parent.with_instruction(text), [parent], "example-rewrite:rewrite")
            score = ctx.evaluate(candidate, ctx.train).mean
            if score > state.best_score:
                state.best, state.best_score = candidate, score
        state.rounds += 1
        if state.rounds >= self.params["rounds"]:
            state.finished = "done"
        elif not state.spend.affords(self.params["per_round"] * (1 + len(ctx.train))):
            state.finished = "budget"  # another round could not score all its rewrites
