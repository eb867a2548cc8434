"""EvoPrompt GA / DE: roulette selection, crossover + mutation and DE prompt structure, initial
population, replacement rules, parsing, budget plan and selection split, on the scripted model."""

from __future__ import annotations

import itertools
import re
from collections import Counter

import numpy as np
import pytest

from promptgym import api
from promptgym.models.base import GenerationRequest
from promptgym.models.scripted import ScriptedBackend
from promptgym.optimizers.evoprompt import (
    DE_META_PROMPT, EXAMPLE_PROMPTS, GA_META_PROMPT, EvoPromptDE, EvoPromptGA, EvoState,
    roulette_probabilities, select_top)
from promptgym.optimizers.proposals import PARAPHRASE
from promptgym.optimizers.stopping import Stop
from promptgym.tasks.prompt import Prompt


class Replies:
    """Reply function: records requests; paraphrase requests and evolution requests get distinct,
    counted instructions (so nothing is a duplicate unless a test wants it)."""

    def __init__(self, evolve=None, para=None):
        self.requests: list[GenerationRequest] = []
        self.count = itertools.count()
        self.evolve = evolve or (lambda r, k: f"1. x\n2. Mutation: <prompt>Judge review style {k} now.</prompt>")
        self.para = para or (lambda r, k: f"Classify the review, version {k}.")

    def __call__(self, request: GenerationRequest) -> str:
        self.requests.append(request)
        k = next(self.count)
        return self.para(request, k) if request.answer_prefix == PARAPHRASE.cue else self.evolve(request, k)

    def evolution(self) -> list[str]:
        return [r.messages[0][1] for r in self.requests if r.answer_prefix in (GA_META_PROMPT.cue, DE_META_PROMPT.cue)]


def fields(meta: str) -> dict[str, str]:
    """The last Prompt 1/2/3/Base values of a meta-prompt (the real ones follow the worked example)."""
    out = {}
    for key in ("Prompt 1", "Prompt 2", "Prompt 3", "Base prompt"):
        found = re.findall(rf"^{key}: (.*)$", meta, flags=re.M)
        if found:
            out[key] = found[-1]
    return out


# --- roulette selection ---------------------------------------------------------------------------

def test_roulette_probabilities_are_fitness_proportionate():
    assert np.allclose(roulette_probabilities([0.2, 0.6, 0.2]), [0.2, 0.6, 0.2])
    assert np.allclose(roulette_probabilities([1, 3]), [0.25, 0.75])
    assert np.allclose(roulette_probabilities([0, 0, 0, 0]), [0.25] * 4)  # all zero: uniform
    assert np.allclose(roulette_probabilities([-1, 1]), [0, 1])  # fitness must be non-negative


def test_ga_parents_follow_the_roulette_wheel(scripted_context):
    replies = Replies()
    ctx = scripted_context(budget=None, backend=ScriptedBackend(reply=replies))
    ga = EvoPromptGA()
    state = EvoState(split="train", examples=ctx.train, stats=dict(children=0, scored=0))
    ga._score = lambda ctx, state, prompt: 0.0  # type: ignore[method-assign]  (only parent choice matters)
    names = ["Prompt alpha is here.", "Prompt beta is here.", "Prompt gamma is here."]
    population = [(Prompt(n), f) for n, f in zip(names, [0.0, 0.75, 0.25])]
    picks: Counter = Counter()
    for _ in range(40):
        replies.requests.clear()
        ga.generation(ctx, state, population)
        for meta in replies.evolution():
            f = fields(meta)
            picks[f["Prompt 1"]] += 1
            picks[f["Prompt 2"]] += 1
    assert picks[names[0]] == 0  # fitness 0 is never drawn
    assert picks[names[1]] > 1.5 * picks[names[2]]  # 3:1 wheel (pairs drawn without replacement)


# --- meta-prompt structure ------------------------------------------------------------------------

def test_ga_meta_prompt_structure():
    meta = GA_META_PROMPT.render(prompt1="First parent {{x}}.", prompt2="Second parent.")
    assert fields(meta) == {"Prompt 1": "First parent {{x}}.", "Prompt 2": "Second parent."}
    assert meta.index("Cross over") < meta.index("Mutate")  # crossover, then mutation
    assert meta.count("<prompt>") >= 2 and "</prompt>" in meta  # asked for, and shown in the example
    assert meta.rstrip().endswith("Prompt 2: Second parent.")  # the model continues after the cue
    assert all(t in meta for t in EXAMPLE_PROMPTS[:4])  # one worked example, on another task


def test_de_meta_prompt_structure():
    meta = DE_META_PROMPT.render(prompt1="P-one.", prompt2="P-two.", prompt3="P-best.", base="P-base.")
    assert fields(meta) == {"Prompt 1": "P-one.", "Prompt 2": "P-two.", "Prompt 3": "P-best.",
                            "Base prompt": "P-base."}
    tail = meta[meta.rindex("Follow the four steps"):]
    steps = [tail.index(f"{i}. ") for i in range(1, 5)]
    assert steps == sorted(steps)
    assert "differ" in tail and "at random" in tail and "Prompt 3" in tail and "Cross over" in tail


# --- whole runs -----------------------------------------------------------------------------------

def test_initial_population_is_start_plus_paraphrases(scripted_context):
    replies = Replies()
    ctx = scripted_context(budget=None, backend=ScriptedBackend(reply=replies))
    EvoPromptGA(population=4, generations=0).run(ctx)
    para = [r for r in replies.requests if r.answer_prefix == PARAPHRASE.cue]
    assert len(para) == 3 and len({r.sample for r in para}) == 3
    assert ctx.initial.instruction in para[0].messages[0][1]
    assert ctx.stats["evoprompt"]["population"] == 4


def test_duplicate_paraphrases_are_topped_up_then_accepted(scripted_context):
    replies = Replies(para=lambda r, k: "Classify the review, please." if k < 3 else f"Other wording {k} here.")
    ctx = scripted_context(budget=None, backend=ScriptedBackend(reply=replies))
    EvoPromptGA(population=4, generations=0).run(ctx)
    para = [r for r in replies.requests if r.answer_prefix == PARAPHRASE.cue]
    assert len(para) == 5  # 3 asked, 2 duplicates -> 2 more asked
    assert ctx.stats["dropped"] == {"duplicate": 2}
    assert ctx.stats["evoprompt"]["population"] == 4


def test_ga_keeps_the_top_n_of_parents_and_children(scripted_context):
    def logprob(prompt: str, option: str) -> float:
        # Only a prompt saying "carefully" lets the scorer read the label in the input.
        if "carefully" in prompt:
            return -2.0 + 0.5 * prompt.lower().count(option.strip().lower())
        return -2.0 - 0.1 * len(option)

    replies = Replies(evolve=lambda r, k: f"<prompt>Read the review carefully, case {k}.</prompt>",
                      para=lambda r, k: f"Look at review text {k}.")
    ctx = scripted_context(budget=None, backend=ScriptedBackend(reply=replies, option_logprob=logprob))
    best = EvoPromptGA(population=3, generations=1).run(ctx)
    assert best.instruction.startswith("Read the review carefully")
    assert ctx.stats["evoprompt"]["children"] == 3
    assert ctx.best("train")[1] == 1.0


def test_select_top_dedupes_and_breaks_ties_by_age():
    a, b, c = Prompt("a a a"), Prompt("b b b"), Prompt("c c c")
    assert select_top([(a, 0.5), (b, 0.5), (a, 0.5), (c, 0.9)], 2) == [(c, 0.9), (a, 0.5)]


def test_de_uses_best_as_donor_base_as_member_and_replaces_one_to_one(scripted_context):
    replies = Replies()
    ctx = scripted_context(budget=None, backend=ScriptedBackend(reply=replies))
    de = EvoPromptDE()
    state = EvoState(split="train", examples=ctx.train, stats=dict(children=0, scored=0))
    names = ["Member zero text.", "Member one text.", "Member two text.", "Member three text."]
    population = [(Prompt(n), s) for n, s in zip(names, [0.3, 0.9, 0.1, 0.5])]
    # children score below every member here: nothing is replaced
    de._score = lambda ctx, state, prompt: 0.0  # type: ignore[method-assign]
    new = de.generation(ctx, state, population)
    assert new == population
    metas = replies.evolution()
    assert len(metas) == 4
    for i, meta in enumerate(metas):
        f = fields(meta)
        assert f["Base prompt"] == names[i]
        assert f["Prompt 3"] == names[1]  # the best member is the donor
        assert f["Prompt 1"] != f["Prompt 2"] and names[i] not in (f["Prompt 1"], f["Prompt 2"])
    # a better child replaces exactly its own slot
    de._score = lambda ctx, state, prompt: 0.2  # type: ignore[method-assign]
    new = de.generation(ctx, state, population)
    replaced = [k for k in range(4) if new[k] != population[k]]
    assert replaced == [2]


def test_de_donor_random(scripted_context):
    replies = Replies()
    ctx = scripted_context(budget=None, backend=ScriptedBackend(reply=replies))
    EvoPromptDE(population=4, generations=1, donor_random=True).run(ctx)
    for meta in replies.evolution():
        f = fields(meta)
        assert len({f["Prompt 1"], f["Prompt 2"], f["Prompt 3"], f["Base prompt"]}) == 4


def test_children_copying_the_example_or_duplicates_are_dropped(scripted_context):
    replies = Replies(evolve=lambda r, k: (f"<prompt>{EXAMPLE_PROMPTS[3]}</prompt>" if k % 2
                                           else "<prompt>Classify the review.</prompt>"))
    backend = ScriptedBackend(reply=replies)
    ctx = scripted_context(budget=None, backend=backend)
    EvoPromptGA(population=3, generations=2).run(ctx)
    assert ctx.stats["evoprompt"]["children"] == 6
    assert ctx.stats["evoprompt"]["scored"] == 3  # the initial population only
    assert ctx.stats["dropped"] == {"copies_example": 3, "duplicate": 3}


def test_parse_messy_evolution_outputs():
    assert GA_META_PROMPT.parse(" A mix.\n2. Mutation: <prompt>Final one here.</prompt>") == \
        "Final one here."
    two = "<prompt>first</prompt> then <prompt>Final two.</prompt>"
    assert GA_META_PROMPT.parse(two) == "Final two."
    assert GA_META_PROMPT.parse(" Blend of both.\n2. Mutation: <prompt>Unclosed final\n\nnoise") == \
        "Unclosed final"
    assert GA_META_PROMPT.parse(" Just a crossover line.\n2. more") == "Just a crossover line."


def test_selection_split_is_dev_when_present_else_train(scripted_context):
    with_dev = scripted_context(budget=None, dev=4)
    EvoPromptGA(population=2, generations=1).run(with_dev)
    assert {split for _, split in with_dev.results} == {"dev"}
    assert with_dev.stats["evoprompt"]["selection_split"] == "dev"
    no_dev = scripted_context(budget=None)
    EvoPromptDE(population=3, generations=1).run(no_dev)
    assert {split for _, split in no_dev.results} == {"train"}


@pytest.mark.parametrize("cls", [EvoPromptGA, EvoPromptDE])
def test_budget_plan_scales_down_never_up(cls, scripted_context):
    assert cls().plan(scripted_context(budget=None), 12) == (10, 10)
    assert cls(population=4, generations=2).plan(scripted_context(budget=100_000), 12) == (4, 2)
    for budget in (60, 150, 400, 1500):
        n, t = cls().plan(scripted_context(budget=budget), 12)
        cost = (n - 1) + n * 12 + t * n * 13
        assert n <= 10 and t <= 10 and t >= 1 and n >= cls.min_population
        assert cost <= budget or (n, t) == (cls.min_population, 1)


@pytest.mark.parametrize("cls", [EvoPromptGA, EvoPromptDE])
def test_plan_recorded_and_budget_respected(cls, scripted_context):
    ctx = scripted_context(budget=200)
    cls().run(ctx)
    st = ctx.stats["evoprompt"]
    assert st["population_planned"] < 10 and st["generations_planned"] >= 1
    assert ctx.evaluator.budget.spent <= 200


@pytest.mark.parametrize("cls", [EvoPromptGA, EvoPromptDE])
def test_budget_left_by_dropped_children_runs_more_generations(cls, scripted_context):
    # Every other child repeats the one before: dropped unscored, so the worst-case plan leaves
    # budget over, which further generations (up to the default 10) spend.
    replies = Replies(evolve=lambda r, k: f"1. x\n2. Mutation: <prompt>Judge review style {k // 2} now.</prompt>")
    ctx = scripted_context(budget=200, backend=ScriptedBackend(reply=replies))
    cls().run(ctx)
    st, n = ctx.stats["evoprompt"], len(ctx.train)
    assert st["generations_run"] > st["generations_planned"]
    assert ctx.stats["stopped_by"] == "budget" and ctx.evaluator.budget.spent <= 200
    assert 200 - ctx.evaluator.budget.spent < 1 + n  # not even one more child would fit
    assert st["children"] == len(replies.evolution())


@pytest.mark.parametrize("cls", [EvoPromptGA, EvoPromptDE])
def test_a_stopper_ends_the_run_after_the_initial_population(cls, scripted_context):
    # Building the population is the first step, so no stopper has to wait for it to finish a
    # generation too (it used to happen in set-up, before any stopper was asked).
    replies = Replies()
    ctx = scripted_context(budget=None, backend=ScriptedBackend(reply=replies))
    cls(population=4, generations=3).run(ctx, Stop(max_steps=1))
    st = ctx.stats["evoprompt"]
    assert (ctx.stats["steps"], ctx.stats["stopped_by"]) == (1, "max_steps")
    assert st["population"] == 4 and st["generations_run"] == 0 and st["children"] == 0
    assert replies.evolution() == [] and len(replies.requests) == 3  # the paraphrases only


@pytest.mark.parametrize("cls", [EvoPromptGA, EvoPromptDE])
def test_unlimited_budget_runs_exactly_the_generations(cls, scripted_context):
    ctx = scripted_context(budget=None)
    cls(population=3, generations=2).run(ctx)
    st = ctx.stats["evoprompt"]
    assert st["generations_run"] == 2 and ctx.stats["stopped_by"] == "done" and st["children"] == 6


@pytest.mark.integration
def test_evoprompt_de_runs_on_the_embedded_model(tmp_path):
    """One tiny real run: paraphrase init, the DE meta-prompt and parsing work with SmolLM2."""
    res = api.optimize("example:sentiment", method="evoprompt-de", budget=40, train_size=4, test_size=4,
                       params={"population": 3, "generations": 1, "max_tokens": 80},
                       store_url=f"sqlite:///{tmp_path}/runs.sqlite", cache_url=f"sqlite:///{tmp_path}/cache.sqlite")
    assert res["budget_used"] <= 40
    st = res["stats"]["evoprompt"]
    assert st["population_planned"] == 3 and st["generations_planned"] == 1
    assert res.best_prompt.instruction.strip()
