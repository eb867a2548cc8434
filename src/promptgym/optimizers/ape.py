"""APE, Automatic Prompt Engineer (Zhou et al., ICLR 2023): propose instructions from
demonstrations, score them, keep the best; optionally resample around the best.

Faithful to the paper and keirp/automatic_prompt_engineer:
- Proposal, forward mode: the optimizer model sees ``num_demos`` input/output pairs and completes
  "the instruction was to ...", sampled at temperature 0.9, top-p 0.9, at most 50 tokens;
  ``num_subsamples`` demo draws x ``prompts_per_subsample`` samples each.
- Scoring by execution accuracy (the task's metric) on a subsample of ``eval_examples`` training
  examples; the top ``top_fraction`` survive and are scored on the whole training split (the
  paper's "filter, then add examples to survivors").
- Iterative APE (``iterations`` > 0, off by default as in the paper): each survivor is paraphrased
  ``variants_per_prompt`` times ("same meaning, different words"), the variants are scored the
  same way, and the survivors are chosen again.

Decisions for small models: demonstrations show the task's label words as outputs; proposals are
filtered (empty, too short/long, copies of the demos, duplicates) before any scoring call, and the
dropped count is reported. The proposal count is scaled down (never up) to fit the call budget.
A step is one selection: the first induces and selects, each later one is a resampling round.
APE varies the instruction only; layout and verbalizers stay the starting prompt's.

``candidate_eval`` (``optimizers.candidate_eval``): with ``halving`` or ``rejects`` the subsample
scoring is a race down to the top fraction (TRIPLE's integration into APE), which are scored on the
whole subsample as before; with ``saved_calls=candidates`` more proposals are drawn for the calls
the full plan would spend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from promptgym.data.dataset import Example
from promptgym.evaluation import arms
from promptgym.optimizers import budget, candidate_eval
from promptgym.optimizers.base import Context, Optimizer, State, register
from promptgym.optimizers.metaprompt import MetaPrompt
from promptgym.optimizers.params import Param
from promptgym.optimizers.proposals import PARAPHRASE, CandidateFilter, clean_instruction, paraphrase
from promptgym.tasks.prompt import Prompt


def _first_sentence(text: str) -> str:
    text = text.strip().split("\n")[0]
    end = text.find(". ")
    return text[: end + 1] if end > 0 else text


def _as_instruction(completion: str) -> str:
    """'The instruction was to' + completion -> an imperative instruction, first letter upper."""
    text = clean_instruction(_first_sentence(completion))
    if text.lower().startswith("to "):
        text = text[3:]
    if text.count('"') % 2:  # a quote the model opened (or closed) around part of the sentence
        text = text.replace('"', "")
    return text[:1].upper() + text[1:] if text else text


PROPOSAL = MetaPrompt(
    "ape.proposal",
    "A friend was given an instruction and a list of inputs. Following the instruction, the friend "
    "wrote one output for every input. These are the pairs:\n\n{{ pairs }}\n\n"
    "What instruction did the friend follow? Write it as one imperative sentence.",
    parser=_as_instruction, cue="The instruction was to")


@dataclass
class ApeState(State):
    eval_set: list[Example] = field(default_factory=list)
    proposals: int = 0
    filter: CandidateFilter = field(default_factory=CandidateFilter)
    survivors: list[Prompt] = field(default_factory=list)
    round: int = 0


@register
class ApeOptimizer(Optimizer):
    name = "ape"
    summary = "Automatic Prompt Engineer: induce instructions from demos, score, keep the best"
    parameters = {
        "num_subsamples": Param(5, "demonstration draws, each asked for prompts_per_subsample proposals", low=1),
        "prompts_per_subsample": Param(10, "proposals sampled per demonstration draw", low=1),
        "num_demos": Param(5, "input/output pairs shown per proposal request", low=1),
        "eval_examples": Param(20, "training examples every candidate is first scored on", low=1),
        "top_fraction": Param(0.2, "share of candidates that survive to a whole-train score", low=0, high=1),
        "iterations": Param(0, "iterative APE rounds of paraphrasing the survivors (0: off)", low=0),
        "variants_per_prompt": Param(3, "paraphrases per survivor in each iterative round", low=1),
        "temperature": Param(0.9, "sampling temperature of the proposals", low=0),
        "top_p": Param(0.9, "nucleus sampling of the proposals", low=0, high=1),
        "max_tokens": Param(50, "token cap of one proposal", low=1),
        **candidate_eval.PARAMETERS,
    }

    def setup(self, ctx: Context) -> ApeState:
        train = ctx.train
        n_eval = min(self.params["eval_examples"], len(train))
        eval_idx = sorted(ctx.rng.choice(len(train), size=n_eval, replace=False).tolist())
        filt = CandidateFilter(demos=train, meta_texts=[PROPOSAL.template, PARAPHRASE.template])
        filt.remember([ctx.initial.instruction])
        extra = max(len(train) - n_eval, 0)
        proposals = candidate_eval.more_candidates(
            ctx, self.params, self._proposal_count(ctx, n_eval), lambda m: self._cost("full", m, n_eval, extra),
            lambda m: self._cost(self.params["candidate_eval"], m, n_eval, extra), "proposals")
        return ApeState(eval_set=[train[i] for i in eval_idx], proposals=proposals, filter=filt)

    def step(self, ctx: Context, state: ApeState) -> None:
        p, filt = self.params, state.filter
        if state.round == 0:
            texts = self._propose(ctx, state.proposals, filt)
            ctx.stats.update(proposed=state.proposals, dropped=dict(filt.dropped))
            ctx.log(f"APE: {len(texts)} candidates kept of {state.proposals} proposed "
                    f"(dropped: {dict(filt.dropped) or 'none'})")
            pool = [ctx.add(ctx.initial.with_instruction(t), [ctx.initial], "ape:induce") for t in texts]
            state.survivors = self._select(ctx, pool, state.eval_set)
        else:
            variants = []
            for parent in state.survivors:
                outs = paraphrase(ctx, parent, p["variants_per_prompt"], temperature=p["temperature"],
                                  top_p=p["top_p"], max_tokens=p["max_tokens"])
                for text in filt(_first_sentence(o) for o in outs):
                    variants.append(ctx.add(parent.with_instruction(text), [parent], "ape:resample"))
            ctx.stats["dropped"] = dict(filt.dropped)
            ctx.log(f"APE round {state.round}: {len(variants)} paraphrases")
            state.survivors = self._select(ctx, state.survivors + variants, state.eval_set)
        state.round += 1
        if state.round > p["iterations"]:
            state.finished = "done"

    def _proposal_count(self, ctx: Context, n_eval: int) -> int:
        """Scale the number of proposals down so that proposing + scoring fits the budget."""
        p = self.params
        extra = max(len(ctx.train) - n_eval, 0)
        per_candidate = 1 + n_eval + p["top_fraction"] * extra  # propose + subsample + survivor top-up
        affordable = budget.PlannedSpend.of(ctx).count(per_candidate)  # floor: exact, not a float product
        plan = budget.fit({"proposals": p["num_subsamples"] * p["prompts_per_subsample"]},
                          lambda plan: plan["proposals"], affordable, [budget.lower("proposals")],
                          ctx=ctx, names={"proposals": "proposals (num_subsamples x prompts_per_subsample)"})
        return plan["proposals"]

    def _cost(self, strategy: str, count: int, n_eval: int, extra: int) -> int:
        """Proposing ``count`` candidates and selecting among them: the pool on the subsample, then
        the survivors on the rest of the training split."""
        keep = self._survivors(count)
        return count + arms.pool_cost(strategy, count, n_eval, keep) + keep * extra

    def _survivors(self, count: int) -> int:
        return max(1, math.ceil(self.params["top_fraction"] * count))

    def _propose(self, ctx: Context, count: int, filt: CandidateFilter) -> list[str]:
        p = self.params
        per = p["prompts_per_subsample"]
        n_sub = max(1, math.ceil(count / per))
        kept: list[str] = []
        for s in range(n_sub):
            n = min(per, count - s * per)
            if n <= 0:
                break
            k = min(p["num_demos"], len(ctx.train))
            demos = [ctx.train[i] for i in ctx.rng.choice(len(ctx.train), size=k, replace=False)]
            pairs = "\n\n".join(f"Input: {d.input}\nOutput: {ctx.initial.verbalize(d.target)}"
                                for d in ctx.shown_examples(demos))  # a long input cut to fit
            outs = ctx.ask([("user", PROPOSAL.render(pairs=pairs))],
                           n=n, temperature=p["temperature"], top_p=p["top_p"],
                           max_tokens=p["max_tokens"], answer_prefix=PROPOSAL.cue)
            kept += filt(PROPOSAL.parse(o) for o in outs)
        return kept

    def _select(self, ctx: Context, pool: list[Prompt], eval_set: list[Example]) -> list[Prompt]:
        """Score all on the subsample (raced, with ``candidate_eval``, down to the survivors); the top
        fraction are scored on the whole training split."""
        if not pool:
            return []
        keep = self._survivors(len(pool))
        race = ctx.evaluate_pool(pool, eval_set, "train-subsample", self.params["candidate_eval"], keep)
        survivors = [pool[i] for i in race.ranking()[:keep]]
        for cand in survivors:
            ctx.evaluate(cand, ctx.train, split="train")
        return survivors
