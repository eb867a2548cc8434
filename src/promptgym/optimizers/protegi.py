"""ProTeGi / APO, Prompt Optimization with Textual Gradients (Pryzant et al., EMNLP 2023): beam
search over instructions, expanded by "textual gradient descent" and pruned by a bandit.

Faithful to the paper and microsoft/LMOps ``prompt_optimization/`` (``main.py``, ``optimizers.py``,
``evaluators.py``):
- The beam starts as the initial prompt. Each of ``rounds`` (6) rounds expands every beam member,
  then a selector scores beam + new candidates and keeps the top ``beam_size`` (4).
- Expansion of one member: run the task model on a random ``minibatch_size`` (64) training
  minibatch (one minibatch per round, shared by the beam, as in the code) and collect the errors;
  ``n_gradients`` (4) times, show ``errors_per_gradient`` (4) random errors (input, correct answer,
  model's answer) and ask for ``gradients_per_error`` (1) reasons the instruction failed, each in
  <START>/<END> (the "gradient"); for every reason, one call asks for ``steps_per_gradient`` (1)
  improved instructions given the same errors and the reason (the "edit"); every edit and the
  member itself get ``mc_samples_per_step`` (2) same-meaning paraphrases (Monte-Carlo successors);
  deduplicate, and if more than ``max_expansion_factor`` (8) are new, keep 8 at random.
- Optimizer-model calls at the code's ``chatgpt()`` default temperature 0.7 (the paper says 1.0).
- Selection on the training split, with the allowance B = ``samples_per_eval`` x ``eval_rounds`` x
  ``eval_prompts_per_round`` (32 x 8 x 8 = 2,048) candidate-example evaluations per round:
  ``selector="ucb"`` (default; the paper's bandit, the one it found best): each step pulls the
  ``eval_prompts_per_round`` arms with the largest mean + c * sqrt(log t / n_i) (c = 1) on a batch
  of ``samples_per_eval`` examples; ``"successive_rejects"``: phases evaluate every surviving arm
  on more examples and reject the worst, until ``beam_size`` survive; ``"uniform"``: every
  candidate on B / n examples (the code's argparse default, "bf" brute force). Not in the paper:
  ``"halving"`` and ``"rejects"``, sequential halving and continuous rejects down to ``beam_size``
  as TRIPLE (Shi et al., NeurIPS 2024) puts them into APO, with the same allowance B
  (``evaluation.arms``, where the arms and every selector live; the other methods' pools use it too).
- Result: the top of the final beam by the last selection's estimates (the paper max-pools the
  beam's *test* scores; promptgym never looks at test).

"Equal calls" between selectors: each gets the same allowance B per round, counted in
candidate x example evaluations requested from the task model, and requests exactly
min(B, what the candidates can still use) -- an arm that has seen every training example has an
exact mean and is never pulled again. A request costs one budgeted call unless the response cache
already holds it (e.g. a beam survivor re-scored on an example it saw in an earlier round), which
is free for every selector alike. ``ctx.stats["protegi"]["rounds"]`` records what each round requested.

Decisions where paper and code leave it open (or are wrong):
- Pulls draw without replacement: one shuffled order of the training split per selection, and
  arm i's n-th pull continues along it from where its previous pull stopped. Every arm that has
  seen m examples has seen the same m (common random numbers), and no pull repeats an example
  (with deterministic, cached scoring a repeat would add no information and cost nothing, only
  double-count). The code samples a fresh random batch per round with replacement across rounds.
- UCB: t = number of pulls so far + 1 (the code passes the 0-based round index, so the first
  bandit round takes log 0 and the second log 1 = 0); n_i counts examples, as in the code. Arms
  never pulled go first, in random order (the code's random first round). The bandit runs until
  the allowance is spent (the code runs ``eval_rounds`` rounds, which spends B only when there are
  at least ``eval_prompts_per_round`` candidates). Scores are per-round, as in the code.
- Successive rejects: the code's constant (1/log-bar K)(B - K) with K = n - beam rejections spends
  about twice B when beam > 1 (4,565 instead of 2,048 at the defaults), because the beam's
  survivors are evaluated in every phase. We keep SR's harmonic shape -- after phase k every
  surviving arm has seen n_k = C / (K + 1 - k) examples -- and pick C = B / (H_K + beam) so that the
  phases spend B exactly; rounding leftovers go to the survivors, which orders the beam. Ties
  reject the newer candidate.
- A member with no errors on the minibatch gets no gradient calls (the code would ask for the
  reasons of an empty error list); it is still paraphrased. Errors are examples scoring below 1.
  Inputs longer than ``max_example_chars`` (400) are cut in the meta-prompts (small models' context).
- Replies are primed with ``<START>`` (answer prefix) so a small model writes the first item at
  once; at most the requested number of items is read from a reply; untagged replies fall back
  to their first paragraph (``proposals.parse_all``).
- Candidates are filtered before any scoring (shared ``CandidateFilter``: degenerate texts and
  duplicates of anything seen in the run, which the code would re-score).
- Budget: when the run's budget cannot pay for the defaults, the minibatch and batch sizes are
  capped at the training-split size, then the per-round allowance B shrinks (down to 4
  evaluations per candidate), then rounds are dropped (B back to its default), then at one
  round the expansion shrinks (paraphrases, gradients, max expansion, minibatch). Never raised.
  Planning counts every request as charged (cache hits make a run spend less). The plan used is
  ``ctx.stats["protegi"]["plan"]``. If the budget still runs out, the result is the top of the
  last fully selected beam. A step is one round.
ProTeGi varies the instruction only (the code optimises the "Task" section of its prompt file and
keeps the output-format section fixed); layout and verbalizers stay the starting prompt's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from promptgym.data.dataset import Example
from promptgym.errors import PromptgymError
from promptgym.evaluation.arms import SELECTORS as BANDITS
from promptgym.evaluation.arms import Arms
from promptgym.optimizers import budget
from promptgym.optimizers.base import Context, Optimizer, State, register
from promptgym.optimizers.metaprompt import MetaPrompt
from promptgym.optimizers.params import UNSTATED, Param
from promptgym.optimizers.proposals import CandidateFilter, paraphrase, parse_all
from promptgym.tasks.prompt import Prompt

SELECTORS = ("ucb", "successive_rejects", "uniform", "halving", "rejects")
ANSWER_CUE = "<START>"


def _read_all(reply: str) -> list[str]:
    """Every item of a reply that continues the ``<START>`` cue (the caller keeps the first n)."""
    return parse_all(reply, "START", prefix=ANSWER_CUE, max_items=None)


_ERRORS_BLOCK = """\
I am improving an instruction that tells a language model how to do a task. The instruction now reads:
"{{ instruction }}"

With this instruction the model got these examples wrong:
{% for e in errors %}
Example {{ loop.index }}
Input: {{ e.input }}
Correct answer: {{ e.answer }}
Model's answer: {{ e.prediction }}
{% endfor %}"""

GRADIENT_PROMPT = MetaPrompt("protegi.gradient", _ERRORS_BLOCK + """
Give {{ n }} reason{{ "s" if n > 1 else "" }} why the instruction could have led the model to these \
mistakes. Put each reason between <START> and <END>.""", parser=_read_all, cue=ANSWER_CUE)

EDIT_PROMPT = MetaPrompt("protegi.edit", _ERRORS_BLOCK + """
What seems to be wrong with the instruction: {{ reason }}

Taking this into account, write {{ n }} improved instruction{{ "s" if n > 1 else "" }} for the task. \
Each must be a complete instruction on its own. Put each one between <START> and <END>.""",
    parser=_read_all, cue=ANSWER_CUE)


# ---------------------------------------------------------------------------------------------
# Selection: candidates as bandit arms (``evaluation.arms``, shared with the other methods' pools).


def select(ctx: Context, prompts: Sequence[Prompt], examples: Sequence[Example], allowance: int,
           selector: str = "ucb", keep: int = 4, per_round: int = 8, batch: int = 32,
           c: float = 1.0, split: str = "train-bandit") -> Arms:
    """Score ``prompts`` with ``selector`` spending at most ``allowance`` candidate x example
    evaluations; returns the arms (``.ranking()``, ``.mean(i)``, ``.seen[i]``, ``.requested``).
    Every pull is recorded under ``split``."""
    if selector not in SELECTORS:
        raise PromptgymError(f"protegi: unknown selector '{selector}' (known: {', '.join(SELECTORS)})")
    arms = Arms(list(prompts), list(examples), lambda p, batch: ctx.evaluate(p, batch, split=split),
                int(allowance), rng=ctx.rng)
    BANDITS[selector](arms, keep=keep, per_round=per_round, batch=max(1, batch), c=c)
    return arms


# ---------------------------------------------------------------------------------------------


@dataclass
class ProtegiState(State):
    plan: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    filter: CandidateFilter = field(default_factory=CandidateFilter)
    beam: list[Prompt] = field(default_factory=list)  # best first, by the last selection
    top_mean: float | None = None  # the last selection's estimate for the top of the beam
    round: int = 0


@register
class ProtegiOptimizer(Optimizer):
    name = "protegi"
    summary = "ProTeGi: textual gradients from errors -> edits -> paraphrases; beam + bandit selection"
    selection_split = "train"
    parameters = {
        "selector": Param("ucb", "how beam + new candidates are scored", choices=SELECTORS),
        "rounds": Param(6, "expand-and-select rounds", low=1),
        "beam_size": Param(4, "prompts kept after each selection", low=1),
        "minibatch_size": Param(64, "training examples run per round to find errors", low=1),
        "n_gradients": Param(4, "gradient requests per beam member", low=1),
        "errors_per_gradient": Param(4, "errors shown in one gradient request", low=1),
        "gradients_per_error": Param(1, "reasons asked for in one gradient request", low=1),
        "steps_per_gradient": Param(1, "edited instructions asked for per reason", low=1),
        "mc_samples_per_step": Param(2, "paraphrases of every edit and member", low=0),
        "max_expansion_factor": Param(8, "new candidates kept per member, at most", low=1),
        "eval_rounds": Param(8, "bandit rounds in the allowance B", low=1),
        "eval_prompts_per_round": Param(8, "arms pulled per bandit round", low=1),
        "samples_per_eval": Param(32, "examples per pull", low=1),
        "c": Param(1.0, "UCB exploration constant", low=0),
        "temperature": Param(0.7, "sampling temperature of the optimizer model (the code's)", low=0,
                             paper=1.0),
        "max_tokens": Param(200, "token cap of one reply", low=1, paper=UNSTATED),
        "max_example_chars": Param(400, "inputs are cut to this length in meta-prompts", low=1,
                                   paper=UNSTATED),
    }

    def setup(self, ctx: Context) -> ProtegiState:
        plan = self.plan(ctx)
        state = ProtegiState(plan=plan, filter=CandidateFilter(demos=ctx.train), beam=[ctx.initial])
        state.stats = ctx.stats["protegi"] = dict(selector=plan["selector"], plan=plan, rounds=[], errors_found=0,
                                                  gradients=0, edits=0, paraphrases=0, rounds_run=0)
        state.filter.remember([ctx.initial.instruction])
        state.finished = "" if plan["rounds"] > 0 else "done"
        return state

    def result(self, ctx: Context, state: ProtegiState) -> Prompt:
        """The top of the last selected beam (a round the budget cut short changes nothing)."""
        ctx.stats["dropped"] = dict(state.filter.dropped)
        return state.beam[0]

    def best_score(self, ctx: Context, state: ProtegiState) -> float | None:
        return state.top_mean

    def step(self, ctx: Context, state: ProtegiState) -> None:
        """One round: expand every beam member, then select the next beam from beam + new."""
        plan, stats = state.plan, state.stats
        state.round = round_ = state.round + 1
        m = min(plan["minibatch_size"], len(ctx.train))
        idx = sorted(ctx.rng.choice(len(ctx.train), size=m, replace=False).tolist()) if m else []
        minibatch = [ctx.train[i] for i in idx]
        new: list[Prompt] = []
        for parent in state.beam:
            new += self.expand(ctx, plan, parent, minibatch, state.filter, stats)
        pool = state.beam + new
        if len(pool) == 1:
            stats["rounds"].append(dict(round=round_, candidates=1, requested=0, pulls=0))
        else:
            arms = select(ctx, pool, ctx.train, plan["allowance"], plan["selector"], keep=plan["beam_size"],
                          per_round=plan["eval_prompts_per_round"], batch=plan["samples_per_eval"],
                          c=plan["c"])
            order = arms.ranking()[: plan["beam_size"]]
            stats["rounds"].append(dict(round=round_, candidates=len(pool), requested=arms.requested,
                                        pulls=arms.pulls, top_mean=round(arms.mean(order[0]), 4),
                                        top_seen=arms.seen[order[0]]))
            ctx.log(f"ProTeGi round {round_}: {len(new)} new, {len(pool)} scored with {plan['selector']} "
                    f"({arms.requested} evaluations); top {arms.mean(order[0]):.3f}")
            state.beam, state.top_mean = [pool[i] for i in order], arms.mean(order[0])
        stats["rounds_run"] = round_
        if round_ >= plan["rounds"]:
            state.finished = "done"

    def expand(self, ctx: Context, plan: dict[str, Any], parent: Prompt, minibatch: list[Example],
               filt: CandidateFilter, stats: dict[str, Any]) -> list[Prompt]:
        """Errors -> gradients -> edits -> paraphrases for one beam member; new candidates only."""
        p = plan
        edits: list[str] = []
        if p["n_gradients"] > 0 and minibatch:
            result = ctx.evaluate(parent, minibatch, split="train-minibatch")
            errors = [self._show(parent, ex, pred) for ex, pred, s in
                      zip(result.examples, result.predictions, result.scores) if s < 1.0]
            stats["errors_found"] += len(errors)
            for _ in range(p["n_gradients"] if errors else 0):
                k = min(p["errors_per_gradient"], len(errors))
                shown = [errors[i] for i in sorted(ctx.rng.choice(len(errors), size=k, replace=False).tolist())]
                for reason in self._gradients(ctx, parent.instruction, shown):
                    stats["gradients"] += 1
                    edits += self._edits(ctx, parent.instruction, shown, reason)
        edits = filt(edits)
        stats["edits"] += len(edits)
        children = [(t, "protegi:edit", parent) for t in edits]
        if p["mc_samples_per_step"] > 0:
            for text, _, _ in list(children) + [(parent.instruction, "", parent)]:
                variants = filt(paraphrase(ctx, text, p["mc_samples_per_step"], temperature=p["temperature"],
                                           top_p=1.0, max_tokens=p["max_tokens"]))
                stats["paraphrases"] += len(variants)
                children += [(v, "protegi:paraphrase", parent) for v in variants]
        if len(children) > p["max_expansion_factor"]:
            keep = ctx.rng.choice(len(children), size=p["max_expansion_factor"], replace=False)
            children = [children[i] for i in sorted(keep.tolist())]
        return [ctx.add(parent.with_instruction(t), [parent], op) for t, op, _ in children]

    def _show(self, prompt: Prompt, ex: Example, prediction: str) -> dict[str, str]:
        limit = self.params["max_example_chars"]
        text = " ".join(ex.input.split())
        if len(text) > limit:
            text = text[:limit].rstrip() + " ..."
        return dict(input=text, answer=prompt.verbalize(ex.target),
                    prediction=prompt.verbalize(prediction) if prediction else "(no answer)")

    def _gradients(self, ctx: Context, instruction: str, errors: list[dict[str, str]]) -> list[str]:
        n = self.params["gradients_per_error"]
        meta = GRADIENT_PROMPT.render(instruction=instruction, errors=errors, n=n)
        reply = ctx.ask([("user", meta)], n=1, temperature=self.params["temperature"],
                        max_tokens=self.params["max_tokens"], answer_prefix=GRADIENT_PROMPT.cue)[0]
        return GRADIENT_PROMPT.parse(reply)[:n]

    def _edits(self, ctx: Context, instruction: str, errors: list[dict[str, str]], reason: str) -> list[str]:
        n = self.params["steps_per_gradient"]
        meta = EDIT_PROMPT.render(instruction=instruction, errors=errors, reason=reason, n=n)
        reply = ctx.ask([("user", meta)], n=1, temperature=self.params["temperature"],
                        max_tokens=self.params["max_tokens"], answer_prefix=EDIT_PROMPT.cue)[0]
        return EDIT_PROMPT.parse(reply)[:n]

    # -- budget ---------------------------------------------------------------------------------

    def plan(self, ctx: Context) -> dict[str, Any]:
        """The hyperparameters this run can pay for: the defaults scaled down, never up. Rounds go
        first (each keeps at least 4 evaluations per candidate), then at one round the expansion,
        cheapest loss first: paraphrases, gradients, max expansion, minibatch."""
        p = dict(self.params)
        n_train = len(ctx.train)
        p["minibatch_size"] = min(p["minibatch_size"], n_train)
        default_allowance = p["samples_per_eval"] * p["eval_rounds"] * p["eval_prompts_per_round"]
        limit = budget.planning_budget(ctx)

        def least(p: dict[str, Any]) -> float:  # the expansion, and 4 evaluations per candidate per round
            return self._cost(p, n_train, p["rounds"], 0) + p["rounds"] * 4 * self._candidates(p, p["rounds"] > 1)

        p = budget.fit(p, least, limit, [
            budget.lower("rounds"), budget.lower("mc_samples_per_step"), budget.lower("n_gradients"),
            budget.lower("max_expansion_factor", 2), budget.lower("minibatch_size", 8, lambda v: v // 2)],
            ctx=ctx, names={k: k for k in ("rounds", "mc_samples_per_step", "n_gradients", "max_expansion_factor", "minibatch_size")})
        if math.isinf(limit):
            p["allowance"] = default_allowance
        else:  # what is left after the expansion, per round (the last resort: all of it, maybe 0)
            per_round = (limit - self._cost(p, n_train, p["rounds"], 0)) // max(p["rounds"], 1)
            p["allowance"] = int(max(min(default_allowance, per_round), 0))
        # The bandit's batch keeps the code's shape: about ``eval_rounds`` rounds of pulls.
        per_pass = p["eval_rounds"] * p["eval_prompts_per_round"]
        p["samples_per_eval"] = int(max(1, min(p["samples_per_eval"], n_train, p["allowance"] // max(per_pass, 1))))
        p["planned_calls"] = None if math.isinf(limit) else int(self._cost(p, n_train, p["rounds"], p["allowance"]))
        return p

    def _candidates(self, p: dict[str, Any], many: bool) -> int:
        parents = p["beam_size"] if many else 1
        return parents * (1 + p["max_expansion_factor"])

    def _cost(self, p: dict[str, Any], n_train: int, rounds: int, allowance: int) -> float:
        """Upper bound on calls: per expanded member a minibatch + the optimizer calls; per round
        the selection allowance (no more than the candidates can use)."""
        g = p["n_gradients"]
        reasons = g * p["gradients_per_error"]
        asks = g + reasons + (reasons * p["steps_per_gradient"] + 1) * p["mc_samples_per_step"]
        member = p["minibatch_size"] + asks
        total = 0.0
        for r in range(rounds):
            parents = 1 if r == 0 else p["beam_size"]
            usable = self._candidates(p, many=r > 0) * n_train
            total += parents * member + min(allowance, usable)
        return total
