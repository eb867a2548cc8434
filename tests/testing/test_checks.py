"""The public conformance checks (``promptgym.testing.checks``) pass a method that keeps the
contract and each fails, naming the rule, a method that breaks it. The methods here are small
searches on the scripted model (a deterministic stand-in, not a language model)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

import pytest

from promptgym.optimizers import Context, Optimizer
from promptgym.optimizers.base import State
from promptgym.optimizers.params import Param
from promptgym.tasks.prompt import LAYOUTS, Prompt
from promptgym.testing import (ConformanceError, check_budget, check_capabilities, check_deterministic,
                               check_hash_seed, check_lineage, check_method, check_no_test_leak, check_resume,
                               check_runs_twice_alike)

WORDS = ("Classify the review.", "Label the sentiment.", "Decide the feeling of the text.",
         "Say whether the review is positive.", "Tag the opinion.")


@dataclass
class SearchState(State):
    rounds: int = 0
    seen: list[str] = field(default_factory=list)


class Honest(Optimizer):
    """Asks for two rewrites per round of the instruction and scores each on train."""

    name = "honest"
    parameters = {"rounds": Param(3, "rounds", low=1)}

    def setup(self, ctx: Context) -> SearchState:
        ctx.evaluate(ctx.initial, ctx.train)
        return SearchState()

    def texts(self, ctx: Context, state: SearchState) -> list[str]:
        return ctx.ask([("user", f"Rewrite: {ctx.initial.instruction}")], n=2)

    def step(self, ctx: Context, state: SearchState) -> None:
        for text in self.texts(ctx, state):
            ctx.evaluate(self.record(ctx, ctx.initial.with_instruction(text)), ctx.train)
        state.rounds += 1
        if state.rounds >= self.params["rounds"]:
            state.finished = "done"

    def record(self, ctx: Context, prompt: Prompt) -> Prompt:
        return ctx.add(prompt, [ctx.initial], "honest:rewrite")


class UnseededRandom(Honest):
    name = "unseeded"

    def texts(self, ctx: Context, state: SearchState) -> list[str]:
        return [f"Classify review {random.getrandbits(64)}."]  # the global generator, not ctx.rng


class ShowsTheTestSplit(Honest):
    name = "leaky"

    def texts(self, ctx: Context, state: SearchState) -> list[str]:
        shown = ctx.test_examples[0].input  # type: ignore[attr-defined]  (a method must never look)
        return ctx.ask([("user", f"Rewrite for inputs like: {shown}")], n=1)


class ForgetsParents(Honest):
    name = "orphans"

    def record(self, ctx: Context, prompt: Prompt) -> Prompt:
        return ctx.add(prompt, [Prompt("A parent nobody recorded.")], "orphans:rewrite")


class ReadsTheMeter(Honest):
    """Decides by the budget meter: a resumed run starts with it at what the killed one spent."""

    name = "meter"

    def texts(self, ctx: Context, state: SearchState) -> list[str]:
        n = 2 if ctx.evaluator.budget.spent <= len(ctx.train) else 1  # two in the first round only
        return ctx.ask([("user", f"Rewrite: {ctx.initial.instruction}")], n=n)


class KeepsStateOnItself(Honest):
    name = "stateful"

    def __init__(self, **params):
        super().__init__(**params)
        self.runs = 0

    def setup(self, ctx: Context) -> SearchState:
        self.runs += 1
        return super().setup(ctx)

    def texts(self, ctx: Context, state: SearchState) -> list[str]:
        return ctx.ask([("user", f"Rewrite ({self.runs}): {ctx.initial.instruction}")], n=2)


class HashOrdered(Honest):
    name = "hashed"

    def texts(self, ctx: Context, state: SearchState) -> list[str]:
        return list({*WORDS})[:2]  # set order of strings: differs with PYTHONHASHSEED


class SwallowsBudget(Honest):
    """Says the budget ran out (as the base does) while it still had calls to spend."""

    name = "swallow"

    def step(self, ctx: Context, state: SearchState) -> None:
        ctx.stats["budget_exhausted"] = True
        state.finished = "budget"


class SaysItNeedsNoOptimizerModel(Honest):
    name = "no-optimizer"
    uses_optimizer_model = False  # yet it asks for rewrites


class SwitchesLayoutsSilently(Honest):
    name = "layouts"  # edits_layout stays False

    def record(self, ctx: Context, prompt: Prompt) -> Prompt:
        other = next(layout for name, layout in LAYOUTS.items() if name != ctx.initial.layout.name)
        return ctx.add(replace(prompt, layout=other), [ctx.initial], "layouts:switch")


def test_a_method_that_keeps_the_contract_passes_every_check(tmp_path):
    check_method(Honest, tmp_path)


@pytest.mark.parametrize("method, check, rule", [
    (UnseededRandom, check_deterministic, "two runs with the same seed"),
    (ShowsTheTestSplit, check_no_test_leak, "test inputs reached the model"),
    (ReadsTheMeter, check_resume, "other requests than the whole run"),
    (KeepsStateOnItself, check_runs_twice_alike, "a second run of the same instance went differently"),
    (HashOrdered, check_hash_seed, "depend on PYTHONHASHSEED"),
    (SaysItNeedsNoOptimizerModel, check_capabilities, "uses_optimizer_model = False, yet asked the optimizer model"),
    (SwitchesLayoutsSilently, check_capabilities, "edits_layout = False, yet recorded candidates with layouts"),
], ids=lambda v: getattr(v, "name", "") if isinstance(v, type) else "")
def test_a_broken_rule_fails_its_check_by_name(method, check, rule, tmp_path):
    with pytest.raises(ConformanceError, match=rule) as err:
        check(method, tmp_path)
    assert str(err.value).startswith(f"{method.name}: ")


def test_lineage_names_the_missing_parent(tmp_path):
    with pytest.raises(ConformanceError, match="parents never recorded as candidates"):
        check_lineage(ForgetsParents, tmp_path, 40)


def test_the_budget_check_catches_a_false_ran_out(tmp_path):
    with pytest.raises(ConformanceError, match="says the budget ran out after 8 of 150 calls"):
        check_budget(SwallowsBudget, tmp_path, 150)
