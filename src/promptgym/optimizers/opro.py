"""OPRO, Optimization by PROmpting (Yang et al., ICLR 2024): an LLM reads the scored trajectory of
instructions and writes new ones that should score higher.

Faithful to the paper and google-deepmind/opro (``opt_utils.run_evolution``, "both instructions and
exemplars" meta-prompt for chat optimizers):
- Score the starting instruction on the training split (OPRO selects on training accuracy; it has
  no validation split by default), then repeat for ``steps`` (200) steps:
- Meta-prompt (written anew here): the ``max_in_meta`` (20) best instructions so far whose score
  is at least ``score_threshold``, **sorted ascending** so the best comes last, each with its score
  bucketed to an integer 0-100 (``score_buckets`` = 100); then ``num_exemplars`` (3) training
  examples drawn at random each step (the code's default "random" criterion) showing where the
  instruction goes (``<INS>`` before the input, as every promptgym layout puts it) and the correct
  answer; then the request for one new, different, higher-scoring instruction inside <INS></INS>.
- ``per_step`` (8) samples of that meta-prompt at ``temperature`` 1.0 (the paper's value); one
  instruction read per sample (the code reads from the first <INS> to the first </INS>, or the whole
  reply when a tag is missing).
- Filter before scoring: duplicates of any instruction seen so far (the code: md5 of the text; here
  a case/punctuation-insensitive key), too long (code: > 500 characters; here > 80 words), and the
  shared degenerate-candidate rules; the code's "contains INS" rule is covered by removing stray tag
  markers while parsing. Every survivor is scored on the whole training split and joins the history.
- Result: the best instruction by training accuracy (the paper's tables sometimes report the best
  on test; we never look at test).

Decisions where paper and code leave it open:
- Stop criterion: ``steps`` (the code's fixed count), the budget, or ``patience`` (20) steps in a
  row without a new best training score (the shared patience stopper): the paper stops "when the
  optimizer can no longer propose better solutions"; the code has no such rule. ``patience=0``
  disables it.
- ``score_threshold`` 0.0 (the code's value for its text-bison scorer; 0.3 for GPT scorers would
  hide every instruction of a tiny model on a hard task).
- The reply is primed with ``<INS>`` (answer prefix) so a small chat model starts writing the
  instruction at once; ``max_tokens`` 100 (the paper does not cap it; instructions are short).
- Exemplar answers are shown as the starting prompt's label words (OPRO varies the instruction
  only; layout and verbalizers stay the starting prompt's).
- Budget: one step costs ``per_step`` generations + one training-split score per kept candidate.
  When the run's budget cannot pay for the defaults, ``steps`` is cut first (the paper found 8 per
  step best at a fixed evaluation budget), then ``per_step``; never raised. The plan assumes every
  candidate is kept; a small model's duplicates and degenerate replies are dropped unscored, so
  the loop keeps going while the budget can pay for one more candidate, the last step asking for
  only as many as it can score (measured: OPRO stopped at 68 of 200 calls on misconceptions). The
  spend is counted by ``budget.PlannedSpend``, not read from the budget meter, so a resumed
  run that replays cached calls for free makes the same steps. The plan and the steps run are in
  ``ctx.stats["opro"]``; what ended the run in ``ctx.stats["stopped_by"]``.
- ``candidate_eval`` (``optimizers.candidate_eval``; ``full``, the paper's scoring, by default): with
  ``halving`` or ``rejects`` a step's candidates race on the training split; the step's best is
  scored on all of it, the others join the history with their score on the examples they saw (a
  noisier number in the meta-prompt). ``saved_calls=candidates`` asks for more samples per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from promptgym.data.dataset import Example
from promptgym.evaluation import arms
from promptgym.optimizers import budget, candidate_eval
from promptgym.optimizers.base import Context, Optimizer, State, register
from promptgym.optimizers.metaprompt import MetaPrompt
from promptgym.optimizers.params import UNSTATED, Param
from promptgym.optimizers.proposals import CandidateFilter, parse_first
from promptgym.optimizers.stopping import Patience
from promptgym.tasks.prompt import Prompt


def _read_instruction(reply: str) -> str:
    """The one instruction in a reply that continues the ``<INS>`` cue."""
    return parse_first(reply, "INS", prefix=META_PROMPT.cue)


META_PROMPT = MetaPrompt("opro.meta-prompt", """\
You improve the instruction that a language model is given for a task. Below are instructions \
tried so far, each with its score (0 to 100, higher is better), from the lowest score to the highest.
{% for item in history %}
Instruction: <INS>{{ item.text }}</INS>
Score: {{ item.score }}
{% endfor %}
Below are examples of the task. The instruction is placed where <INS> is; the model then reads the \
input and must give the correct answer.
{% for ex in exemplars %}
<INS>
Input: {{ ex.input }}
Correct answer: {{ ex.answer }}
{% endfor %}
Write one new instruction that is different from every instruction above and scores higher than all \
of them. Make it short, clear and useful for every example. Start it with <INS> and end it with </INS>.""",
    parser=_read_instruction, cue="<INS>")


def bucket(score: float, buckets: int) -> int:
    """A mean accuracy in [0, 1] shown as an integer out of ``buckets`` (the code's 100 buckets)."""
    return int(round(min(max(score, 0.0), 1.0) * buckets))


def trajectory(history: list[tuple[str, float]], top_k: int, threshold: float,
               buckets: int) -> list[dict[str, Any]]:
    """The meta-prompt's history: the ``top_k`` best scored instructions at or above ``threshold``,
    sorted ascending by score (best last); ties keep evaluation order (earlier first)."""
    eligible = [(s, i, t) for i, (t, s) in enumerate(history) if s >= threshold]
    best = sorted(eligible, key=lambda x: (x[0], x[1]))[-top_k:] if top_k > 0 else []
    return [dict(text=t, score=bucket(s, buckets)) for s, _, t in best]


def build_meta_prompt(history: list[tuple[str, float]], exemplars: list[Example], initial: Prompt,
                      top_k: int = 20, threshold: float = 0.0, buckets: int = 100) -> str:
    shown = [dict(input=ex.input, answer=initial.verbalize(ex.target)) for ex in exemplars]
    return META_PROMPT.render(history=trajectory(history, top_k, threshold, buckets), exemplars=shown)


@dataclass
class OproState(State):
    per_step: int = 0  # planned
    stats: dict[str, Any] = field(default_factory=dict)
    filter: CandidateFilter = field(default_factory=CandidateFilter)
    history: list[tuple[str, float]] = field(default_factory=list)  # (instruction, score), in order
    pool: dict[str, Prompt] = field(default_factory=dict)  # instruction -> candidate (all scored ones)
    spend: budget.PlannedSpend = field(default_factory=budget.PlannedSpend)
    size: int = 0  # candidates the next step asks for


@register
class OproOptimizer(Optimizer):
    name = "opro"
    summary = "OPRO: an LLM reads scored past instructions (ascending) and writes better ones"
    selection_split = "train"
    parameters = {
        "steps": Param(200, "optimization steps (cut to fit the budget)", low=1),
        "per_step": Param(8, "meta-prompt samples per step, one instruction each", low=1),
        "max_in_meta": Param(20, "best past instructions shown in the meta-prompt", low=0),
        "num_exemplars": Param(3, "training examples shown in each meta-prompt", low=0),
        "temperature": Param(1.0, "sampling temperature of the optimizer model", low=0),
        "score_buckets": Param(100, "scores are shown as integers 0..score_buckets", low=1),
        "score_threshold": Param(0.0, "instructions scoring below it are left out of the meta-prompt",
                                 low=0, high=1),
        "patience": Param(20, "steps without a new best before stopping (0: never)", low=0,
                          paper=UNSTATED),
        "max_tokens": Param(100, "token cap of one reply", low=1, paper=UNSTATED),
        **candidate_eval.PARAMETERS,
    }

    def stoppers(self) -> list[Patience]:
        return [Patience(self.params["patience"])] if self.params["patience"] else []

    def setup(self, ctx: Context) -> OproState:
        steps, per_step = self.plan(ctx)
        n, strategy = len(ctx.train), self.params["candidate_eval"]
        per_step = candidate_eval.more_candidates(ctx, self.params, per_step, lambda m: self._step_cost("full", m, n),
                                                  lambda m: self._step_cost(strategy, m, n), "per_step")
        state = OproState(per_step=per_step, filter=CandidateFilter(demos=ctx.train),
                          spend=budget.PlannedSpend.of(ctx))
        state.stats = ctx.stats["opro"] = dict(steps_planned=steps, per_step=per_step, steps_run=0, proposed=0,
                                              scored=0)
        state.filter.remember([ctx.initial.instruction])
        start = ctx.evaluate(ctx.initial, ctx.train, split="train")
        state.history.append((ctx.initial.instruction, start.mean))
        state.pool[ctx.initial.instruction] = ctx.initial
        state.spend.add(len(ctx.train))  # the starting instruction's score
        self._next(ctx, state)
        return state

    def step(self, ctx: Context, state: OproState) -> None:
        p, n = self.params, len(ctx.train)
        k = min(p["num_exemplars"], n)
        idx = sorted(ctx.rng.choice(n, size=k, replace=False).tolist()) if k else []
        meta = build_meta_prompt(state.history, ctx.shown_examples([ctx.train[i] for i in idx]), ctx.initial,
                                 p["max_in_meta"], p["score_threshold"], p["score_buckets"])
        shown = [state.pool[item["text"]] for item in
                 trajectory(state.history, p["max_in_meta"], p["score_threshold"], p["score_buckets"])]
        outs = ctx.ask([("user", meta)], n=state.size, temperature=p["temperature"],
                       max_tokens=p["max_tokens"], answer_prefix=META_PROMPT.cue)
        state.stats["proposed"] += len(outs)
        texts = state.filter(META_PROMPT.parse(o) for o in outs)
        ctx.stats["dropped"] = dict(state.filter.dropped)
        if candidate_eval.racing(p):
            self._race(ctx, state, texts, shown, asked=len(outs))
        else:
            state.spend.add(len(outs) + len(texts) * n)
            for text in texts:
                cand = ctx.add(ctx.initial.with_instruction(text), shown, "opro:propose")
                score = ctx.evaluate(cand, ctx.train, split="train").mean
                self._join(state, text, cand, score)
        state.stats["steps_run"] += 1
        ctx.log(f"OPRO step {state.stats['steps_run']}: {len(texts)} new of {len(outs)}, "
                f"best {max(s for _, s in state.history):.3f}")
        self._next(ctx, state)

    def _race(self, ctx: Context, state: OproState, texts: list[str], shown: list[Prompt], asked: int) -> None:
        """The step's candidates raced on the training split (``candidate_eval``): the best is scored
        on all of it, the others join the history with their score on the examples they saw."""
        cands = [ctx.add(ctx.initial.with_instruction(text), shown, "opro:propose") for text in texts]
        race = ctx.evaluate_pool(cands, ctx.train, "train", self.params["candidate_eval"])
        state.spend.add(asked + race.requested)
        for i, (text, cand) in enumerate(zip(texts, cands)):
            self._join(state, text, cand, race.mean(i))

    @staticmethod
    def _join(state: OproState, text: str, cand: Prompt, score: float) -> None:
        state.stats["scored"] += 1
        state.history.append((text, score))
        state.pool[text] = cand

    @staticmethod
    def _step_cost(strategy: str, size: int, n: int) -> int:
        """A step of ``size`` candidates at most: its samples and scoring them on ``n`` examples."""
        return size + arms.pool_cost(strategy, size, n)

    def _next(self, ctx: Context, state: OproState) -> None:
        """Size the next step: the planned number, or (past the plan) what the budget left pays for."""
        left, n = state.spend.limit - state.spend.spent, len(ctx.train)
        state.size = next((m for m in range(state.per_step, 0, -1)
                           if self._step_cost(self.params["candidate_eval"], m, n) <= left), 0)
        if state.stats["steps_run"] >= candidate_eval.last_step(self.params, state.stats["steps_planned"],
                                                               self.params["steps"]):
            state.finished = "done"
        elif state.size < 1:
            state.finished = "budget"

    def plan(self, ctx: Context) -> tuple[int, int]:
        """(steps, candidates per step) that the run's budget can pay for; defaults when it can.
        Steps are cut first (the paper found 8 per step best at a fixed evaluation budget)."""
        n = len(ctx.train)
        plan = budget.fit({"steps": self.params["steps"], "per_step": self.params["per_step"]},
                          lambda plan: n + plan["steps"] * plan["per_step"] * (1 + n), budget.planning_budget(ctx),
                          [budget.lower("steps"), budget.lower("per_step")],
                          ctx=ctx, names={"steps": "steps", "per_step": "per_step"})
        return plan["steps"], plan["per_step"]
