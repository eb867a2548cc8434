"""OPRO: meta-prompt contents (ascending trajectory, top-k, exemplars), sampling, parsing,
de-duplication, budget plan and stop criterion, on the scripted model."""

from __future__ import annotations

import itertools

import pytest

from promptgym import api
from promptgym.models.base import GenerationRequest
from promptgym.models.scripted import ScriptedBackend
from promptgym.optimizers.opro import META_PROMPT, OproOptimizer, build_meta_prompt, bucket, trajectory
from promptgym.optimizers.proposals import parse_first
from promptgym.tasks.prompt import Prompt

from support import make_examples


def test_trajectory_is_ascending_and_keeps_the_top_k():
    history = [("a", 0.5), ("b", 0.1), ("c", 0.9), ("d", 0.3), ("e", 0.7)]
    shown = trajectory(history, top_k=3, threshold=0.0, buckets=100)
    assert [h["text"] for h in shown] == ["a", "e", "c"]  # the 3 best, worst of them first
    assert [h["score"] for h in shown] == [50, 70, 90]


def test_trajectory_threshold_ties_and_buckets():
    history = [("x", 0.2), ("y", 0.6), ("z", 0.6), ("w", 0.05)]
    shown = trajectory(history, top_k=20, threshold=0.1, buckets=100)
    assert [h["text"] for h in shown] == ["x", "y", "z"]  # w below threshold; tie keeps order
    assert bucket(0.456, 100) == 46 and bucket(1.0, 20) == 20 and bucket(-1, 100) == 0


def test_meta_prompt_lists_history_ascending_then_exemplars():
    examples = make_examples(3)
    history = [(f"instruction number {i}", s) for i, s in enumerate([0.4, 0.2, 0.8, 0.6])]
    initial = Prompt("Classify.", verbalizers=(("positive", "good"),))
    meta = build_meta_prompt(history, examples, initial, top_k=3)
    positions = [meta.find(f"<INS>instruction number {i}</INS>") for i in (0, 3, 2)]
    assert all(p >= 0 for p in positions) and positions == sorted(positions)
    assert "instruction number 1" not in meta  # dropped by top-k
    assert "Score: 40" in meta and "Score: 80" in meta
    last_history = meta.find("instruction number 2")
    for ex in examples:
        assert last_history < meta.find(ex.input)  # history before exemplars (the code's default)
    assert "Correct answer: good" in meta  # the starting prompt's label word
    assert meta.rstrip().endswith("</INS>.")


def test_meta_prompt_does_not_interpret_braces():
    meta = build_meta_prompt([("Say {{ 7*7 }} {% if x %}", 0.5)], make_examples(1), Prompt("p"))
    assert "{{ 7*7 }}" in meta and "49" not in meta


def test_parse_messy_outputs():
    assert META_PROMPT.parse("Classify the mood.</INS> trailing") == "Classify the mood."
    assert META_PROMPT.parse("\nDecide the label of the text.\n\nmore junk") == \
        "Decide the label of the text."
    assert parse_first("Sure! <ins>Tag the review by mood.</ins>", "INS") == "Tag the review by mood."
    assert META_PROMPT.parse("<INS><INS>Rate it well now</INS>") == "Rate it well now"
    assert parse_first('New instruction: "Say the label."', "INS") == "Say the label."
    assert META_PROMPT.parse("\n<INS>\n<INS>\n") == ""


class Recorder:
    """A reply function that records the requests and answers from a list of texts in turn."""

    def __init__(self, texts):
        self.requests: list[GenerationRequest] = []
        self.texts = itertools.cycle(texts) if not callable(texts) else None
        self.fn = texts if callable(texts) else None

    def __call__(self, request: GenerationRequest) -> str:
        self.requests.append(request)
        return self.fn(request) if self.fn else next(self.texts)


def test_step_samples_per_step_at_paper_temperature(scripted_context):
    replies = Recorder([f"Classify review kind {i} carefully.</INS>" for i in range(100)])
    ctx = scripted_context(budget=None, backend=ScriptedBackend(reply=replies))
    OproOptimizer(steps=2, patience=0).run(ctx)
    assert len(replies.requests) == 16
    first = replies.requests[:8]
    assert {r.temperature for r in first} == {1.0}
    assert len({r.sample for r in first}) == 8 and len({r.messages for r in first}) == 1
    assert first[0].answer_prefix == META_PROMPT.cue
    # step 2's meta-prompt shows step 1's candidates, ascending by score
    meta = replies.requests[8].messages[0][1]
    assert meta.count("<INS>Classify review kind") == 8
    shown = [int(line.split()[1]) for line in meta.splitlines() if line.startswith("Score:")]
    assert shown == sorted(shown) and len(shown) == 9
    assert ctx.stats["opro"]["scored"] == 16
    assert {split for _, split in ctx.results} == {"train"}  # selects on training accuracy only


def test_duplicates_and_degenerate_candidates_dropped_before_scoring(scripted_context):
    replies = Recorder(["Classify the review.</INS>", "Label the text by its mood.</INS>", "ok</INS>",
                        "Label the text by its mood!</INS>"])
    backend = ScriptedBackend(reply=replies)
    ctx = scripted_context(budget=None, backend=backend)
    OproOptimizer(steps=1, per_step=4, patience=0).run(ctx)
    assert ctx.stats["opro"]["scored"] == 1  # only "Label the text by its mood."
    assert ctx.stats["dropped"] == {"duplicate": 2, "too_short": 1}
    assert backend.calls == 4 + 2 * len(ctx.train)  # no scoring call for a dropped candidate


def test_patience_stops_when_nothing_beats_the_best(scripted_context):
    # The starting instruction names every label, so it scores 1.0 and can only be tied.
    counter = itertools.count()
    replies = Recorder(lambda r: f"Answer about review number {next(counter)} now.</INS>")
    ctx = scripted_context(budget=None, backend=ScriptedBackend(reply=replies))
    ctx.initial = Prompt("Say positive, negative, neutral or ambivalent.")
    best = OproOptimizer(steps=50, per_step=2, patience=3).run(ctx)
    assert ctx.stats["stopped_by"] == "patience" and ctx.stats["opro"]["steps_run"] == 3
    assert best == ctx.initial


def test_budget_plan_scales_steps_then_candidates(scripted_context):
    n = 12
    assert OproOptimizer().plan(scripted_context(budget=None)) == (200, 8)
    assert OproOptimizer().plan(scripted_context(budget=n + 3 * 8 * (n + 1) + 5)) == (3, 8)
    assert OproOptimizer().plan(scripted_context(budget=n + 3 * (n + 1))) == (1, 3)
    assert OproOptimizer().plan(scripted_context(budget=5)) == (1, 1)
    assert OproOptimizer(steps=2).plan(scripted_context(budget=10_000)) == (2, 8)  # never raised


def test_plan_recorded_and_budget_spent_exactly(scripted_context):
    ctx = scripted_context(budget=150)
    OproOptimizer().run(ctx)
    assert ctx.stats["opro"]["steps_planned"] == 1 and ctx.stats["opro"]["per_step"] == 8
    assert ctx.evaluator.budget.spent <= 150


def test_budget_left_by_dropped_candidates_is_used(scripted_context):
    # Every other reply repeats the last one: half the candidates are dropped unscored, so the
    # one planned step leaves budget for more, smaller steps.
    counter = itertools.count()
    replies = Recorder(lambda r: f"Label the review, variant {next(counter) // 2}.</INS>")
    ctx = scripted_context(budget=150, backend=ScriptedBackend(reply=replies))
    n = len(ctx.train)
    OproOptimizer().run(ctx)
    stats = ctx.stats["opro"]
    assert stats["steps_planned"] == 1 and stats["steps_run"] > 1 and ctx.stats["stopped_by"] == "budget"
    assert ctx.evaluator.budget.spent <= 150
    assert 150 - ctx.evaluator.budget.spent < 1 + n  # not even one more candidate would fit
    assert len(replies.requests) == stats["proposed"]


@pytest.mark.integration
def test_opro_runs_on_the_embedded_model(tmp_path):
    """One tiny real run: the meta-prompt, priming and parsing work with SmolLM2 end to end."""
    res = api.optimize("example:sentiment", method="opro", budget=20, train_size=4, test_size=4,
                       params={"per_step": 2, "max_tokens": 40}, store_url=f"sqlite:///{tmp_path}/runs.sqlite",
                       cache_url=f"sqlite:///{tmp_path}/cache.sqlite")
    assert res["budget_used"] <= 20
    opro = res["stats"]["opro"]
    assert opro["steps_run"] >= 1 and opro["proposed"] >= 2  # later steps use what drops left over
    assert res["budget_used"] + 1 + 4 > 20 or res["stats"]["stopped_by"] != "budget"  # stops only when spent
    assert res.best_prompt.instruction.strip()
