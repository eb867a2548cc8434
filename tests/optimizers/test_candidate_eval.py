"""``candidate_eval`` and ``saved_calls`` in every method that scores a pool, on the scripted model
(not a language model): a race spends fewer task calls than full on the same pool and the method
still ranks its candidates; ``saved_calls=candidates`` buys more candidates for full's calls."""

from __future__ import annotations

import pytest

from promptgym.models.scripted import _digest
from promptgym.optimizers import REGISTRY
from promptgym.optimizers.base import PARTIAL
from promptgym.optimizers.stopping import Stop
from support import Recording, RecordingBackend
from promptgym.testing.scripted import scripted_logprob, scripted_reply

POOL_METHODS = ("ape", "evoprompt-ga", "grips", "opro", "promptbreeder")
# Promptbreeder's race makes a generation's mutants before scoring any, so its random draws (and
# with them the mutants after the first) differ from full's, where each mutant is scored at once.
SAME_POOL = ("ape", "evoprompt-ga", "grips", "opro")


def unique_reply(request):
    """The suite's instruction-like replies, each made distinct so no candidate is dropped as a copy."""
    text = scripted_reply(request)
    tag = f" (variant {_digest(request) % 10**6})"
    for end in ("</INS>", "</START>", "</END>", "</prompt>"):
        if text.endswith(end):
            return text[: -len(end)] + tag + end
    return text + tag


# GRIPS draws 5 edits, of which the scripted model's often leave 3 distinct: too few to race.
MORE = {"grips": {"candidates": 8}}
# Their first step builds and scores the initial population in full; the first generation is the second.
FIRST_GENERATION = {"evoprompt-ga": 2, "promptbreeder": 2}


def one_step(scripted_context, method: str, whole: bool = False, **params):
    """One step, or one generation (or with ``whole`` the whole run) of ``method`` on 40 training examples, on a fresh
    cache: the context, the calls (task model's, and all), the method and its answer."""
    backend = RecordingBackend(reply=unique_reply, option_logprob=scripted_logprob)
    cache = f"{method}-{'-'.join(f'{k}={v}' for k, v in params.items())}.sqlite"
    ctx = scripted_context(seed=1, train=40, backend=backend, cache_name=cache)
    ctx.recorder = Recording()
    rows: list[dict] = []
    ctx.evaluator.ledger = rows.extend
    optimizer = REGISTRY[method](**{**MORE.get(method, {}), **params})
    best = optimizer.run(ctx, None if whole else Stop(max_steps=FIRST_GENERATION.get(method, 1)))
    calls = dict(task=sum(r["role"] == "task" and not r["cached"] for r in rows),
                 all=sum(not r["cached"] for r in rows))
    return ctx, calls, optimizer, best


def test_full_is_every_method_default_and_the_papers():
    for method in POOL_METHODS:
        param = REGISTRY[method].parameters["candidate_eval"]
        assert param.default == "full" and param.paper_value() == "full"
        assert REGISTRY[method].defaults["saved_calls"] == "selection"
    assert "candidate_eval" not in REGISTRY["evoprompt-de"].parameters  # duels, not pools


@pytest.mark.parametrize("strategy", ["halving", "rejects"])
@pytest.mark.parametrize("method", POOL_METHODS)
def test_a_race_spends_fewer_task_calls_on_the_same_pool_and_still_ranks(method, strategy, scripted_context):
    full_ctx, full, _, _ = one_step(scripted_context, method)
    ctx, raced, optimizer, best = one_step(scripted_context, method, candidate_eval=strategy)
    assert raced["task"] < full["task"]
    stats = ctx.stats["candidate_eval"]["raced"]
    assert stats["requested"] < stats["full"]
    if method in SAME_POOL:
        assert [c[:2] for c in ctx.recorder.candidates] == [c[:2] for c in full_ctx.recorder.candidates]
    # partly scored candidates are recorded apart, and the method's answer is one it scored in full
    assert any(split.endswith(PARTIAL) for _, split, _ in ctx.recorder.scored)
    ranking = optimizer.ranking(ctx, ctx.state)
    assert all(not split.endswith(PARTIAL) for p, split, _ in ctx.recorder.scored if p == best.id) or best == ctx.initial
    if method != "grips":  # GRIPS ranks the edits it accepted; one step may accept none
        assert ranking and ranking[0] == best


@pytest.mark.parametrize("method", POOL_METHODS)
def test_saved_calls_to_candidates_buys_more_candidates_for_the_calls_of_full(method, scripted_context):
    # Promptbreeder buys a larger population, whose first scores are full ones: equal over a whole run
    run = dict(whole=True, generations=3) if method == "promptbreeder" else {}
    _, full, _, _ = one_step(scripted_context, method, **run)
    ctx, more, _, _ = one_step(scripted_context, method, candidate_eval="halving", saved_calls="candidates", **run)
    _, kept, _, _ = one_step(scripted_context, method, candidate_eval="halving", **run)
    (name, plan), = [(k, v) for k, v in ctx.stats["candidate_eval"].items() if k != "raced"]
    assert plan["used"] > plan["planned"], name
    assert kept["all"] < more["all"] <= full["all"]
    assert ctx.stats["candidate_eval"]["raced"]["candidates"] > 0


def test_selection_keeps_the_plan_and_leaves_the_calls(scripted_context):
    full_ctx, full, _, _ = one_step(scripted_context, "opro")
    ctx, raced, _, _ = one_step(scripted_context, "opro", candidate_eval="halving")
    assert ctx.stats["opro"]["per_step"] == full_ctx.stats["opro"]["per_step"] == 8
    assert ctx.stats["opro"]["scored"] == full_ctx.stats["opro"]["scored"]
    assert full["all"] - raced["all"] == full["task"] - raced["task"] > 0


@pytest.mark.parametrize("method", ["opro", "evoprompt-ga", "promptbreeder"])
def test_selection_stops_at_the_plan_where_full_goes_on_past_it(method, scripted_context):
    budget = {"opro": 500, "evoprompt-ga": 900, "promptbreeder": 700}[method]
    runs = {}
    for name, params in (("full", {}), ("selection", {"candidate_eval": "halving"})):
        backend = RecordingBackend(reply=unique_reply, option_logprob=scripted_logprob)
        ctx = scripted_context(budget=budget, seed=1, train=40, backend=backend, cache_name=f"{method}-{name}.sqlite")
        REGISTRY[method](**params).run(ctx)
        key = "opro" if method == "opro" else method.split("-")[0]
        steps = ctx.stats[key]
        runs[name] = (ctx.evaluator.budget.spent, steps.get("steps_run", steps.get("generations_run")),
                      steps.get("steps_planned", steps.get("generations_planned")), ctx.stats["stopped_by"])
    spent, run, planned, stopped = runs["selection"]
    assert (run, stopped) == (planned, "done")
    assert runs["full"][1] > runs["full"][2]  # full spends what is left on steps past its plan
    assert spent < runs["full"][0] - budget / 4


@pytest.mark.parametrize("selector", ["halving", "rejects"])
def test_protegi_races_its_beam_within_its_allowance(selector, scripted_context):
    _, full, _, _ = one_step(scripted_context, "protegi")
    ctx, raced, optimizer, best = one_step(scripted_context, "protegi", selector=selector)
    round_ = ctx.stats["protegi"]["rounds"][0]
    usable = round_["candidates"] * len(ctx.train)  # less than the allowance: every arm sees every example
    assert round_["candidates"] > 4 and round_["requested"] == min(ctx.stats["protegi"]["plan"]["allowance"], usable)
    assert raced["task"] == full["task"]  # the same allowance as UCB's
    assert best == ctx.state.beam[0] and len(ctx.state.beam) == 4
