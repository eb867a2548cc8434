"""GPO, Gradient-inspired LLM-based Prompt Optimizer (Tang et al., arXiv 2402.17564 / AAAI 2025):
prompt optimization read as gradient descent -- the trajectory of past prompts is the update
direction (momentum), an LLM writes the update, and a decaying edit-distance budget is the
learning rate.

Faithful to the paper and RUCAIBox/GPO (``src/optimization/main.py`` and its ``momentum``,
``learning_rate``, ``lr_scheduler`` helpers):
- Score the starting instruction on the selection split; then ``epochs`` (3) x steps-per-epoch
  steps, where steps-per-epoch is |train| // ``batch_size`` (8), plus one when the remainder is
  at least half a batch (the code's rule).
- Each step builds one meta-prompt (written anew here): the retrieved trajectory of past
  (instruction, score) pairs with scores 0-100 (the momentum, ``momentum_k`` = 3 entries, on by
  ``momentum``), the current instruction and its score, ``num_exemplars`` (3) training examples
  drawn once showing where the instruction goes and the correct answer, then -- just before the
  final request, as in the code -- "you may change at most N words", then the request for one new
  instruction inside <START>/<END>; ``refinement="generate"`` (the paper's choice) asks for a new
  instruction, ``"edit"`` for a modification of the current one.
- ``per_step`` (8) independent samples at ``temperature`` 1.0 (GPO.sh); each reply gives one
  candidate; duplicates within the step are dropped; the rest are scored on the selection split.
- Next instruction: the step's best-scoring candidate that has not been an earlier step's
  instruction; if there is none, the current one stays. It joins the trajectory with its score.
- Retrieval (``retrieval``): ``"recency"`` the k latest trajectory entries, newest first;
  ``"relevance"`` the newest entry, then the k-1 earlier ones most similar to it; ``"importance"``
  the k best-scored entries, best first (ties: earlier first). The issue asks for recency as the
  default; the paper's final GPO uses relevance.
- Learning rate: the edit budget N_t = floor(final + (initial - final) * (1 + cos(pi t / T)) / 2)
  for step t = 1..T (initial 50 words, final 10: GPO.sh), or ``initial_edit_limit`` throughout when
  ``decay_edit_limit`` is false. Warm-up (``warmup``, off in GPO.sh; the paper tried a linear
  warm-up over the first ``warmup_fraction`` = 5% of the steps and found it did not help): N_t rises
  linearly to the initial value over W steps, then decays over the remaining T - W.
- Result: the trajectory instruction with the best selection score (the code only logs every
  step's instruction, with its test score; promptgym never looks at test).

Decisions where paper and code leave it open (or are wrong):
- The edit budget is enforced, not just requested: the code only writes the limit into the
  meta-prompt and neither checks nor re-asks. Here every proposal's word-level edit distance to the
  current instruction is measured (Levenshtein over lower-cased words, punctuation stripped from
  word edges) and proposals over the limit are rejected before scoring, without re-asking (a
  re-ask would spend budget on a constraint the method never enforced). Rejections are counted
  in ``ctx.stats["gpo"]["edit_rejections"]``.
- Relevance uses a lexical similarity, no extra model (the paper embeds with BGE; the code loads
  Llama-2-7b as a sentence encoder on every call): cosine similarity of lower-cased word-count
  vectors. Ties go to the more recent entry.
- Selection split: the run's dev split when it has one, else the training split (GPO scores
  candidates on a separate evaluation split; promptgym runs often have none).
- The per-step training minibatch is only read by GPO's optional feedback ("gradient") variant,
  which the final GPO does not use and which is not implemented; so no minibatch is scored and
  ``batch_size`` only sets the number of steps. The exemplars are drawn once, as the code does.
- The code records the carried-over instruction's score as 0 when a step produces nothing new,
  and its "earlier steps' best" set misses the starting instruction; here the real score is
  recorded and the starting instruction counts as an earlier step's instruction.
- The reply is primed with ``<START>`` so a small chat model writes the instruction at once.
- Budget: a step costs ``per_step`` generations + one selection-split score per kept candidate.
  When the run's budget cannot pay for the defaults, the steps are cut (to no fewer than 3, so the
  schedule still decays), then ``per_step`` (to no fewer than 2), then the selection split is
  subsampled once (to no fewer than 4 examples); never raised. The cosine schedule runs over the
  steps actually planned, so it always ends at the final limit. The plan is in
  ``ctx.stats["gpo"]["plan"]``. The plan assumes every sample is kept and scored; a dropped or
  over-limit proposal costs its call only (measured: 108-188 of 200 calls used). So each step asks
  for as many samples as an even share of what is left pays for in the worst case -- (budget -
  spent) / (steps left x (1 + eval examples)) -- between the planned ``per_step`` and the default,
  which keeps every later step affordable and passes unused budget forward (``stats["samples"]``
  per step). The spend is counted by ``budget.PlannedSpend``, not read from the budget meter,
  so a resumed run that replays its calls from the cache for free asks for the same numbers.
- The result, also when the budget runs out mid-step, is the best instruction of the trajectory;
  the patience and target stoppers read the trajectory's best score.
GPO varies the instruction only; layout and verbalizers stay the starting prompt's.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

from promptgym.data.dataset import Example
from promptgym.errors import PromptgymError
from promptgym.optimizers import budget
from promptgym.optimizers.base import Context, Optimizer, State, register
from promptgym.optimizers.metaprompt import MetaPrompt
from promptgym.optimizers.params import UNSTATED, Param
from promptgym.optimizers.proposals import CandidateFilter, parse_first
from promptgym.tasks.prompt import Prompt

RETRIEVALS = ("recency", "relevance", "importance")
REFINEMENTS = ("generate", "edit")


def _read_instruction(reply: str) -> str:
    """The one instruction in a reply that continues the ``<START>`` cue."""
    return parse_first(reply, "START", prefix=META_PROMPT.cue)


META_PROMPT = MetaPrompt("gpo.meta-prompt", """\
Your job is to write a better instruction for a language model. In the examples further below, \
<Prompt> marks the place where the instruction is put.
{% if trajectory %}
Here are instructions tried earlier, each with its score (from 0 to 100, higher is better):
{% for item in trajectory %}
Instruction: {{ item.text }}
Score: {{ item.score }}
{% endfor %}{% endif %}
The current instruction is:
{{ current.text }}
Score: {{ current.score }}

Examples of the task. The model's answer counts as correct only when it equals the answer shown.
{% for ex in exemplars %}
Input: {{ ex.input }}
<Prompt>
Answer: {{ ex.answer }}
{% endfor %}{% if limit is not none %}
You may change at most {{ limit }} words of the current instruction.
{% endif %}
{{ request }}""", parser=_read_instruction, cue="<START>")

REQUESTS = {
    "generate": ("Study the instructions above and their scores, then write one new instruction that "
                 "should score higher than any of them. Put it between <START> and <END>."),
    "edit": ("Study the instructions above and their scores, then modify the current instruction so that "
             "it should score higher than any of them. Put the result between <START> and <END>."),
}


# ---------------------------------------------------------------------------------------------
# Learning rate, distance and similarity


def edit_limit(t: int, total: int, initial: int = 50, final: int = 10, decay: bool = True,
               warmup_steps: int = 0) -> int:
    """The edit budget (words) at step ``t`` of ``total`` (1-based), GPO's cosine schedule."""
    if warmup_steps > 0 and t < warmup_steps:
        return max(1, int(initial * t / warmup_steps))
    if not decay:
        return initial
    span = total - warmup_steps
    progress = (t - warmup_steps) / span if span > 0 else 1.0
    progress = min(max(progress, 0.0), 1.0)
    return int(final + (initial - final) * 0.5 * (1 + math.cos(math.pi * progress)))


def words(text: str) -> list[str]:
    """Lower-cased words, punctuation stripped from their edges (what 'change N words' counts)."""
    out = [w.strip(".,;:!?\"'()[]{}<>`“”‘’").casefold() for w in text.split()]
    return [w for w in out if w]


def word_edit_distance(a: str, b: str) -> int:
    """Levenshtein distance between the word sequences of ``a`` and ``b``."""
    x, y = words(a), words(b)
    row = list(range(len(y) + 1))
    for i, wx in enumerate(x, 1):
        prev, row[0] = row[0], i
        for j, wy in enumerate(y, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (wx != wy))
    return row[-1]


def lexical_similarity(a: str, b: str) -> float:
    """Cosine similarity of word-count vectors (no model needed)."""
    ca, cb = Counter(words(a)), Counter(words(b))
    dot = sum(ca[w] * cb[w] for w in ca)
    norm = math.sqrt(sum(v * v for v in ca.values())) * math.sqrt(sum(v * v for v in cb.values()))
    return dot / norm if norm else 0.0


def retrieve(history: Sequence[tuple[str, float]], k: int, how: str = "recency") -> list[tuple[str, float]]:
    """The k trajectory entries (instruction, score) to show, in the order they are shown."""
    if k <= 0 or not history:
        return []
    if how == "recency":
        return list(history[-k:])[::-1]
    if how == "importance":
        return sorted(history, key=lambda item: -item[1])[:k]  # stable: ties keep earlier first
    if how == "relevance":
        newest, earlier = history[-1], list(history[:-1])[::-1]  # most recent first: wins ties
        ranked = sorted(range(len(earlier)), key=lambda i: -lexical_similarity(newest[0], earlier[i][0]))
        return [newest] + [earlier[i] for i in ranked[: k - 1]]
    raise PromptgymError(f"gpo: unknown retrieval '{how}' (known: {', '.join(RETRIEVALS)})")


def build_meta_prompt(current: tuple[str, float], trajectory: Sequence[tuple[str, float]],
                      exemplars: Sequence[Example], prompt: Prompt, limit: int | None,
                      refinement: str = "generate") -> str:
    def shown(item: tuple[str, float]) -> dict[str, Any]:
        return dict(text=item[0], score=int(round(100 * item[1])))

    return META_PROMPT.render(
        trajectory=[shown(t) for t in trajectory], current=shown(current),
        exemplars=[dict(input=ex.input, answer=prompt.verbalize(ex.target)) for ex in exemplars],
        limit=limit, request=REQUESTS[refinement])


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """GPO's rule: full batches, plus the last partial one when it is at least half a batch."""
    full, rest = divmod(n_train, batch_size)
    return max(1, full + (1 if rest >= batch_size / 2 else 0))


# ---------------------------------------------------------------------------------------------


@dataclass
class GpoState(State):
    split: str = "train"
    plan: dict[str, Any] = field(default_factory=dict)
    eval_set: list[Example] = field(default_factory=list)
    exemplars: list[Example] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    history: list[tuple[str, float]] = field(default_factory=list)  # the trajectory: (instruction, score)
    prompts: dict[str, Prompt] = field(default_factory=dict)  # instruction -> candidate
    spend: budget.PlannedSpend = field(default_factory=budget.PlannedSpend)
    t: int = 0  # steps taken

    def best(self) -> int:
        """Index of the trajectory's best entry (the earliest on ties)."""
        return max(range(len(self.history)), key=lambda i: (self.history[i][1], -i))


@register
class GpoOptimizer(Optimizer):
    name = "gpo"
    summary = "GPO: trajectory retrieval as momentum, LLM-written updates, cosine-decayed edit limit"
    selection_split = "dev"  # the dev split when the run gives the method one
    parameters = {
        "epochs": Param(3, "passes over the training split", low=1),
        "batch_size": Param(8, "training examples per step (sets the steps per epoch)", low=1),
        "per_step": Param(8, "samples of the meta-prompt per step", low=1),
        "retrieval": Param("recency", "which trajectory entries the meta-prompt shows",
                           choices=RETRIEVALS, paper="relevance"),
        "momentum": Param(True, "show retrieved past (instruction, score) pairs"),
        "momentum_k": Param(3, "trajectory entries retrieved", low=1),
        "refinement": Param("generate", "ask for a new instruction or an edit of the current one",
                            choices=REFINEMENTS),
        "num_exemplars": Param(3, "training examples shown in the meta-prompt", low=0),
        "decay_edit_limit": Param(True, "cosine-decay the edit limit (the learning rate)"),
        "initial_edit_limit": Param(50, "words a proposal may change at the first step", low=0),
        "final_edit_limit": Param(10, "words a proposal may change at the last step", low=0),
        "warmup": Param(False, "raise the edit limit linearly first"),
        "warmup_fraction": Param(0.05, "share of the steps spent warming up", low=0, high=1),
        "temperature": Param(1.0, "sampling temperature of the optimizer model", low=0),
        "max_tokens": Param(150, "token cap of one reply", low=1, paper=UNSTATED),
    }

    def setup(self, ctx: Context) -> GpoState:
        p = self.params
        split, eval_set = self.selection(ctx)
        plan = self.plan(ctx, len(eval_set))
        if plan["eval_examples"] < len(eval_set):
            keep = ctx.rng.choice(len(eval_set), size=plan["eval_examples"], replace=False)
            eval_set = [eval_set[i] for i in sorted(keep.tolist())]
        k = min(p["num_exemplars"], len(ctx.train))
        exemplars = [ctx.train[i] for i in sorted(ctx.rng.choice(len(ctx.train), size=k, replace=False).tolist())]
        state = GpoState(split=split, plan=plan, eval_set=eval_set, exemplars=exemplars)
        state.stats = ctx.stats["gpo"] = dict(plan=plan, split=split, steps_run=0, proposed=0, edit_rejections=0,
                                              scored=0, edit_limits=[], samples=[], trajectory=[])
        start = ctx.evaluate(ctx.initial, eval_set, split=split).mean
        state.spend = budget.PlannedSpend.of(ctx)
        state.spend.add(len(eval_set))
        state.history.append((ctx.initial.instruction, start))
        state.prompts[ctx.initial.instruction] = ctx.initial
        state.stats["trajectory"].append(round(start, 4))
        state.finished = "" if plan["steps"] > 0 else "done"
        return state

    def result(self, ctx: Context, state: GpoState) -> Prompt:
        return state.prompts[state.history[state.best()][0]]

    def best_score(self, ctx: Context, state: GpoState) -> float:
        return state.history[state.best()][1]

    def step(self, ctx: Context, state: GpoState) -> None:
        state.t = t = state.t + 1
        plan, history, prompts, stats = state.plan, state.history, state.prompts, state.stats
        exemplars, eval_set, split = state.exemplars, state.eval_set, state.split
        p = self.params
        current = history[-1]
        parent = prompts[current[0]]
        limit = edit_limit(t, plan["steps"], p["initial_edit_limit"], p["final_edit_limit"],
                           p["decay_edit_limit"], plan["warmup_steps"])
        stats["edit_limits"].append(limit)
        shown = retrieve(history, p["momentum_k"], p["retrieval"]) if p["momentum"] else []
        meta = build_meta_prompt(current, shown, ctx.shown_examples(exemplars), ctx.initial, limit, p["refinement"])
        samples = self._samples(state, t)
        stats["samples"].append(samples)
        outs = ctx.ask([("user", meta)], n=samples, temperature=p["temperature"],
                       max_tokens=p["max_tokens"], answer_prefix=META_PROMPT.cue)
        state.spend.add(len(outs))
        stats["proposed"] += len(outs)
        filt = CandidateFilter(demos=exemplars)  # per step: earlier candidates may come back
        filt.remember([current[0]])
        texts = filt(META_PROMPT.parse(o) for o in outs)
        for why, count in filt.dropped.items():
            stats.setdefault("dropped", {}).setdefault(why, 0)
            stats["dropped"][why] += count
        within = [x for x in texts if word_edit_distance(current[0], x) <= limit]
        stats["edit_rejections"] += len(texts) - len(within)
        parents = [parent] + [prompts[s[0]] for s in shown if s[0] != current[0]]
        visited = {text for text, _ in history}
        scored: list[tuple[float, int, str]] = []
        for i, text in enumerate(within):
            if text in visited:  # an earlier step's instruction: never the next one
                continue
            if text not in prompts:  # a repeat of an earlier step's candidate is a free cache hit
                state.spend.add(len(eval_set))
            cand = prompts.get(text) or ctx.add(ctx.initial.with_instruction(text), parents, f"gpo:{p['refinement']}")
            prompts.setdefault(text, cand)
            score = ctx.evaluate(cand, eval_set, split=split).mean  # a repeat is a free cache hit
            stats["scored"] += 1
            scored.append((score, i, text))
        if scored:
            score, _, text = max(scored, key=lambda s: (s[0], -s[1]))
            history.append((text, score))
        else:
            history.append(current)
        stats["trajectory"].append(round(history[-1][1], 4))
        ctx.log(f"GPO step {t}/{plan['steps']}: limit {limit} words, {len(within)} of {len(outs)} within it; "
                f"now {history[-1][1]:.3f}")
        stats["steps_run"] = t
        if t >= plan["steps"]:
            state.finished = "done"

    def _samples(self, state: GpoState, t: int) -> int:
        """Samples for step ``t``: an even share of the budget left over the steps left, in the
        worst case (every sample kept and scored), between the plan's and the default number."""
        share = state.spend.count((state.plan["steps"] - t + 1) * (1 + len(state.eval_set)))
        return int(max(state.plan["per_step"], min(self.params["per_step"], share)))

    def plan(self, ctx: Context, n_eval: int) -> dict[str, Any]:
        """Steps, candidates per step and selection-split size this run can pay for: for each
        size (halved down to 4 examples) and number of samples (down to 2), as many steps as fit
        but at least 3 (so the schedule still decays); if none does, 2 samples on 4 examples and
        as many steps as fit."""
        p = self.params
        total = p["epochs"] * steps_per_epoch(len(ctx.train), p["batch_size"])

        def fewer_examples(s: dict[str, Any]) -> dict[str, Any] | None:
            if s["last_resort"] or s["eval_examples"] // 2 < 4:
                return None
            return {**s, "steps": total, "per_step": p["per_step"], "eval_examples": s["eval_examples"] // 2}

        def last_resort(s: dict[str, Any]) -> dict[str, Any] | None:
            return None if s["last_resort"] else {**s, "steps": total, "per_step": min(p["per_step"], 2),
                                                  "eval_examples": min(n_eval, 4), "least": 1, "last_resort": True}

        plan = budget.fit(
            dict(steps=total, per_step=p["per_step"], eval_examples=n_eval, least=min(total, 3), last_resort=False),
            lambda s: s["eval_examples"] + s["steps"] * s["per_step"] * (1 + s["eval_examples"]),
            budget.planning_budget(ctx),
            [budget.lower("steps", lambda s: s["least"]), budget.lower("per_step", 2, steps=total),
             fewer_examples, last_resort], ctx=ctx, names={"steps": "steps", "per_step": "per_step", "eval_examples": "eval_examples"})
        steps = plan["steps"]
        warmup = max(1, math.ceil(p["warmup_fraction"] * steps)) if p["warmup"] else 0
        return dict(steps=steps, steps_default=total, per_step=plan["per_step"],
                    eval_examples=plan["eval_examples"], warmup_steps=warmup)
