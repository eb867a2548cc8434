"""GRIPS: phrase segmentation, the four edits on fixed sentences, the paper's score by hand, and
the search on the scripted model (acceptance, the delete tracker, patience, format edits, the
budget plan, no optimizer call without ``sub``)."""

from __future__ import annotations

import math

import pytest

from promptgym.errors import PromptgymError
from promptgym.models.scripted import ScriptedBackend
from promptgym.optimizers.base import Recorder
from promptgym.optimizers.grips import (EDIT_CHOICES, GripsOptimizer, add, delete, grips_score, phrases, substitute,
                                        swap, with_label_words)
from promptgym.tasks.prompt import LAYOUTS, Prompt
from promptgym.testing import ConformanceBackend

from support import LABELS

SENTENCE = "Classify the sentiment of the text as positive or negative."


@pytest.mark.parametrize("text, expected", [
    ("Classify the review.", ["Classify", "the review"]),
    (SENTENCE, ["Classify", "the sentiment", "of the text", "as positive", "or", "negative"]),
    ("In this task, you are given a sentence. You must determine whether the sentence is grammatically "
     "correct or not, and answer 'yes' or 'no'.",
     ["In this task", "you", "are given", "a sentence", "You", "must determine", "whether the sentence",
      "is grammatically correct", "or", "not", "and", "answer", "'yes'", "or", "'no'"]),
    ("Read the movie review below and decide if the overall sentiment is positive or negative.",
     ["Read", "the movie review", "below", "and", "decide", "if the overall sentiment", "is positive", "or",
      "negative"]),
    ("You will be given a task. Don't answer with the reviewer's name.",
     ["You", "will be given", "a task", "Don't answer", "with the reviewer's name"]),
    ("", []),
    ("!!", []),
])
def test_segmentation_of_given_instructions(text, expected):
    assert phrases(text) == expected


def test_edits_on_a_fixed_sentence():
    assert delete(SENTENCE, 1) == "Classify of the text as positive or negative."
    assert delete(SENTENCE, 0) == "the sentiment of the text as positive or negative."
    assert delete("In this task, classify it.", 0) == "classify it."  # no comma left in front
    # a real exchange, not the released code's overwrite; the order of the indices does not matter
    assert swap(SENTENCE, 1, 2) == swap(SENTENCE, 2, 1) == "Classify of the text the sentiment as positive or negative."
    assert swap(SENTENCE, 0, 5) == "negative the sentiment of the text as positive or Classify."
    assert add(SENTENCE, "carefully", 0) == "Classify carefully the sentiment of the text as positive or negative."
    assert add(SENTENCE, "In short,", -1) == "In short, " + SENTENCE
    assert add(SENTENCE, "now", 5) == "Classify the sentiment of the text as positive or negative now."
    assert substitute(SENTENCE, 2, "of the review") == "Classify the sentiment of the review as positive or negative."


def test_edits_touch_only_the_chosen_occurrence_of_a_repeated_phrase():
    text = "Read the text and label the text."
    assert phrases(text) == ["Read", "the text", "and", "label", "the text"]
    assert delete(text, 4) == "Read the text and label."  # str.replace would delete both
    assert substitute(text, 1, "the review") == "Read the review and label the text."


def test_score_against_hand_computed_values():
    # recalls a: 1/2, b: 2/2 -> balanced 0.75; predicted shares 1/4, 3/4
    expected = 75.0 + 10 * -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert grips_score(list("abbb"), list("aabb"), ["a", "b"]) == pytest.approx(expected)
    assert grips_score(list("aaaa"), list("aabb"), ["a", "b"]) == pytest.approx(50.0)  # collapsed: no entropy
    assert grips_score(list("abcabc"), list("abcabc"), ["a", "b", "c"]) == pytest.approx(100 + 10 * math.log(3))
    # three labels, one absent from the targets: balanced accuracy averages b and c only
    # (b: 1/2, c: 1/1 -> 0.75 -> 75); shares a 1/3, b 1/3, c 1/3
    assert grips_score(["a", "b", "c"], ["b", "b", "c"], ["a", "b", "c"]) == pytest.approx(75 + 10 * math.log(3))
    # the code rounds the balanced accuracy to 2 decimals (1/3 -> 33.33), not the entropy
    assert grips_score(["a", "a", "a"], ["a", "b", "c"], ["a", "b", "c"]) == pytest.approx(33.33)
    # an unmatched answer ("") is wrong and outside every label's share
    assert grips_score(["a", ""], ["a", "b"], ["a", "b"]) == pytest.approx(50.0)


def test_edit_choices_and_parameters():
    assert EDIT_CHOICES[0] == "del,swap,sub,add" and "del,swap,add" in EDIT_CHOICES and "sub" in EDIT_CHOICES
    assert len(EDIT_CHOICES) == 11 and not any("add" in c and "del" not in c for c in EDIT_CHOICES)
    with pytest.raises(PromptgymError, match="edits"):
        GripsOptimizer(edits="swap,del")
    p = GripsOptimizer.parameters
    defaults = (p["candidates"].default, p["num_iter"].default, p["patience"].default, p["score_set"].default)
    assert defaults == (5, 10, 2, 100)
    assert p["format_edits"].default is True and p["format_edits"].paper is False


def test_label_words_leave_unchanged_labels_out():
    prompt = with_label_words(Prompt("p"), ["negative", "positive"], ["negative", "Good"])
    assert prompt.verbalizers == (("positive", "Good"),)
    assert prompt.verbalize("negative") == "negative" and prompt.verbalize("positive") == "Good"


# ---------------------------------------------------------------------------------------------
# The search on the scripted model


def noisy_logprob(prompt: str, option: str) -> float:
    """A task model that answers right (the label named in the input) unless the instruction says
    "noisy", then always "positive"; upper-case label words cost a little."""
    instruction, _, rest = prompt.partition("Input:")
    word = option.strip()
    target = "positive" if "noisy" in instruction else next(l for l in LABELS if l in rest)
    return (0.0 if word.lower() == target else -3.0) - (0.5 if word.isupper() else 0.0)


class Ops(Recorder):
    def __init__(self):
        self.made: list[tuple[str, str, list[str]]] = []  # (instruction, operation, parents)
        self.prompts: dict[str, Prompt] = {}

    def candidate(self, prompt, parents, operation):
        self.made.append((prompt.instruction, operation, parents))
        self.prompts[prompt.id] = prompt


def test_search_deletes_the_harmful_phrase_and_stops_by_patience(scripted_context):
    calls = []
    ctx = scripted_context(budget=None, train=8, backend=ScriptedBackend(
        reply=lambda r: calls.append(r) or "x", option_logprob=noisy_logprob))
    ctx.initial = Prompt("Label the review in a noisy way.")
    ctx.recorder = rec = Ops()
    method = GripsOptimizer(edits="del,swap,add", format_edits=False)
    best = method.run(ctx)
    stats = ctx.stats["grips"]
    assert "noisy" not in best.instruction and stats["accepted"][0] == "del"
    assert stats["trajectory"][0] == pytest.approx(25.0)  # always "positive" on 4 balanced labels
    assert stats["trajectory"][-1] == pytest.approx(100 + 10 * math.log(4))
    assert ctx.state.deleted and all(p in "Label the review in a noisy way." for p in ctx.state.deleted)
    assert ctx.stats["stopped_by"] == "patience" and stats["iterations"] == len(stats["accepted"]) + 2
    assert {op for _, op, _ in rec.made} <= {"del", "swap", "add"}
    assert not calls  # no sub, no synonyms: the optimizer model is never asked


def test_add_re_inserts_a_deleted_phrase(scripted_context):
    ctx = scripted_context(budget=None, train=4)
    method = GripsOptimizer(edits="del,swap,add", format_edits=False)
    state = method.setup(ctx)
    state.deleted = ["very carefully"]
    edit = method._edit(ctx, state, "add")
    assert "very carefully" in edit.prompt.instruction and edit.added == ("very carefully",)
    assert edit.prompt.instruction in [add("Classify the review.", "very carefully", k) for k in (-1, 0, 1)]
    assert "add" in method._operations(state)
    state.deleted = []
    assert "add" not in method._operations(state)  # offered only once something was deleted


def test_sub_asks_the_optimizer_model_for_the_phrase(scripted_context):
    seen = []
    reply = ScriptedBackend(reply=lambda r: seen.append(r) or '"the mood".')
    ctx = scripted_context(budget=None, train=4, backend=reply)
    ctx.initial = Prompt(SENTENCE)
    method = GripsOptimizer(edits="sub", format_edits=False)
    state = method.setup(ctx)
    edit = method._edit(ctx, state, "sub")
    assert len(seen) == 1 and SENTENCE in seen[0].messages[0][1]
    i = next(k for k in range(6) if substitute(SENTENCE, k, "the mood") == edit.prompt.instruction)
    assert f'"{phrases(SENTENCE)[i]}"' in seen[0].messages[0][1]
    assert edit.operation == "sub" and edit.deleted == edit.added == ()


def test_format_edits_change_layout_and_label_words(scripted_context):
    ctx = scripted_context(budget=None, train=4, backend=ScriptedBackend(reply=lambda r: "Upbeat"))
    method = GripsOptimizer()
    state = method.setup(ctx)
    assert state.labels == sorted(LABELS)
    layouts = {method._edit(ctx, state, "layout").prompt.layout.name for _ in range(20)}
    assert layouts == set(LAYOUTS) - {ctx.initial.layout.name}
    relabelled = [method._edit(ctx, state, "labels") for _ in range(30)]
    words = {tuple(e.prompt.verbalize(l) for l in state.labels) for e in relabelled if e}
    cases = {tuple(case(l) for l in state.labels) for case in (str.upper, str.capitalize)}
    assert cases <= words  # one case for every label word at once
    assert all(w in cases or "Upbeat" in w for w in words)
    synonyms = [w for w in words if "Upbeat" in w]
    assert synonyms and all(sum(x != l for x, l in zip(w, state.labels)) == 1 for w in synonyms)


def test_reasoning_edits_toggle_the_answer_mode_only_when_asked(scripted_context):
    ctx = scripted_context(budget=None, train=8)
    assert "reasoning" not in GripsOptimizer()._operations(GripsOptimizer().setup(ctx))  # off by default
    method = GripsOptimizer(edits="del,swap,add", format_edits=False, reasoning_edits=True, num_iter=4, patience=0)
    state = method.setup(ctx)
    assert method._operations(state)[-1] == "reasoning"
    toggled = method._edit(ctx, state, "reasoning").prompt
    assert toggled.reasoning and toggled.instruction == ctx.initial.instruction
    state.base = toggled
    assert method._edit(ctx, state, "reasoning").prompt == ctx.initial  # and back
    ctx.recorder = rec = Ops()
    method.run(ctx)  # the scripted model answers a reasoning prompt with "Answer: ..."
    assert any(p.reasoning for p in rec.prompts.values()) and any(op == "reasoning" for _, op, _ in rec.made)


def test_label_edit_without_optimizer_model_only_changes_case(scripted_context):
    calls = []
    ctx = scripted_context(budget=None, train=4, backend=ScriptedBackend(reply=lambda r: calls.append(r) or "x"))
    method = GripsOptimizer(edits="del,swap,add")
    state = method.setup(ctx)
    for _ in range(20):
        edit = method._edit(ctx, state, "labels")
        assert {w.lower() for w in (edit.prompt.verbalize(l) for l in state.labels)} == set(LABELS)
    method.run(ctx)
    assert not calls


def test_candidates_name_their_operation_and_parent(scripted_context):
    ctx = scripted_context(budget=None, train=8)
    ctx.initial = Prompt(SENTENCE)
    ctx.recorder = rec = Ops()
    rec.candidate(ctx.initial, [], "initial")
    GripsOptimizer(num_iter=3, patience=0).run(ctx)
    ops = {op for _, op, _ in rec.made[1:]}
    assert ops <= {"del", "swap", "sub", "add", "layout", "labels"} and len(ops) >= 3
    assert all(len(parents) == 1 and parents[0] in rec.prompts for _, _, parents in rec.made[1:])


def test_plan_cuts_iterations_first(scripted_context):
    method = GripsOptimizer()
    # 8 scored + iterations x 5 x (8 + 1 optimizer call)
    assert method.plan(scripted_context(budget=None, train=8), 8) == {"num_iter": 10, "candidates": 5}
    assert method.plan(scripted_context(budget=100, train=8), 8) == {"num_iter": 2, "candidates": 5}
    assert method.plan(scripted_context(budget=40, train=8), 8) == {"num_iter": 1, "candidates": 3}
    assert GripsOptimizer(edits="del,swap,add").plan(scripted_context(budget=40, train=8), 8) == \
        {"num_iter": 1, "candidates": 4}


def test_budget_cut_run_ends_with_budget_and_score_set_is_a_subsample(scripted_context):
    ctx = scripted_context(budget=60, train=30)
    method = GripsOptimizer(score_set=10, patience=0)
    best = method.run(ctx)
    assert len(ctx.state.score_set) == 10 and len({e.id for e in ctx.state.score_set}) == 10
    assert ctx.stats["grips"]["plan"] == {"num_iter": 1, "candidates": 4}
    assert ctx.stats["stopped_by"] == "budget" and ctx.evaluator.budget.spent <= 60
    assert best == ctx.state.base


def test_final_selection_ranks_grips_candidates_by_its_own_score(scripted_context):
    # the conformance suite's scripted scores (they vary with the wording), so that edits get accepted
    ctx = scripted_context(budget=400, seed=2, backend=ConformanceBackend())
    ctx.initial = Prompt("Read the review carefully, then decide whether it is positive, negative, neutral or ambivalent.")
    method = GripsOptimizer(edits="del,swap")
    best = method.run(ctx)
    ranking = method.ranking(ctx, ctx.state)
    assert len(ranking) >= 2 and ranking == list(reversed(ctx.state.accepted))  # on this seed, several
    assert ranking[0].id == best.id and best != ctx.initial  # the latest accepted prompt is the answer
    trajectory = ctx.stats["grips"]["trajectory"]  # the GRIPS score after each iteration
    assert sum(b > a for a, b in zip(trajectory, trajectory[1:])) == len(ranking)  # one rise per accepted edit
    assert method.ranking(ctx, None) == []  # the budget ran out while setting up
