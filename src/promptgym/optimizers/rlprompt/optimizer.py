"""RLPrompt as a method: the action vocabulary, the plan that fits the budget, and the steps that
sample prompts from the policy (``policy``), score them (``reward``) and update it (``trainer``).
The method, its paper and what differs: the package docstring."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from promptgym.data.dataset import Example
from promptgym.evaluation.evaluator import EvalResult
from promptgym.optimizers import budget
from promptgym.optimizers.base import Context, Optimizer, State, register
from promptgym.optimizers.params import Param
from promptgym.optimizers.rlprompt.policy import Weights, greedy, init_policy, sample
from promptgym.optimizers.rlprompt.reward import prompt_reward, stabilise
from promptgym.optimizers.rlprompt.trainer import Adam, train_step
from promptgym.tasks.prompt import Prompt

# Words an instruction is made of, whatever the task (ours): the vocabulary always offers them.
GENERAL_WORDS = (
    "answer", "label", "classify", "decide", "choose", "select", "identify", "determine", "read",
    "consider", "think", "carefully", "briefly", "only", "one", "word", "best", "correct", "option",
    "category", "class", "text", "input", "sentence", "review", "question", "statement", "topic",
    "tone", "meaning", "opinion", "feeling", "author", "writer", "overall", "whether", "which",
    "what", "how", "is", "it", "this", "the", "a", "of", "and", "or", "as", "to", "with", "about",
    "given", "following", "output", "reply", "clearly", "exactly", "simply", "really", "very",
    "not", "all", "each", "every", "most", "likely", "true", "false",
)
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def build_vocabulary(initial: Prompt, train: Sequence[Example], size: int) -> list[str]:
    """The action words, in a fixed order: the starting instruction's, the label words, the
    general ones, then the training inputs' words by frequency (ties: first seen); ``size`` in all."""
    vocab: dict[str, None] = {}
    labels = [initial.verbalize(c) for e in train for c in (e.choices or ())]
    for w in words(initial.instruction) + [w for label in labels for w in words(label)] + list(GENERAL_WORDS):
        vocab.setdefault(w, None)
    counts: dict[str, int] = {}
    for example in train:
        for w in words(example.input):
            if len(w) > 1:
                counts[w] = counts.get(w, 0) + 1
    for w, _ in sorted(counts.items(), key=lambda item: -item[1]):  # stable: the first seen wins ties
        vocab.setdefault(w, None)
    return list(vocab)[:size]


@dataclass
class RlPromptState(State):
    vocab: list[str] = field(default_factory=list)
    policy: Weights = field(default_factory=dict)
    target: Weights = field(default_factory=dict)
    adam: Adam = field(default_factory=lambda: Adam(0.0))
    prompts: int = 0  # per step (planned)
    batch: int = 0  # examples per step (planned)
    split: str = "train"
    examples: list[Example] = field(default_factory=list)  # the selection split's (greedy prompts)
    step: int = 0
    spend: budget.PlannedSpend = field(default_factory=budget.PlannedSpend)
    scored: set[tuple[str, str]] = field(default_factory=set)  # (prompt id, example id) pairs paid for
    greedy_scores: dict[str, float] = field(default_factory=dict)  # greedy prompt id -> selection score
    stats: dict[str, Any] = field(default_factory=dict)


@register
class RlPromptOptimizer(Optimizer):
    name = "rlprompt"
    summary = "RLPrompt: a small policy writes a few-word prompt, trained by soft Q-learning on the gap reward"
    uses_optimizer_model = False  # the policy writes the prompt: the optimizer model is never asked
    selection_split = "dev"  # greedy prompts on the dev split when the run gives the method one
    parameters = {
        "prompt_length": Param(5, "words the policy writes (T)", low=1),
        "mode": Param("append", "append the words to the starting instruction, or replace it with them",
                      choices=("append", "replace"), paper="replace"),
        "steps": Param(50, "training steps at most (fewer when the budget runs out)", low=1, paper=12000),
        "prompts_per_step": Param(4, "prompts sampled per step, z-scored against each other", low=2, paper=16),
        "batch_size": Param(8, "training examples every sampled prompt is scored on", low=1,
                            paper="the whole train set"),
        "eval_every": Param(5, "steps between greedy prompts scored on the selection split", low=1, paper=10),
        "vocab_size": Param(200, "words the policy chooses from", low=2, paper=50257),
        "hidden_size": Param(64, "ReLU units of the policy MLP", low=1, paper=2048),
        "learning_rate": Param(0.05, "Adam step size", low=0, paper=5e-5),
        "target_rate": Param(0.001, "Polyak rate of the target network", low=0, high=1),
        "reward_incorrect": Param(180.0, "lambda1: gap multiplier when the label loses", low=0),
        "reward_correct": Param(200.0, "lambda2: gap multiplier when the label wins", low=0),
    }

    def setup(self, ctx: Context) -> RlPromptState:
        p = self.params
        split, examples = self.selection(ctx)
        vocab = build_vocabulary(ctx.initial, ctx.train, p["vocab_size"])
        limit = budget.planning_budget(ctx)
        plan = budget.fit({"prompts": p["prompts_per_step"], "batch": min(p["batch_size"], len(ctx.train))},
                          lambda plan: plan["prompts"] * plan["batch"] + len(examples), limit,
                          [budget.lower("batch"), budget.lower("prompts", floor=2)],
                          ctx=ctx, names={"prompts": "prompts_per_step", "batch": "batch_size"})
        policy = init_policy(ctx.rng, p["prompt_length"], len(vocab), p["hidden_size"])
        state = RlPromptState(vocab=vocab, policy=policy, target={k: v.copy() for k, v in policy.items()},
                              adam=Adam(p["learning_rate"]), prompts=plan["prompts"], batch=plan["batch"],
                              split=split, examples=examples, spend=budget.PlannedSpend.of(ctx))
        state.stats = ctx.stats["rlprompt"] = dict(vocab_size=len(vocab), prompts_per_step=plan["prompts"],
                                                   batch_size=plan["batch"], selection_split=split,
                                                   mean_raw_reward=[], greedy_scored=0)
        if not state.spend.affords(self._step_cost(state)):
            ctx.log("RLPrompt: the budget cannot pay for one step and one greedy prompt")
            state.finished = "budget"
        return state

    def step(self, ctx: Context, state: RlPromptState) -> None:
        p = self.params
        rng = ctx.rng
        if state.batch >= len(ctx.train):
            batch = list(ctx.train)
        else:
            batch = [ctx.train[i] for i in sorted(rng.choice(len(ctx.train), size=state.batch, replace=False))]
        actions = sample(state.policy, p["prompt_length"], state.prompts, rng)
        raw: list[float] = []
        seen: dict[str, float] = {}  # a prompt sampled twice in a step is scored once
        for row in actions:
            prompt = self._prompt(ctx, state, row)
            if prompt.id not in seen:
                ctx.add(prompt, [ctx.initial], "rlprompt:sample")
                seen[prompt.id] = prompt_reward(ctx.task, self._evaluate(ctx, state, prompt, batch, "train-batch"),
                                                p["reward_incorrect"], p["reward_correct"])
            raw.append(seen[prompt.id])
        rewards = stabilise(raw)
        train_step(state.policy, state.target, state.adam, p["prompt_length"], actions, rewards, p["target_rate"])
        state.step += 1
        state.stats["steps_run"] = state.step
        state.stats["mean_raw_reward"].append(round(float(np.mean(raw)), 3))
        evaluated = False
        if state.step % p["eval_every"] == 0:
            self._score_greedy(ctx, state)
            evaluated = True
        if state.step >= p["steps"]:
            state.finished = "done"
        elif not state.spend.affords(self._step_cost(state)):
            state.finished = "budget"
        if state.finished and not evaluated:
            self._score_greedy(ctx, state)
        ctx.log(f"RLPrompt step {state.step}: mean raw reward {np.mean(raw):.1f}")

    def _prompt(self, ctx: Context, state: RlPromptState, actions: np.ndarray) -> Prompt:
        text = " ".join(state.vocab[int(a)] for a in actions)
        if self.params["mode"] == "append":
            text = f"{ctx.initial.instruction.strip()} {text}"
        return ctx.initial.with_instruction(text)

    def _evaluate(self, ctx: Context, state: RlPromptState, prompt: Prompt, examples: list[Example],
                  split: str) -> EvalResult:
        new = [(prompt.id, e.id) for e in examples if (prompt.id, e.id) not in state.scored]
        state.spend.add(len(new))  # pairs scored before are cache hits: free
        state.scored.update(new)
        return ctx.evaluate(prompt, examples, split=split)

    def _score_greedy(self, ctx: Context, state: RlPromptState) -> None:
        prompt = self._prompt(ctx, state, greedy(state.policy, self.params["prompt_length"]))
        if prompt.id in state.greedy_scores:
            return
        ctx.add(prompt, [ctx.initial], "rlprompt:greedy")
        state.greedy_scores[prompt.id] = self._evaluate(ctx, state, prompt, state.examples, state.split).mean
        state.stats["greedy_scored"] += 1
        ctx.log(f"RLPrompt greedy prompt {prompt.instruction!r}: {state.greedy_scores[prompt.id]:.3f} on {state.split}")

    @staticmethod
    def _step_cost(state: RlPromptState) -> int:
        """One more step in the worst case, and a greedy score after it."""
        return state.prompts * state.batch + len(state.examples)
