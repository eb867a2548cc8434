"""EvoPrompt (Guo et al., ICLR 2024): a genetic algorithm (GA) or differential evolution (DE) over
prompts, whose crossover and mutation an LLM performs by following numbered steps.

Faithful to the paper and beeevita/EvoPrompt (``evoluter.py``, ``GAEvoluter`` / ``DEEvoluter``):
- Fitness is the task metric on the selection split: the **dev** split when the run has one (the
  paper's dev set), else the training split. Everything is selected on that split, and the result
  is the best prompt on it.
- Initial population (``para_topk``, the scripts' default): the starting prompt plus paraphrases of
  it ("same meaning, new words", the shared ``paraphrase`` helper), ``population`` (10) in all.
  With a single starting prompt there is nothing to rank first, so all N-1 others are paraphrases.
- GA (``evoprompt-ga``), ``generations`` (10) times: draw a parent pool of N by roulette wheel,
  P(i) = f_i / sum f (uniform when every fitness is 0); for each of N children take two parents
  from the pool (two different pool positions), one LLM call performs "cross over, then mutate",
  the child is read from <prompt></prompt> and scored; the next population is the top N of
  parents + children (``ga_mode=topk``), no duplicates, ties in favour of the older prompt.
- DE (``evoprompt-de``), ``generations`` (10) times, for every member p_i: pick a and b, two other
  members, and c = the best prompt so far (``donor_random=True``: a third random member); one LLM
  call performs the four steps (find where a and b differ; mutate those parts; put them into c;
  cross the result with p_i); the child replaces p_i if it scores higher (one-to-one). As in the
  code, a generation reads the population as it was at the start of the generation, while the best
  prompt (donor c) is updated at once.
- Evolution LLM at ``temperature`` 0.5 and top-p 0.95 (paper). The meta-prompts (written anew here)
  carry one fully worked example on a *different* task (text simplification), the paper's choice to
  keep the model from copying the example's wording into a classification prompt.

Decisions where paper and code leave it open:
- Children are filtered before scoring (duplicates of anything seen, degenerate text); a dropped
  child costs its generation call only, is counted in ``ctx.stats["dropped"]`` and simply leaves its
  slot empty (GA) or p_i in place (DE). The code scores every child.
- Paraphrases for the initial population are sampled at ``paraphrase_temperature`` 1.0 (the code
  passes no temperature there, so its API's default of 1.0 applies; a tiny model at 0.5 mostly
  echoes the prompt); if duplicates leave the population short, up to two more paraphrase requests
  fill it, then it runs with what it has (no evolution if fewer than the minimum remain).
- Parsing: the last <prompt> span (the final step's); an unclosed tag or a reply without tags falls
  back to the first line after the tag / of the reply (the code takes the whole reply). A child
  that copies a prompt of the worked example is dropped too (a tiny model often does).
- Budget: the plan costs (N-1) paraphrases + N scores, then per generation N calls + N scores.
  When the run's budget cannot pay for the defaults, N and the generation count are lowered
  together (whichever is the larger fraction of its default goes first), never raised, down to
  N = 2 (GA) / 3 (DE) and 1 generation. The plan used is in ``ctx.stats["evoprompt"]``. The plan
  assumes every paraphrase and child is kept and scored; a dropped one costs its call only (a tiny
  model's many duplicates and copies left 50-150 of 200 calls unused). So generations go on past
  the plan, up to ``generations``, while the budget pays for one more child (one call + one
  score), and a generation stops early when it cannot: GA keeps the top N of the parents and the
  children it has, DE leaves the remaining members as they are (``ctx.stats["stopped_by"]`` says
  which ended the run). The spend is counted by ``budget.PlannedSpend``, not read from the budget
  meter, so a resumed run that replays its calls from the cache for free makes the same decisions.
  The first step builds and scores the initial population (so a stopper can end the run there);
  every later step is one generation.
- ``max_tokens`` 160 (GA) / 220 (DE): the reply walks through the steps before the final prompt.
- GA's ``candidate_eval`` (``optimizers.candidate_eval``; ``full``, the paper's scoring, by default):
  with ``halving`` or ``rejects`` a generation's children race on the selection split down to the
  better half, which is scored on all of it and competes with the parents for the top N; the rest
  are dropped as if filtered (their noisy scores never enter the population). The initial
  population is scored in full: all of it is kept, there is nothing to race for.
  ``saved_calls=candidates`` makes more children per generation. DE has no pool: each child duels
  one member, so it has no ``candidate_eval``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from promptgym.data.dataset import Example
from promptgym.evaluation import arms
from promptgym.optimizers import budget, candidate_eval
from promptgym.optimizers.base import Context, Optimizer, State, register
from promptgym.optimizers.metaprompt import MetaPrompt
from promptgym.optimizers.params import UNSTATED, Param
from promptgym.optimizers.proposals import CandidateFilter, normalize_key, paraphrase, parse_first
from promptgym.tasks.prompt import Prompt



def _final_prompt(reply: str) -> str:
    """The last tagged prompt in a reply: the final step (mutation, crossover) comes last."""
    return parse_first(reply, "prompt", which="last")


GA_META_PROMPT = MetaPrompt("evoprompt.ga", """\
Follow the two steps below to write a better prompt.
1. Cross over Prompt 1 and Prompt 2: join parts of both into one new prompt.
2. Mutate the prompt from step 1: change some of its words and phrases. Give the final prompt \
between <prompt> and </prompt>.

Prompt 1: Turn the passage into plainer language.
Prompt 2: Rephrase this hard sentence using easy words, and keep what it says.

1. Crossover: Rephrase the passage using easy words, and keep what it says.
2. Mutation: <prompt>Rewrite the passage in simple words without changing what it means.</prompt>

Follow the two steps below to write a better prompt.
1. Cross over Prompt 1 and Prompt 2: join parts of both into one new prompt.
2. Mutate the prompt from step 1: change some of its words and phrases. Give the final prompt \
between <prompt> and </prompt>.

Prompt 1: {{ prompt1 }}
Prompt 2: {{ prompt2 }}""", parser=_final_prompt, cue="1. Crossover:")

DE_STEPS = """\
Follow the four steps below to write a better prompt.
1. Find the parts where Prompt 1 and Prompt 2 differ.
2. Change each of those differing parts at random.
3. Put the changed parts into Prompt 3 in place of the parts they match, to make a new prompt.
4. Cross over the new prompt from step 3 with the Base prompt. Give the final prompt between \
<prompt> and </prompt>.
"""
# The worked example repeats the steps, then the real request repeats them again (one-shot form).
DE_META_PROMPT = MetaPrompt("evoprompt.de", DE_STEPS + """
Prompt 1: Turn the passage into plainer language.
Prompt 2: Rephrase this hard sentence using easy words, and keep what it says.
Prompt 3: Rewrite the text in short, simple sentences so that a young reader can follow it, without \
changing its meaning.
Base prompt: Make the text easy to read for someone still learning English.

1. Differing parts: "Turn the passage" vs "Rephrase this hard sentence"; "plainer language" vs \
"easy words, and keep what it says"
2. Changed parts: "Turn the passage" -> "Recast the paragraph"; "Rephrase this hard sentence" -> \
"Reword the difficult sentence"; "plainer language" -> "everyday language"; "easy words, and keep \
what it says" -> "common words while keeping its sense"
3. New prompt: Recast the paragraph in everyday language so that a young reader can follow it, \
while keeping its sense.
4. Final prompt: <prompt>Reword the difficult text in everyday language so that someone still \
learning English can read it, while keeping its sense.</prompt>

""" + DE_STEPS + """
Prompt 1: {{ prompt1 }}
Prompt 2: {{ prompt2 }}
Prompt 3: {{ prompt3 }}
Base prompt: {{ base }}""", parser=_final_prompt, cue="1. Differing parts:")
# The worked examples' prompts: a child that merely copies one is dropped ("copies_example").
EXAMPLE_PROMPTS = (
    "Turn the passage into plainer language.",
    "Rephrase this hard sentence using easy words, and keep what it says.",
    "Rephrase the passage using easy words, and keep what it says.",
    "Rewrite the passage in simple words without changing what it means.",
    "Rewrite the text in short, simple sentences so that a young reader can follow it, without changing "
    "its meaning.",
    "Make the text easy to read for someone still learning English.",
    "Recast the paragraph in everyday language so that a young reader can follow it, while keeping its sense.",
    "Reword the difficult text in everyday language so that someone still learning English can read it, "
    "while keeping its sense.",
)
_EXAMPLE_KEYS = frozenset(normalize_key(t) for t in EXAMPLE_PROMPTS)


def roulette_probabilities(fitness: Sequence[float]) -> np.ndarray:
    """P(i) = f_i / sum f (fitness-proportionate); uniform when every fitness is 0. Fitness must
    be non-negative (accuracy, not a log-likelihood)."""
    f = np.clip(np.asarray(fitness, dtype=float), 0.0, None)
    total = f.sum()
    return f / total if total > 0 else np.full(len(f), 1.0 / len(f))


Member = tuple[Prompt, float]  # a prompt and its fitness


@dataclass
class EvoState(State):
    split: str = "train"
    examples: list[Example] = field(default_factory=list)  # the selection split's
    population: list[Member] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    filter: CandidateFilter = field(default_factory=CandidateFilter)
    spend: budget.PlannedSpend = field(default_factory=budget.PlannedSpend)
    children: int = 0  # GA: children per generation (the population size, unless races pay for more)


class _EvoPrompt(Optimizer):
    """Shared: budget plan, initial population, scoring, filtering, bookkeeping."""

    selection_split = "dev"  # the paper's dev set when the run gives the method one
    mode = ""
    min_population = 2

    def least_population(self) -> int:
        """The smallest population that can evolve."""
        return self.min_population

    def plan(self, ctx: Context, n_select: int) -> tuple[int, int]:
        """(population, generations) that the run's budget can pay for; the defaults when it can.
        Whichever is the larger fraction of its default is lowered first."""
        n0, t0, least = self.params["population"], self.params["generations"], self.least_population()

        def cost(plan: dict[str, int]) -> int:
            n, t = plan["n"], plan["t"]
            return (n - 1) + n * n_select + t * n * (1 + n_select)

        def lower_larger_share(plan: dict[str, int]) -> dict[str, int] | None:
            n, t = plan["n"], plan["t"]
            if n > least and (t <= 1 or n / n0 >= t / t0):
                return {"n": n - 1, "t": t}
            return {"n": n, "t": t - 1} if t > 1 else None

        plan = budget.fit({"n": n0, "t": t0}, cost, budget.planning_budget(ctx), [lower_larger_share],
                          ctx=ctx, names={"n": "population", "t": "generations"})
        return plan["n"], plan["t"]

    def setup(self, ctx: Context) -> EvoState:
        split, examples = self.selection(ctx)
        n, t = self.plan(ctx, len(examples))
        state = EvoState(split=split, examples=examples, filter=CandidateFilter(demos=ctx.train),
                         spend=budget.PlannedSpend.of(ctx))  # see "Budget" in the module docstring
        state.stats = ctx.stats["evoprompt"] = dict(population_planned=n, generations_planned=t, generations_run=0,
                                                    selection_split=split, children=0, scored=0)
        state.children = self.children_per_generation(ctx, n, len(examples))
        state.filter.remember([ctx.initial.instruction])
        return state

    def step(self, ctx: Context, state: EvoState) -> None:
        """The first step builds and scores the initial population, every later one is a generation."""
        if not state.population:
            self._populate(ctx, state)
            return
        state.population = self.generation(ctx, state, state.population)
        state.stats["generations_run"] += 1
        best = max(state.population, key=lambda m: m[1])
        ctx.log(f"EvoPrompt-{self.mode} generation {state.stats['generations_run']} "
                f"(planned {state.stats['generations_planned']}): best {best[1]:.3f}")
        self._next(state)

    def _populate(self, ctx: Context, state: EvoState) -> None:
        state.population = self._initial_population(ctx, state, state.stats["population_planned"])
        state.stats["population"] = len(state.population)
        if len(state.population) < self.least_population():
            ctx.log(f"EvoPrompt-{self.mode}: population of {len(state.population)} is too small to evolve")
            state.finished = "done"
        self._next(state)

    def _next(self, state: EvoState) -> None:
        """Generations go on past the plan, up to ``generations``, while the budget pays for a child
        (planned ones always can; later ones use what drops left)."""
        if state.finished:
            return
        planned = state.stats["generations_planned"]
        if state.stats["generations_run"] >= candidate_eval.last_step(self.params, planned,
                                                                     max(planned, self.params["generations"])):
            state.finished = "done"
        elif not state.spend.affords(self._child_cost(state)):
            state.finished = "budget"

    def _initial_population(self, ctx: Context, state: EvoState, n: int) -> list[Member]:
        p = self.params
        members = [(ctx.initial, self._score(ctx, state, ctx.initial))]
        texts: list[str] = []
        for _ in range(3):  # one request, then up to two top-ups when duplicates leave it short
            need = n - 1 - len(texts)
            if need <= 0:
                break
            outs = paraphrase(ctx, ctx.initial, need, temperature=p["paraphrase_temperature"], top_p=p["top_p"],
                              max_tokens=p["paraphrase_max_tokens"])
            state.spend.add(len(outs))
            texts += state.filter(outs)
            ctx.stats["dropped"] = dict(state.filter.dropped)
        for text in texts[: n - 1]:
            cand = ctx.add(ctx.initial.with_instruction(text), [ctx.initial], "evoprompt:paraphrase")
            members.append((cand, self._score(ctx, state, cand)))
        return members

    def children_per_generation(self, ctx: Context, n: int, n_select: int) -> int:
        return n

    def _child(self, ctx: Context, state: EvoState, meta: MetaPrompt, values: dict[str, str],
               parents: Sequence[Prompt], operation: str) -> Member | None:
        """One evolution call; the child scored, or None if it was dropped before scoring."""
        child = self._offspring(ctx, state, meta, values, parents, operation)
        return None if child is None else (child, self._score(ctx, state, child))

    def _offspring(self, ctx: Context, state: EvoState, meta: MetaPrompt, values: dict[str, str],
                   parents: Sequence[Prompt], operation: str) -> Prompt | None:
        """One evolution call (``meta`` filled with ``values``); the child (recorded, not scored),
        or None if it was dropped."""
        p = self.params
        out = ctx.ask([("user", meta.render(**values))], n=1, temperature=p["temperature"], top_p=p["top_p"],
                      max_tokens=p["max_tokens"], answer_prefix=meta.cue)[0]
        state.spend.add(1)
        state.stats["children"] += 1
        text = meta.parse(out)
        if text and normalize_key(text) in _EXAMPLE_KEYS:
            state.filter.dropped["copies_example"] += 1
            texts = []
        else:
            texts = state.filter([text])
        ctx.stats["dropped"] = dict(state.filter.dropped)
        if not texts:
            return None
        return ctx.add(parents[0].with_instruction(texts[0]), parents, operation)

    def _score(self, ctx: Context, state: EvoState, prompt: Prompt) -> float:
        state.stats["scored"] += 1
        state.spend.add(len(state.examples))  # every scored prompt is new: the filter drops repeats
        return ctx.evaluate(prompt, state.examples, split=state.split).mean

    @staticmethod
    def _child_cost(state: EvoState) -> int:
        """One more child in the worst case: its call and its score."""
        return 1 + len(state.examples)

    def generation(self, ctx: Context, state: EvoState, population: list[Member]) -> list[Member]:
        raise NotImplementedError


def evolution_parameters(min_population: int, max_tokens: int, **extra: Param) -> dict[str, Param]:
    """GA's and DE's parameters: the same but for the smallest population, the reply's length
    (DE's walks through more steps) and DE's ``donor_random`` (``extra``)."""
    return {
        "population": Param(10, "prompts in the population, N (lowered to fit the budget)",
                            low=min_population),
        "generations": Param(10, "generations (0: the initial population only)", low=0),
        "temperature": Param(0.5, "sampling temperature of the evolution requests", low=0),
        "top_p": Param(0.95, "nucleus sampling of the evolution requests", low=0, high=1),
        **extra,
        "max_tokens": Param(max_tokens, "token cap of one evolution reply (steps, then the prompt)", low=1,
                            paper=UNSTATED),
        "paraphrase_temperature": Param(1.0, "temperature of the initial population's paraphrases", low=0),
        "paraphrase_max_tokens": Param(60, "token cap of one paraphrase", low=1, paper=UNSTATED),
    }


@register
class EvoPromptGA(_EvoPrompt):
    name = "evoprompt-ga"
    summary = "EvoPrompt GA: roulette selection, LLM crossover + mutation, keep the top N"
    mode = "GA"
    min_population = 2
    parameters = {**evolution_parameters(min_population, max_tokens=160), **candidate_eval.PARAMETERS}

    def children_per_generation(self, ctx: Context, n: int, n_select: int) -> int:
        return candidate_eval.more_candidates(ctx, self.params, n, lambda c: self._brood_cost("full", c, n_select),
                                              lambda c: self._brood_cost(self.params["candidate_eval"], c, n_select),
                                              "children")

    @staticmethod
    def _brood_cost(strategy: str, children: int, n_select: int) -> int:
        """A generation of ``children`` at most: their calls, then their race down to half (or, in
        full, every child scored)."""
        return children + arms.pool_cost(strategy, children, n_select, math.ceil(children / 2))

    def generation(self, ctx: Context, state: EvoState, population: list[Member]) -> list[Member]:
        if candidate_eval.racing(self.params):
            return self._raced_generation(ctx, state, population)
        n = len(population)
        probs = roulette_probabilities([s for _, s in population])
        pool = ctx.rng.choice(n, size=n, replace=True, p=probs).tolist()
        children: list[Member] = []
        for _ in range(n):
            if not state.spend.affords(self._child_cost(state)):
                break
            i, j = ctx.rng.choice(len(pool), size=2, replace=False).tolist()
            a, b = population[pool[i]][0], population[pool[j]][0]
            child = self._child(ctx, state, GA_META_PROMPT, dict(prompt1=a.instruction, prompt2=b.instruction),
                                [a, b], "evoprompt-ga:crossover+mutation")
            if child is not None:
                children.append(child)
        return select_top(population + children, n)

    def _raced_generation(self, ctx: Context, state: EvoState, population: list[Member]) -> list[Member]:
        """The same parents and calls, but the children race (``candidate_eval``): the better half,
        scored on the whole selection split, joins the parents for the top N; the rest are dropped
        as if filtered."""
        n, strategy = len(population), self.params["candidate_eval"]
        probs = roulette_probabilities([s for _, s in population])
        pool = ctx.rng.choice(n, size=n, replace=True, p=probs).tolist()
        children: list[Prompt] = []
        for _ in range(state.children):
            more = len(children) + 1  # this child's call, and the race it would join, in the worst case
            if state.spend.count(1 + arms.pool_cost(strategy, more, len(state.examples), math.ceil(more / 2))) < 1:
                break
            i, j = ctx.rng.choice(len(pool), size=2, replace=False).tolist()
            a, b = population[pool[i]][0], population[pool[j]][0]
            child = self._offspring(ctx, state, GA_META_PROMPT,
                                    dict(prompt1=a.instruction, prompt2=b.instruction), [a, b],
                                    "evoprompt-ga:crossover+mutation")
            if child is not None:
                children.append(child)
        keep = math.ceil(len(children) / 2)
        race = ctx.evaluate_pool(children, state.examples, state.split, strategy, keep)
        state.spend.add(race.requested)
        state.stats["scored"] += len(children)
        kept = sorted(race.ranking()[:keep])  # in the order they were made: ties go to the older
        return select_top(population + [(children[k], race.mean(k)) for k in kept], n)


@register
class EvoPromptDE(_EvoPrompt):
    name = "evoprompt-de"
    summary = "EvoPrompt DE: LLM mutates the difference of two prompts into the best, crossover with each member"
    mode = "DE"
    min_population = 3
    parameters = evolution_parameters(
        min_population, max_tokens=220,
        donor_random=Param(False, "donor c is a random member instead of the best prompt"))

    def least_population(self) -> int:
        return 4 if self.params["donor_random"] else 3  # a, b (and a random c) distinct from p_i

    def generation(self, ctx: Context, state: EvoState, population: list[Member]) -> list[Member]:
        n = len(population)
        best = max(range(n), key=lambda k: (population[k][1], -k))
        donor = population[best]
        new = list(population)
        for i in range(n):
            if not state.spend.affords(self._child_cost(state)):
                break
            others = [k for k in range(n) if k != i]
            picks = ctx.rng.choice(len(others), size=3 if self.params["donor_random"] else 2,
                                   replace=False).tolist()
            a, b = population[others[picks[0]]][0], population[others[picks[1]]][0]
            c = population[others[picks[2]]][0] if self.params["donor_random"] else donor[0]
            base = population[i][0]
            values = dict(prompt1=a.instruction, prompt2=b.instruction, prompt3=c.instruction,
                          base=base.instruction)
            child = self._child(ctx, state, DE_META_PROMPT, values, [base, a, b, c], "evoprompt-de:differential")
            if child is not None and child[1] > population[i][1]:
                new[i] = child
                if child[1] > donor[1]:
                    donor = child
        return new


def select_top(members: list[Member], n: int) -> list[Member]:
    """The ``n`` best distinct prompts; ties go to the earlier (older) member."""
    seen: set[str] = set()
    unique = []
    for prompt, score in members:
        if prompt.id not in seen:
            seen.add(prompt.id)
            unique.append((prompt, score))
    order = sorted(range(len(unique)), key=lambda k: (-unique[k][1], k))
    return [unique[k] for k in order[:n]]
