"""APE on the scripted model: hard budget, determinism, no test leakage, degenerate proposals."""

from __future__ import annotations

import re

import pytest

from promptgym.models.scripted import ScriptedBackend, _digest
from promptgym.optimizers.ape import PROPOSAL, ApeOptimizer
from promptgym.optimizers import get_method
from support import Recording


def _unique_reply(request):
    """A distinct sentence for every request, so no proposal is dropped as a duplicate."""
    return f"Sort each review into its sentiment class, take {_digest(request) % 10**9}."


def _run(scripted_context, budget=None, seed=0, backend=None, cache_name="cache.sqlite", **params):
    backend = backend or ScriptedBackend(reply=_unique_reply)
    ctx = scripted_context(budget=budget, seed=seed, backend=backend, cache_name=cache_name)
    ctx.recorder = Recording()
    best = ApeOptimizer(**params).run(ctx)
    return ctx, backend, best


def test_registered_with_paper_defaults():
    assert get_method("ape") is ApeOptimizer
    d = ApeOptimizer.defaults
    assert (d["num_subsamples"], d["prompts_per_subsample"], d["num_demos"]) == (5, 10, 5)
    assert d["temperature"] == 0.9 and d["iterations"] == 0


@pytest.mark.parametrize("budget", [1, 5, 17, 40, 73, 150])
def test_never_exceeds_the_budget_and_uses_all_of_it_when_cut_short(scripted_context, budget):
    ctx, backend, best = _run(scripted_context, budget=budget, iterations=3)
    assert backend.calls <= budget
    assert ctx.evaluator.budget.spent == backend.calls  # every call charged (no held-out calls here)
    if ctx.stats.get("budget_exhausted"):
        assert backend.calls == budget  # stopped only after using exactly what was left
    assert best.instruction


def test_small_budget_is_exhausted_exactly(scripted_context):
    ctx, backend, _ = _run(scripted_context, budget=30, iterations=2)
    assert ctx.stats.get("budget_exhausted") is True
    assert backend.calls == 30


def test_fits_proposals_to_the_budget_without_running_out(scripted_context):
    # 12 train examples -> 13 calls per proposal (propose + score); 40 // 13 = 3 proposals
    ctx, backend, best = _run(scripted_context, budget=40)
    assert ctx.stats["proposed"] == 3 and ctx.stats["dropped"] == {}
    assert "budget_exhausted" not in ctx.stats
    assert backend.calls == 3 + 3 * 12
    assert best.instruction != ctx.initial.instruction


def test_best_is_the_top_train_score(scripted_context):
    ctx, _, best = _run(scripted_context, budget=100)
    train_scores = {pid: ctx.results[(pid, split)].mean for pid, split in ctx.results if split == "train"}
    assert train_scores[best.id] == max(train_scores.values())
    assert ctx.best("train")[0] == best


def test_deterministic_for_a_seed(scripted_context):
    runs = [_run(scripted_context, budget=60, seed=3, cache_name=f"c{i}.sqlite", iterations=1) for i in range(2)]
    (ctx_a, backend_a, best_a), (ctx_b, backend_b, best_b) = runs
    assert ctx_a.recorder.candidates == ctx_b.recorder.candidates
    assert ctx_a.recorder.scored == ctx_b.recorder.scored
    assert best_a == best_b and ctx_a.stats == ctx_b.stats
    assert backend_a.calls == backend_b.calls
    other, _, _ = _run(scripted_context, budget=60, seed=4, cache_name="c2.sqlite", iterations=1)
    assert other.recorder.candidates != ctx_a.recorder.candidates


def test_a_rerun_on_the_same_cache_is_free_and_identical(scripted_context):
    ctx_a, backend_a, best_a = _run(scripted_context, budget=60, seed=1)
    ctx_b, backend_b, best_b = _run(scripted_context, budget=60, seed=1)
    assert backend_a.calls > 0 and backend_b.calls == 0
    assert best_a == best_b and ctx_a.recorder.candidates == ctx_b.recorder.candidates


def test_never_evaluates_test_examples(scripted_context):
    ctx, _, _ = _run(scripted_context, budget=200, iterations=1)
    test_ids = {e.id for e in ctx.test_examples}
    seen = {eid for _, _, ids in ctx.recorder.scored for eid in ids}
    assert seen and seen <= {e.id for e in ctx.train}
    assert not seen & test_ids


def test_lineage_of_candidates(scripted_context):
    ctx, _, _ = _run(scripted_context, budget=200, iterations=1)
    ops = {op for _, _, _, op in ctx.recorder.candidates}
    assert ops == {"ape:induce", "ape:resample"}
    known = {ctx.initial.id} | {cid for cid, _, _, _ in ctx.recorder.candidates}
    for cid, _, parents, op in ctx.recorder.candidates:
        assert len(parents) == 1 and parents[0] in known
        if op == "ape:induce":
            assert parents == (ctx.initial.id,)


LONG = " ".join(["Carefully read every word of the review and then decide"] * 20)  # 200 words


def _degenerate_reply(request):
    """Proposals cycle through: empty, one word, 200 words, two demo copies, one good sentence."""
    if request.answer_prefix != PROPOSAL.cue:
        return "Decide which sentiment label fits the review."
    demo = re.search(r"Input: (.*)\n", request.messages[-1][1]).group(1)
    kind = request.sample % 6
    return ["", "Classify", LONG,
            f"Input: {demo}\nOutput: positive",
            f"say whether {demo} is good",
            "to name the sentiment the review expresses."][kind]


def test_degenerate_proposals_are_dropped_and_counted(scripted_context):
    backend = ScriptedBackend(reply=_degenerate_reply)
    ctx, backend, best = _run(scripted_context, backend=backend, num_subsamples=2, prompts_per_subsample=6)
    assert ctx.stats["proposed"] == 12
    assert ctx.stats["dropped"] == {"too_short": 4, "too_long": 2, "copies_demos": 4, "duplicate": 1}
    kept = [(text, op) for _, text, _, op in ctx.recorder.candidates]
    assert kept == [("Name the sentiment the review expresses.", "ape:induce")]
    assert best.instruction == "Name the sentiment the review expresses."
    # dropped proposals cost nothing beyond their generation: 12 proposals + 12 scoring calls
    assert backend.calls == 12 + 12


def test_all_proposals_degenerate_falls_back_to_the_initial_prompt(scripted_context):
    backend = ScriptedBackend(reply=lambda request: "")
    ctx, backend, best = _run(scripted_context, backend=backend, num_subsamples=1, prompts_per_subsample=4)
    assert best == ctx.initial
    assert ctx.stats["dropped"] == {"too_short": 4}
    assert backend.calls == 4


def test_unknown_parameter_is_rejected():
    from promptgym.errors import PromptgymError

    with pytest.raises(PromptgymError, match="unknown parameter"):
        ApeOptimizer(nope=1)
