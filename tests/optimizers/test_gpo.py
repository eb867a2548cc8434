"""GPO on the scripted model (deterministic stand-in, not a language model): the cosine edit
limit and its enforcement, trajectory retrieval and order in the meta-prompt, momentum on/off,
the update rule, the budget plan, messy replies."""

from __future__ import annotations

import math
import re

import pytest

from promptgym.errors import PromptgymError
from promptgym.models.base import GenerationRequest
from promptgym.models.scripted import ScriptedBackend, request_text
from promptgym.optimizers.gpo import (META_PROMPT, GpoOptimizer, build_meta_prompt, edit_limit,
                                      lexical_similarity, retrieve, steps_per_epoch, word_edit_distance)
from promptgym.tasks.prompt import Prompt

CURRENT = re.compile(r"The current instruction is:\n(.*)\nScore: (\d+)")
TRAJECTORY = re.compile(r"Instruction: (.*)\nScore: (\d+)")
LIMIT = re.compile(r"You may change at most (\d+) words")


# -- learning rate -------------------------------------------------------------------------------


def test_edit_limit_follows_a_cosine_from_initial_to_final():
    total = 12
    limits = [edit_limit(t, total, 50, 10) for t in range(1, total + 1)]
    expected = [int(10 + 40 * 0.5 * (1 + math.cos(math.pi * t / total))) for t in range(1, total + 1)]
    assert limits == expected
    assert limits[0] == 49 and limits[-1] == 10
    assert all(a >= b for a, b in zip(limits, limits[1:]))
    # cosine, not linear: slow at both ends, fast in the middle
    drops = [a - b for a, b in zip(limits, limits[1:])]
    assert max(drops[4:7]) > drops[0] and max(drops[4:7]) > drops[-1]


def test_edit_limit_without_decay_and_with_warmup():
    assert {edit_limit(t, 10, 50, 10, decay=False) for t in range(1, 11)} == {50}
    warm = [edit_limit(t, 20, 50, 10, warmup_steps=4) for t in range(1, 21)]
    assert warm[:4] == [12, 25, 37, 50]  # linear rise over the warm-up (the code's int(init * t / W))
    assert warm[-1] == 10 and all(a >= b for a, b in zip(warm[3:], warm[4:]))


def test_warmup_steps_come_from_the_fraction(scripted_context):
    ctx = scripted_context(budget=None, train=96)  # 12 steps per epoch, 36 steps
    assert GpoOptimizer().plan(ctx, 96)["warmup_steps"] == 0
    assert GpoOptimizer(warmup=True).plan(ctx, 96)["warmup_steps"] == 2  # ceil(5% of 36)


@pytest.mark.parametrize("a, b, distance", [
    ("Classify the review.", "Classify the text.", 1),
    ("Classify the review.", "classify THE review!", 0),
    ("Classify the review.", "Please classify the review carefully.", 2),
    ("Classify the review.", "", 3),
    ("a b c d", "d c b a", 4),
])
def test_word_edit_distance(a, b, distance):
    assert word_edit_distance(a, b) == distance


# -- retrieval and the meta-prompt --------------------------------------------------------------

HISTORY = [("Classify the review.", 0.40), ("Label the review by sentiment.", 0.55),
           ("Read the text.", 0.30), ("Label the sentiment of the review.", 0.50)]


def test_recency_is_newest_first():
    assert retrieve(HISTORY, 3, "recency") == HISTORY[:0:-1]
    assert retrieve(HISTORY, 10, "recency") == HISTORY[::-1]


def test_importance_is_best_first():
    assert [s for _, s in retrieve(HISTORY, 3, "importance")] == [0.55, 0.50, 0.40]


def test_relevance_is_newest_then_most_similar():
    got = retrieve(HISTORY, 3, "relevance")
    assert got[0] == HISTORY[-1]
    assert got[1] == HISTORY[1]  # shares "label", "the", "review", "sentiment"
    assert got[2] == HISTORY[0]
    assert lexical_similarity("Read the text.", "read THE text") == pytest.approx(1.0)
    assert lexical_similarity("alpha beta", "gamma") == 0.0


def test_unknown_retrieval_is_refused(scripted_context):
    with pytest.raises(PromptgymError):
        retrieve(HISTORY, 3, "novelty")
    with pytest.raises(PromptgymError):
        GpoOptimizer(retrieval="novelty").run(scripted_context(budget=50))


def test_meta_prompt_contents():
    exemplar = [type("E", (), dict(input="The soup was cold.", target="negative"))()]
    text = build_meta_prompt(HISTORY[-1], retrieve(HISTORY, 3, "recency"), exemplar, Prompt("x"), limit=17)
    assert [m[0] for m in TRAJECTORY.findall(text)] == [h[0] for h in HISTORY[:0:-1]]
    assert [int(m[1]) for m in TRAJECTORY.findall(text)] == [50, 30, 55]  # scores 0-100
    assert CURRENT.search(text).groups() == ("Label the sentiment of the review.", "50")
    assert "Input: The soup was cold.\n<Prompt>\nAnswer: negative" in text
    lines = [line for line in text.split("\n") if line.strip()]
    assert LIMIT.search(lines[-2]).group(1) == "17"  # just before the final request, as in the code
    assert "<START>" in lines[-1] and "<END>" in lines[-1] and "write one new instruction" in lines[-1]
    edit = build_meta_prompt(HISTORY[-1], [], exemplar, Prompt("x"), limit=None, refinement="edit")
    assert "modify the current instruction" in edit and "earlier, each with its score" not in edit
    assert not LIMIT.search(edit)


# -- the whole method --------------------------------------------------------------------------


class Writer:
    """Scripted optimizer: each sample appends new letter-only words to the current instruction,
    a small edit (3 words) or, on every other sample, a large one (``big`` words)."""

    def __init__(self, big: int = 30):
        self.big = big
        self.metas: list[str] = []

    @staticmethod
    def token(k: int) -> str:
        letters = ""
        k += 26 * 26  # at least three letters
        while k:
            k, d = divmod(k, 26)
            letters += chr(97 + d)
        return letters

    def reply(self, request: GenerationRequest) -> str:
        text = request_text(request)
        self.metas.append(text)
        current = CURRENT.search(text).group(1)
        n = self.big if request.sample % 2 else 3
        extra = " ".join(self.token(1000 * len(self.metas) + i) for i in range(n))
        return f" {current.rstrip('.')} {extra}.<END>"


def score_by_length(prompt: str, option: str) -> float:
    """Shorter instructions do better: example N (of 20) is right iff N < 20 - words / 3."""
    words = len(prompt.split("Input:")[0].split())
    gold = re.search(r"the service was (\w+) overall", prompt).group(1)
    number = int(re.search(r"Review number (\d+)", prompt).group(1))
    right = number < 20 - words / 3
    wrong = "negative" if gold != "negative" else "positive"
    return 0.0 if option.strip() == (gold if right else wrong) else -5.0


def run_gpo(scripted_context, writer: Writer, **params):
    ctx = scripted_context(budget=None, backend=ScriptedBackend(reply=writer.reply, option_logprob=score_by_length),
                           train=32, dev=20)
    best = GpoOptimizer(per_step=4, **params).run(ctx)
    return ctx, best


def test_over_limit_proposals_are_rejected_and_counted(scripted_context):
    writer = Writer(big=30)
    ctx, _ = run_gpo(scripted_context, writer)
    stats = ctx.stats["gpo"]
    limits = stats["edit_limits"]
    steps = stats["plan"]["steps"]
    assert steps == 12 and len(limits) == steps  # 3 epochs x (32 // 8)
    assert limits == [edit_limit(t, steps) for t in range(1, steps + 1)]
    # 2 of every 4 samples are 30-word edits: accepted while the limit is >= 30, rejected after
    assert stats["edit_rejections"] == 2 * sum(1 for lim in limits if lim < 30)
    assert 0 < stats["edit_rejections"] < stats["proposed"]
    # the limit the meta-prompt states is the one enforced
    for meta, lim in zip(writer.metas[::4], limits):
        assert int(LIMIT.search(meta).group(1)) == lim
    # no trajectory step moved further than its limit
    seen = [CURRENT.search(m).group(1) for m in writer.metas[::4]]
    for (a, b), lim in zip(zip(seen, seen[1:]), limits):
        assert word_edit_distance(a, b) <= lim


def test_constant_limit_when_decay_is_off(scripted_context):
    ctx, _ = run_gpo(scripted_context, Writer(big=30), decay_edit_limit=False)
    assert set(ctx.stats["gpo"]["edit_limits"]) == {50}
    assert ctx.stats["gpo"]["edit_rejections"] == 0


def test_trajectory_in_the_meta_prompt_is_recent_first_with_momentum(scripted_context):
    writer = Writer(big=3)
    ctx, best = run_gpo(scripted_context, writer)
    metas = writer.metas[::4]  # one meta-prompt per step (4 samples of it)
    currents = [CURRENT.search(m).groups() for m in metas]
    for t, meta in enumerate(metas):
        shown = TRAJECTORY.findall(meta)
        assert shown == currents[max(0, t - 2): t + 1][::-1]  # the 3 latest, newest first


def test_no_trajectory_without_momentum(scripted_context):
    writer = Writer(big=3)
    run_gpo(scripted_context, writer, momentum=False)
    assert all(not TRAJECTORY.findall(m) for m in writer.metas)
    assert all(CURRENT.search(m) for m in writer.metas)


def test_importance_retrieval_in_a_run(scripted_context):
    writer = Writer(big=3)
    ctx, _ = run_gpo(scripted_context, writer, retrieval="importance")
    for meta in writer.metas[::4]:
        scores = [int(s) for _, s in TRAJECTORY.findall(meta)]
        assert scores == sorted(scores, reverse=True)


def test_update_takes_the_best_new_candidate_and_result_is_best_of_trajectory(scripted_context):
    writer = Writer(big=3)
    ctx, best = run_gpo(scripted_context, writer)
    stats = ctx.stats["gpo"]
    scores = stats["trajectory"]
    assert len(scores) == stats["plan"]["steps"] + 1 and stats["split"] == "dev"
    texts = [CURRENT.search(m).group(1) for m in writer.metas[::4]]
    assert len(set(texts)) == len(texts)  # never returns to an earlier step's instruction here
    assert ctx.evaluate(best, ctx.dev, split="dev").mean == max(scores)
    for step_meta, step_score in zip(writer.metas[::4], scores):  # the meta-prompt shows the real score
        assert int(CURRENT.search(step_meta).group(2)) == round(100 * step_score)


def test_nothing_new_keeps_the_current_instruction(scripted_context):
    stuck = lambda request: "Classify the review."  # noqa: E731  (always the current one: a duplicate)
    ctx = scripted_context(budget=None, backend=ScriptedBackend(reply=stuck), train=16)
    best = GpoOptimizer(per_step=2, epochs=1).run(ctx)
    assert best == ctx.initial
    assert len(set(ctx.stats["gpo"]["trajectory"])) == 1  # the real score carried over, not 0


# -- budget plan ----------------------------------------------------------------------------------


def test_steps_per_epoch_rule():
    assert steps_per_epoch(30, 8) == 4  # remainder 6 >= 4 counts
    assert steps_per_epoch(27, 8) == 3  # remainder 3 < 4 does not
    assert steps_per_epoch(5, 8) == 1


@pytest.mark.parametrize("budget", [40, 150, 300, 1000, 100_000])
def test_plan_fits_the_budget_and_never_grows(budget, scripted_context):
    ctx = scripted_context(budget=budget, train=30)
    plan = GpoOptimizer().plan(ctx, 30)
    assert plan["steps"] <= plan["steps_default"] == 12
    assert 2 <= plan["per_step"] <= 8 and 1 <= plan["eval_examples"] <= 30
    cost = plan["eval_examples"] + plan["steps"] * plan["per_step"] * (1 + plan["eval_examples"])
    if budget >= 150:
        assert cost <= budget and plan["steps"] >= 3
    if budget == 100_000:
        assert (plan["steps"], plan["per_step"], plan["eval_examples"]) == (12, 8, 30)


def test_budget_left_by_dropped_samples_goes_to_later_steps(scripted_context):
    # Every sample repeats the current instruction plus one word that only changes every other
    # sample: half are duplicates, dropped unscored, so the worst-case plan leaves budget over.
    def reply(request: GenerationRequest) -> str:
        current = CURRENT.search(request_text(request)).group(1)
        return f" {current.rstrip('.')} {chr(97 + request.sample // 2)}x.<END>"

    ctx = scripted_context(budget=300, backend=ScriptedBackend(reply=reply), train=16)
    GpoOptimizer().run(ctx)
    stats, n = ctx.stats["gpo"], 16
    plan = stats["plan"]
    assert len(stats["samples"]) == plan["steps"] == stats["steps_run"]
    assert stats["samples"][0] == plan["per_step"] < max(stats["samples"]) <= 8  # later steps ask for more
    assert stats["proposed"] == sum(stats["samples"])
    assert ctx.evaluator.budget.spent <= 300
    assert 300 - ctx.evaluator.budget.spent < 1 + n or max(stats["samples"]) == 8


def test_small_budget_subsamples_the_selection_split(scripted_context):
    ctx = scripted_context(budget=60, train=30)
    best = GpoOptimizer().run(ctx)
    plan = ctx.stats["gpo"]["plan"]
    assert plan["eval_examples"] < 30 and ctx.evaluator.budget.spent <= 60
    assert isinstance(best, Prompt)


# -- parsing messy replies -----------------------------------------------------------------------


@pytest.mark.parametrize("reply, expected", [
    (" Classify the review by its mood.<END>\nThis works because it is short.", "Classify the review by its mood."),
    ("<START>Classify the review by its mood.<END>", "Classify the review by its mood."),
    (" Classify the review by its mood.\n\nExplanation: shorter.", "Classify the review by its mood."),
    (' "Classify the review by its mood."', "Classify the review by its mood."),
    ("", ""),
])
def test_parse_messy_replies(reply, expected):
    assert META_PROMPT.parse(reply) == expected
