"""Promptbreeder on the scripted model (not a language model): operators and their lineage, the
tournament, budget, crossover and context-shuffling probabilities, the EDA lists, the ranking."""

from __future__ import annotations

import re

import pytest

from promptgym.models.scripted import ScriptedBackend, _digest, request_text
from promptgym.optimizers import get_method
from promptgym.optimizers.base import Recorder
from promptgym.optimizers.promptbreeder import (MUTATION_PROMPTS, OPERATORS, THINKING_STYLES, Promptbreeder,
                                                PromptbreederState, Unit)
from promptgym.optimizers.stopping import Stop
from promptgym.tasks.prompt import Prompt


class Recording(Recorder):
    def __init__(self):
        self.candidates: list[tuple[str, str, tuple[str, ...], str]] = []

    def candidate(self, prompt, parents, operation):
        self.candidates.append((prompt.id, prompt.instruction, tuple(parents), operation))


class Asking(ScriptedBackend):
    """Scripted backend: a distinct instruction-like sentence per request (so nothing is dropped as
    a duplicate) and every generation request's text kept."""

    def __init__(self, **kw):
        super().__init__(reply=self._reply, **kw)
        self.asked: list[str] = []

    def _reply(self, request):
        self.asked.append(request_text(request))
        return f"Sort each review into its sentiment class, step {_digest(request) % 10**9}."


def _context(scripted_context, budget=None, seed=0, backend=None, cache_name="cache.sqlite", train=12):
    backend = backend or Asking()
    ctx = scripted_context(budget=budget, seed=seed, backend=backend, cache_name=cache_name, train=train)
    ctx.recorder = Recording()
    return ctx, backend


def _populated(method: Promptbreeder, ctx) -> PromptbreederState:
    """Set up, then the first step: the initial population."""
    state = method.setup(ctx)
    method.step(ctx, state)
    return state


def _run(scripted_context, budget=None, seed=0, cache_name="cache.sqlite", **params):
    ctx, backend = _context(scripted_context, budget, seed, cache_name=cache_name)
    best = Promptbreeder(**params).run(ctx)
    return ctx, backend, best


def test_registered_with_paper_values():
    assert get_method("promptbreeder") is Promptbreeder
    d, params = Promptbreeder.defaults, Promptbreeder.parameters
    assert d["crossover_prob"] == 0.1 and d["shuffle_prob"] == 0.1 and d["eda_similarity"] == 0.95
    assert params["population"].paper_value() == "50" and params["batch_size"].paper_value() == "100"
    assert len(OPERATORS) == 8 and 10 <= len(MUTATION_PROMPTS) <= 15 and 10 <= len(THINKING_STYLES) <= 15


def test_scripted_initial_population_keeps_the_start_and_asks_m_plus_t_plus_d(scripted_context):
    ctx, backend = _context(scripted_context)
    method = Promptbreeder(population=4, generations=0)
    state = method.setup(ctx)
    assert not state.population and not backend.asked  # set-up plans; the first step populates
    method.step(ctx, state)
    assert state.population[0].prompt == ctx.initial
    assert len(state.population) == 4
    inits = [c for c in ctx.recorder.candidates if c[3] == "promptbreeder:init"]
    assert len(inits) == 3 and all(c[2] == (ctx.initial.id,) for c in inits)
    for text in backend.asked:
        assert any(m in text for m in MUTATION_PROMPTS) and any(t in text for t in THINKING_STYLES)
        assert ctx.initial.instruction in text
    assert all(u.mutation in MUTATION_PROMPTS for u in state.population)


def test_scripted_a_stopper_ends_the_run_after_the_initial_population(scripted_context):
    ctx, backend = _context(scripted_context)
    Promptbreeder(population=4, generations=3).run(ctx, Stop(max_seconds=0))
    st = ctx.stats["promptbreeder"]
    assert (ctx.stats["steps"], ctx.stats["stopped_by"]) == (1, "wall_time")
    assert st["population"] == 4 and st["generations_run"] == 0 and len(backend.asked) == 3


@pytest.mark.parametrize("op", OPERATORS)
def test_scripted_each_operator_records_a_candidate_under_its_name(scripted_context, op):
    ctx, backend = _context(scripted_context)
    method = Promptbreeder(population=4, generations=0, crossover_prob=0.0)
    state = _populated(method, ctx)
    winner = state.population[0]
    asked = len(backend.asked)
    method.replicate(ctx, state, 0, 1, op=op)
    child = state.population[1]
    last = ctx.recorder.candidates[-1]
    assert last[3] == f"promptbreeder:{op}" and last[0] == child.prompt.id and last[2] == (winner.prompt.id,)
    assert child.prompt.instruction.startswith("Sort each review")
    assert len(backend.asked) - asked == (2 if op.startswith("hyper") else 1)
    if op.startswith("hyper"):
        assert child.mutation != winner.mutation and state.stats["hypermutations"] == 1
    else:
        assert child.mutation == winner.mutation


def test_scripted_tournament_copies_the_winner_over_the_loser(scripted_context):
    ctx, _ = _context(scripted_context)
    method = Promptbreeder(population=2, generations=1, crossover_prob=0.0)
    state = _populated(method, ctx)
    state.population[0].fitness, state.population[1].fitness = 0.9, 0.1
    winner = state.population[0]
    winner.context = [("some input", "positive")]
    method.step(ctx, state)
    assert state.population[0] is winner  # the winner is untouched
    child = state.population[1]
    parents = [c[2] for c in ctx.recorder.candidates if c[0] == child.prompt.id]
    assert parents and parents[0] == (winner.prompt.id,)
    assert child.elites == [winner.prompt]  # the lineage: the winner's elites, the winner last
    assert ("some input", "positive") in child.context or state.stats["shuffles"] == 1


@pytest.mark.parametrize("budget", [1, 7, 30, 61, 150, 400])
def test_never_exceeds_the_budget(scripted_context, budget):
    ctx, backend, best = _run(scripted_context, budget=budget)
    assert backend.calls <= budget and ctx.evaluator.budget.spent == backend.calls
    if ctx.stats.get("budget_exhausted"):
        assert backend.calls == budget
    assert best.instruction


def test_plan_shrinks_population_and_generations_to_fit(scripted_context):
    ctx, backend, _ = _run(scripted_context, budget=300, batch_size=5)
    plan = ctx.stats["promptbreeder"]
    n, t = plan["population_planned"], plan["generations_planned"]
    assert 2 <= n < 20 and 1 <= t < 20
    assert (n - 1) + n * 5 + t * (n // 2) * (2 + 5) <= 300
    assert not ctx.stats.get("budget_exhausted") and ctx.stats["stopped_by"] in ("done", "budget")


def test_fitness_is_scored_on_fresh_random_batches(scripted_context):
    ctx, _ = _context(scripted_context)
    batches = []
    original = ctx.evaluate

    def spy(prompt, examples, split="train"):
        batches.append((split, tuple(e.id for e in examples)))
        return original(prompt, examples, split)

    ctx.evaluate = spy
    Promptbreeder(population=4, generations=2, batch_size=5).run(ctx)
    assert all(split == "train-batch" and len(ids) == 5 for split, ids in batches)
    assert len(set(ids for _, ids in batches)) > len(batches) // 2


def test_scripted_crossover_probability_is_honoured(scripted_context):
    ops = {}
    for prob in (0.0, 0.5, 1.0):
        ctx, _, _ = _run(scripted_context, crossover_prob=prob, population=6, generations=6,
                         cache_name=f"x{prob}.sqlite")
        stats = ctx.stats["promptbreeder"]
        ops[prob] = (stats["crossovers"], sum(stats["kept"].values()))
        recorded = [c for c in ctx.recorder.candidates if c[3] == "promptbreeder:crossover"]
        assert len(recorded) == stats["crossovers"]
        assert all(len(c[2]) == 2 for c in recorded)  # parent and donor
    assert ops[0.0][0] == 0
    assert ops[1.0][0] == ops[1.0][1] > 0  # every kept mutant crossed over
    assert 0 < ops[0.5][0] < ops[0.5][1]


def test_scripted_context_shuffle_probability_is_honoured(scripted_context):
    for prob in (0.0, 1.0):
        ctx, _, _ = _run(scripted_context, shuffle_prob=prob, population=4, generations=3,
                         cache_name=f"s{prob}.sqlite")
        stats = ctx.stats["promptbreeder"]
        scored = stats["population"] + sum(stats["kept"].values())
        assert stats["shuffles"] == (0 if prob == 0.0 else scored)


def _fixed_population(ctx, state, instructions, fitness):
    state.population = [Unit(ctx.initial.with_instruction(t), MUTATION_PROMPTS[0], f, elites=[])
                        for t, f in zip(instructions, fitness)]
    for u in state.population:
        u.elites = [u.prompt]


def _listing(text):
    """The numbered items of a request (without the answer cue, which the reply starts with)."""
    text = re.sub(r"\d+\.$", "", text)
    return re.findall(r"^\d+\. (.*)$", text, flags=re.M)


def test_scripted_eda_rank_and_index_lists_ascending_fitness_as_descending(scripted_context):
    ctx, backend = _context(scripted_context)
    method = Promptbreeder(population=2, generations=0)
    state = _populated(method, ctx)
    names = ["Label the mood of the review.", "Decide which feeling the author shows.",
             "Tell whether the customer liked it.", "Pick the sentiment word for this text."]
    _fixed_population(ctx, state, names, [0.7, 0.1, 0.9, 0.4])
    method.mutate(ctx, state, "eda-rank", 0)
    text = backend.asked[-1]
    assert _listing(text) == [names[1], names[3], names[0], names[2]]  # ascending fitness
    assert "from the highest to the lowest" in text and "Number 5 will score higher" in text
    assert text.endswith("5.")


def test_scripted_eda_drops_near_duplicates_and_shows_no_scores(scripted_context):
    ctx, backend = _context(scripted_context)
    method = Promptbreeder(population=2, generations=0)
    state = _populated(method, ctx)
    names = ["Label the mood of the review.", "Label the mood of the review!",
             "Tell whether the customer liked it.", "Pick the sentiment word for this text."]
    _fixed_population(ctx, state, names, [0.7, 0.1, 0.9, 0.4])
    method.mutate(ctx, state, "eda", 0)
    listed = _listing(backend.asked[-1])
    assert len(listed) == 3 and set(listed) >= {names[2], names[3]}
    assert "0.9" not in backend.asked[-1]


def test_scripted_eda_uses_the_task_models_embeddings_when_it_has_them(scripted_context):
    ctx, backend = _context(scripted_context, backend=Asking(embeddings=True))
    method = Promptbreeder(population=2, generations=0)
    state = _populated(method, ctx)
    names = ["Label the mood of the review.", "Label the mood of the review.",
             "Tell whether the customer liked it."]
    _fixed_population(ctx, state, names, [0.5, 0.5, 0.5])
    before = ctx.evaluator.usage.embeddings
    method.mutate(ctx, state, "eda", 0)
    assert ctx.evaluator.usage.embeddings > before
    assert len(_listing(backend.asked[-1])) == 2


def test_scripted_lineage_and_lamarckian_show_the_units_history_and_workings_out(scripted_context):
    ctx, backend = _context(scripted_context)
    method = Promptbreeder(population=2, generations=0)
    state = _populated(method, ctx)
    unit = state.population[0]
    older = ctx.initial.with_instruction("An older elite instruction for this task.")
    unit.elites = [older, unit.prompt]
    method.mutate(ctx, state, "lineage", 0)
    assert _listing(backend.asked[-1]) == [older.instruction, unit.prompt.instruction]
    unit.context = [("The soup was cold.", "negative"), ("Lovely staff.", "positive")]
    method.mutate(ctx, state, "lamarckian", 0)
    assert "Input: The soup was cold.\nOutput: negative" in backend.asked[-1]
    assert "Input: Lovely staff.\nOutput: positive" in backend.asked[-1]


def test_workings_out_are_correct_answers_and_capped(scripted_context):
    ctx, _, _ = _run(scripted_context, population=4, generations=3, context_size=2)
    train = {e.input: e.target for e in ctx.train}
    for unit in ctx.state.population:
        assert len(unit.context) <= 2
        assert all(train[x] == y for x, y in unit.context)


def test_few_shot_puts_the_workings_out_into_the_prompt(scripted_context):
    ctx, _, _ = _run(scripted_context, population=4, generations=2, few_shot=True, shuffle_prob=0.0)
    children = [u for u in ctx.state.population if u.prompt.demos]
    assert children
    train = {e.input: e.target for e in ctx.train}
    assert all(train[x] == y for u in children for x, y in u.prompt.demos)


def test_ranking_is_the_pooled_mean_over_batches(scripted_context):
    ctx, _ = _context(scripted_context)
    method = Promptbreeder()
    state = PromptbreederState()
    a, b, c = (Prompt(f"Instruction {k} for the test.") for k in "abc")
    state.tally = {a.id: [3.0, 10, a, 0], b.id: [14.0, 20, b, 1], c.id: [7.0, 10, c, 2]}
    assert method.ranking(ctx, state) == [b, c, a]  # 0.7 (20 examples) before 0.7 (10), then 0.3
    assert method.ranking(ctx, None) == []  # the budget ran out while setting up
    assert method.result(ctx, state) == b and method.best_score(ctx, state) == pytest.approx(0.7)


def test_deterministic_for_a_seed(scripted_context):
    runs = [_run(scripted_context, budget=200, seed=3, cache_name=f"d{i}.sqlite") for i in range(2)]
    (ctx_a, backend_a, best_a), (ctx_b, backend_b, best_b) = runs
    assert ctx_a.recorder.candidates == ctx_b.recorder.candidates
    assert best_a == best_b and backend_a.asked == backend_b.asked
    ops = {c[3] for c in ctx_a.recorder.candidates}
    assert "promptbreeder:init" in ops and len(ops) > 3
