"""Promptbreeder (Fernando et al., arXiv 2309.16797 / ICML 2024): a microbial genetic algorithm over
units of (task prompt, mutation prompt, correct workings-out), in which an LLM mutates the task
prompts and, self-referentially, the mutation prompts too. There is no official code.

Faithful to the paper:
- Initialisation: each unit draws a mutation prompt M and a thinking style T (our own lists below)
  and asks for M + T + the problem description D; the reply is its task prompt. D is the starting
  prompt's instruction. The starting prompt itself is unit 0, so the search cannot lose it.
- Fitness: the task metric on a random batch of ``batch_size`` training examples, drawn afresh with
  ``ctx.rng`` at every evaluation (paper: 100).
- Selection: binary tournaments. A generation pairs all units at random; in each pair the fitter
  unit (the first drawn on a tie) is copied over the loser and the copy is mutated and scored.
- Mutation: one of eight operators, uniformly: zero-order generation (D + "a list of hints", the
  first hint); first-order generation (M + P); EDA (a numbered list of the current task prompts,
  near-duplicates filtered at cosine ``eda_similarity`` 0.95, random order, no scores; continue it);
  EDA rank-and-index (the same list in ascending fitness, introduced with M as descending, "the next
  is the best": the paper's deliberate mismatch); lineage (the unit's elites, oldest first, as an
  improving history); zero-order hyper-mutation (a new M from D + a thinking style, then applied);
  first-order hyper-mutation (M improved by the LLM, then applied); Lamarckian (correct workings-out
  -> "which instruction was the friend given?", as APE). Then prompt crossover with ``crossover_prob``
  0.1 (the task prompt replaced by another unit's, chosen fitness-proportionately) and, after the
  score, context shuffling: one correct working-out added (a random one replaced when the list is
  full), or with ``shuffle_prob`` 0.1 the whole list resampled.
- Every candidate is recorded as ``promptbreeder:<operator>``; the final pick is the fittest prompt
  of the whole run (see "Ranking").

Deviations, and why:
- One task prompt per unit (the paper: P1 and P2 applied in sequence). A promptgym prompt has one
  instruction, scored by option log-probabilities; a second pass would double every score's cost.
- A working-out is a training input with its label that the unit's prompt answered correctly (the
  tasks are classification: there is no reasoning text). Without ``few_shot`` (default off: the
  paper finds contexts dominate and task prompts drift) the list feeds the Lamarckian operator only;
  with it, it is also the prompt's demonstrations. Lamarckian falls back to gold-labelled training
  examples while a unit has no working-out yet.
- Diversity extras of the paper's appendix (random prefixes, fitness sharing, evolved temperature)
  are left out. The meta-prompts, mutation prompts and thinking styles are our own, and fewer (12
  each, the paper has ~100 and ~39).
- Mutants are filtered before scoring (``CandidateFilter``: duplicates of anything seen, degenerate
  text, echoes of the meta-prompts); a dropped mutant costs its call(s) only and leaves the loser in
  place. In zero-shot mode a crossover child is a copy of the donor's prompt (the store keeps its
  first record; ``stats.promptbreeder.crossovers`` counts them).
- Budget: the plan costs (N-1) initial calls + N scores, then per generation N//2 replications of at
  most 2 calls + one score of ``batch_size`` examples. Population (paper 50) and generations are lowered
  together to fit (the larger fraction of its default first), down to 2 units and 1 generation;
  generations go on past the plan, up to ``generations``, while the budget pays for one more
  replication (counted by ``budget.PlannedSpend``, so a resumed run decides the same). The first
  step builds and scores the initial population (so a stopper can end the run there); every later
  step is one generation.
- Ranking: fitness is measured on different random batches, so candidates are ranked by their mean
  score over every batch example they were scored on (pooled), more examples first on ties, then
  the earliest; the result is the top of this ranking.
- ``candidate_eval`` (``optimizers.candidate_eval``; ``full``, the paper's scoring, by default):
  with ``halving`` or ``rejects`` a generation's mutants are made first (from the population as
  the generation found it), then race on one fresh batch; the better half, scored on the whole
  batch, replace their losers and the rest are dropped as if filtered (the loser stays), so every
  unit's fitness is a whole batch's. The initial population is scored in full.
  ``saved_calls=candidates`` raises the population (more tournaments per generation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from promptgym.evaluation import arms
from promptgym.evaluation.evaluator import EvalResult
from promptgym.optimizers import budget, candidate_eval
from promptgym.optimizers.base import Context, Optimizer, State, register
from promptgym.optimizers.encoders import TfidfEncoder
from promptgym.optimizers.evoprompt import roulette_probabilities
from promptgym.optimizers.metaprompt import MetaPrompt
from promptgym.optimizers.params import UNSTATED, Param
from promptgym.optimizers.proposals import CandidateFilter, clean_instruction
from promptgym.tasks.prompt import Prompt

# Seed lists, written for this module (the paper's appendices are not copied).
MUTATION_PROMPTS = (
    "Rewrite this instruction so that it is clearer and more specific.",
    "Change the instruction so that a careful expert would follow it more accurately.",
    "Make the instruction shorter while keeping everything it asks for.",
    "Add one useful hint to the instruction about what to pay attention to.",
    "Reword the instruction in plain, everyday language.",
    "Turn the instruction into a precise command that names the possible answers.",
    "Rewrite the instruction the way a teacher would explain the task to a student.",
    "Keep the goal of the instruction but phrase it in a completely new way.",
    "Improve the instruction so that fewer of the answers given with it would be wrong.",
    "Make the instruction more direct and cut anything that is not needed.",
    "Rephrase the instruction for someone who is doing this task for the very first time.",
    "Rewrite the instruction so that it says what to look for before answering.",
)
THINKING_STYLES = (
    "Work through it one small step at a time.",
    "Look for the words that carry the most meaning.",
    "Consider what a specialist in the field would notice first.",
    "Prefer the simplest explanation that fits.",
    "Picture a concrete case before deciding.",
    "Check each possible answer in turn.",
    "Think about what would make an answer wrong.",
    "Attend to the overall tone rather than to single details.",
    "Split the problem into smaller questions.",
    "Compare the case with similar ones seen before.",
    "Doubt the first impression before committing to it.",
    "Be brief and get straight to the point.",
)
OPERATORS = ("zero-order", "first-order", "eda", "eda-rank", "lineage", "hyper-zero-order",
             "hyper-first-order", "lamarckian")


def numbered(texts: Sequence[str]) -> str:
    return "\n".join(f"{i}. {t}" for i, t in enumerate(texts, 1))


def first_line(text: str) -> str:
    return clean_instruction(next((line for line in text.split("\n") if line.strip()), ""))


# Meta-prompts (Jinja). The request's answer prefix is the paper's "control string": it starts the
# reply. Every reply is read as its first line, cleaned. The list meta-prompts (EDA, rank, lineage)
# have no fixed cue: the request ends with the next number of the list it shows.
APPLY = MetaPrompt("promptbreeder.apply", "{{ mutation }}\n\nInstruction: {{ instruction }}",  # init and first-order
                   parser=first_line, cue="New instruction:")
HINTS = MetaPrompt("promptbreeder.hints",
                   "Task: {{ description }}\n\nWrite a numbered list of short hints for doing this task "
                   "well. Each hint is one complete instruction.", parser=first_line, cue="1.")
EDA = MetaPrompt("promptbreeder.eda",
                 "Here are different instructions for the same task:\n\n{{ listing }}\n\n"
                 "Add one more instruction to the list, different from all of them.", parser=first_line)
RANK = MetaPrompt("promptbreeder.eda-rank",
                  "{{ mutation }}\n\nThe instructions below are sorted by their score, from the highest "
                  "to the lowest. Number {{ next }} will score higher than all of them and is closer to "
                  "number {{ last }} than to number 1.\n\n{{ listing }}", parser=first_line)
LINEAGE = MetaPrompt("promptbreeder.lineage",
                     "Here is how an instruction for a task has changed over time, from the oldest to "
                     "the newest. Each version worked better than the one before it.\n\n{{ listing }}\n\n"
                     "Write the next version, which works better still.", parser=first_line)
HYPER_ZERO = MetaPrompt("promptbreeder.hyper-zero-order",
                        "Task: {{ description }}\n{{ style }}\n\nIn one sentence, tell someone how to "
                        "rewrite an instruction for this task so that it works better.",
                        parser=first_line, cue="Advice:")
HYPER_FIRST = MetaPrompt("promptbreeder.hyper-first-order",
                         "Here is a piece of advice on rewriting instructions. Sum it up and make it more "
                         "useful. Reply with the new advice only.\n\nAdvice: {{ mutation }}",
                         parser=first_line, cue="Advice:")
LAMARCK = MetaPrompt("promptbreeder.lamarckian",
                     "A friend was given an instruction and then a few inputs. Following the instruction, "
                     "the friend answered each of them correctly:\n\n{{ pairs }}\n\n"
                     "Which instruction was the friend given? Reply with it as one imperative sentence.",
                     parser=first_line, cue="The instruction was:")
META_PROMPTS = (APPLY, HINTS, EDA, RANK, LINEAGE, HYPER_ZERO, HYPER_FIRST, LAMARCK)


@dataclass
class Unit:
    prompt: Prompt
    mutation: str  # the mutation prompt M
    fitness: float
    context: list[tuple[str, str]] = field(default_factory=list)  # correct workings-out (input, label)
    elites: list[Prompt] = field(default_factory=list)  # the lineage's tournament winners, oldest first


@dataclass
class Offspring:
    """A mutant made in a tournament, before it is scored: what its unit will carry."""

    prompt: Prompt
    mutation: str
    loser: int  # the population slot it takes
    context: list[tuple[str, str]]
    elites: list[Prompt]


@dataclass
class PromptbreederState(State):
    batch_size: int = 0
    population: list[Unit] = field(default_factory=list)
    filter: CandidateFilter = field(default_factory=CandidateFilter)
    spend: budget.PlannedSpend = field(default_factory=budget.PlannedSpend)
    tally: dict[str, list[Any]] = field(default_factory=dict)  # id -> [score sum, examples, prompt, order]
    stats: dict[str, Any] = field(default_factory=dict)


@register
class Promptbreeder(Optimizer):
    name = "promptbreeder"
    summary = "Promptbreeder: binary-tournament evolution of task prompts and the mutation prompts that edit them"
    parameters = {
        "population": Param(20, "units in the population (lowered to fit the budget)", low=2, paper=50),
        "generations": Param(20, "generations of tournaments (0: the initial population only)", low=0),
        "batch_size": Param(10, "random training examples per fitness evaluation", low=1, paper=100),
        "crossover_prob": Param(0.1, "chance that a mutant's task prompt is replaced by another unit's", low=0, high=1),
        "shuffle_prob": Param(0.1, "chance that a unit's whole working-out list is resampled", low=0, high=1),
        "context_size": Param(3, "correct workings-out a unit keeps", low=1, paper=UNSTATED),
        "few_shot": Param(False, "show the workings-out as demonstrations in the prompt", paper=UNSTATED),
        "lineage_size": Param(5, "most recent elites shown to the lineage operator", low=1, paper=UNSTATED),
        "eda_similarity": Param(0.95, "cosine above which EDA lists drop a near-duplicate", low=0, high=1),
        "temperature": Param(0.8, "sampling temperature of the mutation requests", low=0, paper=UNSTATED),
        "max_tokens": Param(60, "token cap of one mutation reply", low=1, paper=UNSTATED),
        **candidate_eval.PARAMETERS,
    }

    # -- plan and set-up ---------------------------------------------------------------------------
    def plan(self, ctx: Context, b: int) -> tuple[int, int]:
        """(population, generations) the budget pays for in the worst case; whichever is the larger
        fraction of its default is lowered first, never below 2 units and 1 generation."""
        n0, t0 = self.params["population"], self.params["generations"]

        def cost(plan: dict[str, int]) -> int:
            return self._cost("full", plan["n"], plan["t"], b)

        def lower_larger_share(plan: dict[str, int]) -> dict[str, int] | None:
            n, t = plan["n"], plan["t"]
            if n > 2 and (t <= 1 or n / n0 >= t / max(t0, 1)):
                return {"n": n - 1, "t": t}
            return {"n": n, "t": t - 1} if t > 1 else None

        plan = budget.fit({"n": n0, "t": t0}, cost, budget.planning_budget(ctx), [lower_larger_share],
                          ctx=ctx, names={"n": "population", "t": "generations"})
        return plan["n"], plan["t"]

    @staticmethod
    def _cost(strategy: str, n: int, t: int, b: int) -> int:
        """The worst case of ``n`` units and ``t`` generations: the initial population, then per
        generation n // 2 mutants of at most 2 calls each, scored on a batch (raced, unless full)."""
        mutants = n // 2
        return (n - 1) + n * b + t * (2 * mutants + arms.pool_cost(strategy, mutants, b, math.ceil(mutants / 2)))

    def setup(self, ctx: Context) -> PromptbreederState:
        b = min(self.params["batch_size"], len(ctx.train))
        n, t = self.plan(ctx, b)
        n = candidate_eval.more_candidates(ctx, self.params, n, lambda m: self._cost("full", m, t, b),
                                           lambda m: self._cost(self.params["candidate_eval"], m, t, b), "population")
        meta = [mp.template for mp in META_PROMPTS] + list(MUTATION_PROMPTS) + list(THINKING_STYLES)
        state = PromptbreederState(batch_size=b, filter=CandidateFilter(demos=ctx.train, meta_texts=meta),
                                   spend=budget.PlannedSpend.of(ctx))
        state.stats = ctx.stats["promptbreeder"] = dict(
            population_planned=n, generations_planned=t, generations_run=0, batch_size=b,
            operators={}, kept={}, crossovers=0, shuffles=0, hypermutations=0)
        state.filter.remember([ctx.initial.instruction])
        return state

    def _populate(self, ctx: Context, state: PromptbreederState) -> None:
        """The first step: the initial population, every unit scored."""
        state.population = self._initial_population(ctx, state, state.stats["population_planned"])
        state.stats["population"] = len(state.population)
        if len(state.population) < 2:
            ctx.log(f"Promptbreeder: population of {len(state.population)} is too small to evolve")
            state.finished = "done"
        self._next(state)

    def _initial_population(self, ctx: Context, state: PromptbreederState, n: int) -> list[Unit]:
        """Unit 0 is the start; each other unit's task prompt is LLM(M + T + D). A dropped reply is
        asked again (fresh M and T) at most once per unit, while the budget pays for it."""
        rng, start = ctx.rng, ctx.initial
        units = [self._unit(ctx, state, start, MUTATION_PROMPTS[rng.integers(len(MUTATION_PROMPTS))], [], [])]
        for _ in range(2 * (n - 1)):
            if len(units) >= n or not state.spend.affords(self._replication_cost(state, 1)):
                break
            m = MUTATION_PROMPTS[rng.integers(len(MUTATION_PROMPTS))]
            style = THINKING_STYLES[rng.integers(len(THINKING_STYLES))]
            text = self._ask(ctx, state, APPLY, mutation=f"{m} {style}",
                             instruction=start.instruction)
            if text:
                prompt = ctx.add(start.with_instruction(text), [start], "promptbreeder:init")
                units.append(self._unit(ctx, state, prompt, m, [], []))
        return units

    def _unit(self, ctx: Context, state: PromptbreederState, prompt: Prompt, mutation: str,
              context: list[tuple[str, str]], elites: list[Prompt], result: EvalResult | None = None) -> Unit:
        """A new unit: scored on a fresh batch (unless a race scored it), its workings-out updated
        from that batch."""
        if result is None:
            result = self._score(ctx, state, prompt)
        unit = Unit(prompt, mutation, result.mean, list(context), elites or [prompt])
        self._shuffle_context(ctx, state, unit, result)
        return unit

    # -- one generation ----------------------------------------------------------------------------
    def step(self, ctx: Context, state: PromptbreederState) -> None:
        """The first step builds the initial population, every later one is a generation."""
        if not state.population:
            self._populate(ctx, state)
            return
        if candidate_eval.racing(self.params):
            self._raced_step(ctx, state)
            return
        pop = state.population
        order = ctx.rng.permutation(len(pop)).tolist()
        for k in range(len(pop) // 2):
            if not state.spend.affords(self._replication_cost(state, 2)):
                state.finished = "budget"
                break
            a, b = order[2 * k], order[2 * k + 1]
            winner, loser = (a, b) if pop[a].fitness >= pop[b].fitness else (b, a)
            self.replicate(ctx, state, winner, loser)
        self._generation_done(ctx, state)

    def _generation_done(self, ctx: Context, state: PromptbreederState) -> None:
        state.stats["generations_run"] += 1
        best = max(u.fitness for u in state.population)
        ctx.log(f"Promptbreeder generation {state.stats['generations_run']} "
                f"(planned {state.stats['generations_planned']}): best batch fitness {best:.3f}")
        self._next(state)

    def _raced_step(self, ctx: Context, state: PromptbreederState) -> None:
        """A generation with ``candidate_eval`` racing: the tournaments' mutants are made first (from
        the population as the generation found it), then race on one fresh batch; the better half,
        scored on the whole batch, replace their losers; the rest are dropped as if filtered."""
        pop, strategy, b = state.population, self.params["candidate_eval"], state.batch_size
        order = ctx.rng.permutation(len(pop)).tolist()
        offspring: list[Offspring] = []
        for k in range(len(pop) // 2):
            more = len(offspring) + 1  # this mutant's calls, and the race it would join, in the worst case
            if state.spend.count(2 + arms.pool_cost(strategy, more, b, math.ceil(more / 2))) < 1:
                state.finished = "budget"
                break
            a, c = order[2 * k], order[2 * k + 1]
            winner, loser = (a, c) if pop[a].fitness >= pop[c].fitness else (c, a)
            child = self.offspring(ctx, state, winner, loser)
            if child is not None:
                offspring.append(child)
        if offspring:
            idx = sorted(ctx.rng.choice(len(ctx.train), size=b, replace=False).tolist())
            keep = math.ceil(len(offspring) / 2)
            race = ctx.evaluate_pool([o.prompt for o in offspring], [ctx.train[i] for i in idx], "train-batch",
                                     strategy, keep)
            state.spend.add(race.requested)
            for i in sorted(race.ranking()[:keep]):
                o, result = offspring[i], race.result(i)
                self._tally(state, o.prompt, result)
                pop[o.loser] = self._unit(ctx, state, o.prompt, o.mutation, o.context, o.elites, result)
        self._generation_done(ctx, state)

    def replicate(self, ctx: Context, state: PromptbreederState, winner: int, loser: int,
                  op: str | None = None) -> None:
        """The winner copied over the loser, the copy mutated (one operator, drawn uniformly unless
        given), maybe crossed over, then scored."""
        child = self.offspring(ctx, state, winner, loser, op)
        if child is not None:  # else dropped before scoring: the loser stays
            state.population[loser] = self._unit(ctx, state, child.prompt, child.mutation, child.context, child.elites)

    def offspring(self, ctx: Context, state: PromptbreederState, winner: int, loser: int,
                  op: str | None = None) -> Offspring | None:
        """The winner's mutated (maybe crossed-over) copy, recorded but not scored; None if dropped."""
        pop, p = state.population, self.params
        parent = pop[winner]
        op = op or OPERATORS[ctx.rng.integers(len(OPERATORS))]
        state.stats["operators"][op] = state.stats["operators"].get(op, 0) + 1
        text, mutation = self.mutate(ctx, state, op, winner)
        if not text:
            return None
        state.stats["kept"][op] = state.stats["kept"].get(op, 0) + 1
        child = parent.prompt.with_instruction(text)
        parents, operation = [parent.prompt], f"promptbreeder:{op}"
        others = [k for k in range(len(pop)) if k != loser]
        if others and ctx.rng.random() < p["crossover_prob"]:
            probs = roulette_probabilities([pop[k].fitness for k in others])
            donor = pop[others[int(ctx.rng.choice(len(others), p=probs))]].prompt
            child = parent.prompt.with_instruction(donor.instruction)
            parents, operation = [parent.prompt, donor], "promptbreeder:crossover"
            state.stats["crossovers"] += 1
        if p["few_shot"]:
            child = replace(child, demos=tuple(parent.context))
        ctx.add(child, parents, operation)
        elites = parent.elites if parent.elites[-1].id == parent.prompt.id else parent.elites + [parent.prompt]
        return Offspring(child, mutation, loser, parent.context, elites[-p["lineage_size"]:])

    def mutate(self, ctx: Context, state: PromptbreederState, op: str, i: int) -> tuple[str, str]:
        """(new task-prompt text or "" when dropped, the mutation prompt the offspring carries)."""
        unit, pop, rng = state.population[i], state.population, ctx.rng
        m, instruction, description = unit.mutation, unit.prompt.instruction, ctx.initial.instruction
        if op == "zero-order":
            return self._ask(ctx, state, HINTS, description=description), m
        if op == "first-order":
            return self._ask(ctx, state, APPLY, mutation=m, instruction=instruction), m
        if op == "eda":
            texts = [pop[k].prompt.instruction for k in rng.permutation(len(pop)).tolist()]
            listing = self._distinct(ctx, texts)
            return self._ask(ctx, state, EDA, cue=f"{len(listing) + 1}.", listing=numbered(listing)), m
        if op == "eda-rank":
            ascending = sorted(range(len(pop)), key=lambda k: (pop[k].fitness, k))
            listing = self._distinct(ctx, [pop[k].prompt.instruction for k in ascending])
            n = len(listing)
            return self._ask(ctx, state, RANK, cue=f"{n + 1}.", mutation=m, next=n + 1, last=n,
                             listing=numbered(listing)), m
        if op == "lineage":
            listing = [e.instruction for e in unit.elites]
            return self._ask(ctx, state, LINEAGE, cue=f"{len(listing) + 1}.", listing=numbered(listing)), m
        if op in ("hyper-zero-order", "hyper-first-order"):
            if op == "hyper-zero-order":
                style = THINKING_STYLES[rng.integers(len(THINKING_STYLES))]
                new = self._ask(ctx, state, HYPER_ZERO, keep=False, description=description,
                                style=style)
            else:
                new = self._ask(ctx, state, HYPER_FIRST, keep=False, mutation=m)
            if len(new.split()) >= 3:
                m = new
                state.stats["hypermutations"] += 1
            return self._ask(ctx, state, APPLY, mutation=m, instruction=instruction), m
        # lamarckian: the unit's correct workings-out (gold-labelled training examples until it has some)
        pairs = list(unit.context)
        if not pairs:
            k = min(self.params["context_size"], len(ctx.train))
            pairs = [(e.input, e.target) for e in (ctx.train[j] for j in rng.choice(len(ctx.train), k, replace=False))]
        shown = "\n\n".join(f"Input: {ctx.shown(x, len(pairs))}\nOutput: {unit.prompt.verbalize(y)}" for x, y in pairs)
        return self._ask(ctx, state, LAMARCK, pairs=shown), m

    # -- helpers -----------------------------------------------------------------------------------
    def _ask(self, ctx: Context, state: PromptbreederState, meta: MetaPrompt, keep: bool = True,
             cue: str | None = None, **values: Any) -> str:
        """One optimizer-model call (``cue``, when given, in place of the meta-prompt's own); its
        first line, cleaned (and filtered unless ``keep`` is False)."""
        out = ctx.ask([("user", meta.render(**values))], n=1, temperature=self.params["temperature"],
                      max_tokens=self.params["max_tokens"], answer_prefix=meta.cue if cue is None else cue)[0]
        state.spend.add(1)
        text = meta.parse(out)
        if not keep:
            return text
        kept = state.filter([text])
        ctx.stats["dropped"] = dict(state.filter.dropped)
        return kept[0] if kept else ""

    def _distinct(self, ctx: Context, texts: list[str]) -> list[str]:
        """``texts`` in order, without any whose cosine to an earlier kept one exceeds the threshold
        (the task model's embeddings when it has them, else TF-IDF over these texts)."""
        if ctx.evaluator.can_embed():
            vectors = ctx.evaluator.embed(texts)
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        else:
            vectors = TfidfEncoder.fit(texts).embed(texts)
        kept: list[int] = []
        for i in range(len(texts)):
            if all(float(vectors[i] @ vectors[j]) <= self.params["eda_similarity"] for j in kept):
                kept.append(i)
        return [texts[i] for i in kept]

    def _score(self, ctx: Context, state: PromptbreederState, prompt: Prompt) -> EvalResult:
        idx = sorted(ctx.rng.choice(len(ctx.train), size=state.batch_size, replace=False).tolist())
        state.spend.add(state.batch_size)
        result = ctx.evaluate(prompt, [ctx.train[i] for i in idx], split="train-batch")
        self._tally(state, prompt, result)
        return result

    @staticmethod
    def _tally(state: PromptbreederState, prompt: Prompt, result: EvalResult) -> None:
        entry = state.tally.setdefault(prompt.id, [0.0, 0, prompt, len(state.tally)])
        entry[0] += sum(result.scores)
        entry[1] += len(result.scores)

    def _shuffle_context(self, ctx: Context, state: PromptbreederState, unit: Unit, result: EvalResult) -> None:
        """Context shuffling: add one new correct working-out (replacing a random one when the list
        is full), or with ``shuffle_prob`` resample the whole list from this batch's correct ones."""
        size = self.params["context_size"]
        correct = [(e.input, e.target) for e, s in zip(result.examples, result.scores) if s >= 1.0]
        if ctx.rng.random() < self.params["shuffle_prob"]:
            state.stats["shuffles"] += 1
            picks = ctx.rng.permutation(len(correct)).tolist()[:size]
            unit.context = [correct[k] for k in picks]
            return
        new = [w for w in correct if w not in unit.context]
        if not new:
            return
        working = new[int(ctx.rng.integers(len(new)))]
        if len(unit.context) < size:
            unit.context.append(working)
        else:
            unit.context[int(ctx.rng.integers(size))] = working

    @staticmethod
    def _replication_cost(state: PromptbreederState, calls: int) -> int:
        """A new unit in the worst case: ``calls`` generations and one score."""
        return calls + state.batch_size

    def _next(self, state: PromptbreederState) -> None:
        if state.finished:
            return
        if state.stats["generations_run"] >= candidate_eval.last_step(
                self.params, state.stats["generations_planned"], self.params["generations"]):
            state.finished = "done"
        elif not state.spend.affords(self._replication_cost(state, 2)):
            state.finished = "budget"

    # -- the answer --------------------------------------------------------------------------------
    def ranking(self, ctx: Context, state: PromptbreederState | None) -> list[Prompt]:
        if state is None:
            return []
        entries = sorted(state.tally.values(), key=lambda e: (-e[0] / e[1], -e[1], e[3]))
        return [e[2] for e in entries]

    def result(self, ctx: Context, state: PromptbreederState | None) -> Prompt:
        ranked = self.ranking(ctx, state)
        return ranked[0] if ranked else ctx.initial

    def best_score(self, ctx: Context, state: PromptbreederState) -> float | None:
        return max(e[0] / e[1] for e in state.tally.values()) if state.tally else None
