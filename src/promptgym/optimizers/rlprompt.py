"""RLPrompt (Deng et al., EMNLP 2022): a small policy network writes a discrete prompt of
``prompt_length`` words, trained by soft Q-learning on the task model's stabilised reward.

Faithful to the paper and mingkaid/rl-prompt (``fsc_config.yaml``, ``fsc_reward.py``, ``sql_module.py``,
``sql_losses.py``):
- One task-level prompt, written left to right from a fixed start; the policy's logits are the
  Q-values, the policy is their softmax. A step samples ``prompts_per_step`` prompts.
- Reward: per example, gap = p(label) - max p(other label) from the task model's class
  distribution; x 200 if positive (right), else x 180; averaged per prompt. The step's prompts see
  the same batch, so the input-specific z-score is one across them ((R - mean) / (std + 1e-4));
  then the fsc config's shaping [0, 1] -> [0, 5], i.e. x 5.
- Soft Q-learning, sparse reward at the last word: the code's ``v2_v2r_v3_v3r`` loss at its
  default coefficient (None), i.e. the mean of the single-step (log pi(a_t) -> V'(s_t+1) - V'(s_t),
  and -> r - V'(s_T) at the end) and the multi-step (sum of log pi from t on -> r - V'(s_t))
  path-consistency regressions; V' from a target network Polyak-averaged (0.001) before every
  step; Adam, gradient norm clipped to 5; near-uniform initial policy.
- Every ``eval_every`` steps (and after the last) the greedy prompt is scored on the selection
  split (train; dev only when the run gives the method one); the answer is the best of these.

What differs, and why:
- Policy: a numpy MLP (one-hot position and previous word -> ``hidden_size`` ReLUs -> one Q-value
  per word), not distilGPT-2 + MLP adaptor: no torch, milliseconds per update on 2 cores. The first
  layer (Xavier) stands in for the frozen LM's features; the output layer gets the paper's
  near-zero init (gain 1e-4, bias -1e-4). (That init in both layers kills every ReLU of a one-hot input.)
- Restricted vocabulary: an optimizer never sees the task model's tokenizer, so the actions are
  words: the starting instruction's, the label words, ``GENERAL_WORDS`` (ours) and the training
  inputs' most frequent words, ``vocab_size`` in all, all sampled from (paper: GPT-2's 50k tokens, top-256).
- ``mode=append`` (default) puts the words after the starting instruction; ``replace`` makes them
  the instruction, as in the paper. A 135M model needs an instruction naming the task, which five
  words learned in a few dozen steps rarely are. The words sit where the layout puts the
  instruction (the paper: after the input, before the answer slot).
- A fixed offset (T - 1 - t) log V on every Q-value at position t (``value_offsets``): the policy
  is unchanged, but the initial soft values become the uniform policy's at zero expected (z-scored)
  reward. Without it the initial V' is far too low, so the first targets raise every sampled word
  whatever its reward: 12,000 steps wash that out, a few dozen collapse onto the first samples
  (scripted task of the tests, 30 steps: the rewarded word found in 2 seeds of 4 without, 4 of 4 with).
- Scale, set by the call budget: 4 prompts per step (paper 16), each scored on a random batch of
  ``batch_size`` 8 training examples (paper: the whole 16-shot set), tens of steps (paper 12,000),
  so a larger learning rate (0.05, paper 5e-5); greedy prompts every 5 steps (paper 10).
- Without class probabilities (generated answers) the gap is the metric's score s as a one-hot
  distribution would give it, 2s - 1.

Budget: a step costs ``prompts_per_step x batch_size`` calls (pairs this run scored before are
free and not counted), a greedy score the selection split. The batch, then the prompts per step
(not below 2, for the z-score) are cut until one step and one greedy score fit; steps go on, up to
``steps``, while the budget pays for another step and a final greedy score, counted by
``budget.PlannedSpend`` (not the meter). Candidates: ``rlprompt:sample`` (scored on their batch,
split ``train-batch``) and ``rlprompt:greedy``, the start as parent. ``ctx.stats["rlprompt"]``: the
plan, the vocabulary size, each step's mean raw reward.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from promptgym.data.dataset import Example
from promptgym.evaluation.evaluator import EvalResult
from promptgym.models.base import OptionScores
from promptgym.optimizers import budget
from promptgym.optimizers.base import Context, Optimizer, State, register, selection_data
from promptgym.optimizers.params import Param
from promptgym.tasks.prompt import Prompt
from promptgym.tasks.task import ChoiceTask, Task

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
ZSCORE_EPS = 1e-4  # fsc_reward.py: (R - mean) / (std + 1e-4)
SHAPING = (0.0, 1.0, 0.0, 5.0)  # fsc_config.yaml: reward shaping [old_min, old_max] -> [new_min, new_max]
GRAD_CLIP = 5.0  # trainer default: gradient norm clipped to 5
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults


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


# ---- reward (fsc_reward.py) -------------------------------------------------------------------

def piecewise_gap(probs: np.ndarray, label: int, incorrect: float = 180.0, correct: float = 200.0) -> float:
    """gap = p(label) - max other p; x ``correct`` (lambda2) if the label wins, else x ``incorrect`` (lambda1)."""
    gap = float(probs[label] - np.delete(probs, label).max())
    return gap * (correct if gap > 0 else incorrect)


def prompt_reward(task: Task, result: EvalResult, incorrect: float = 180.0, correct: float = 200.0) -> float:
    """One prompt's raw reward: the piecewise gap averaged over the examples it was scored on.
    Without class probabilities (generated answers) the gap is 2 x score - 1."""
    rewards = []
    for example, response, score in zip(result.examples, result.responses, result.scores):
        if isinstance(task, ChoiceTask) and isinstance(response, OptionScores) and example.choices:
            probs = task.probabilities(response)
            rewards.append(piecewise_gap(probs, list(example.choices).index(example.target), incorrect, correct))
        else:
            gap = 2.0 * score - 1.0
            rewards.append(gap * (correct if gap > 0 else incorrect))
    return float(np.mean(rewards)) if rewards else 0.0


def stabilise(raw: Sequence[float]) -> np.ndarray:
    """z-score across the step's prompts, then the fsc shaping (x 5)."""
    r = np.asarray(raw, dtype=float)
    z = (r - r.mean()) / (r.std() + ZSCORE_EPS)
    old_min, old_max, new_min, new_max = SHAPING
    return (z - old_min) / (old_max - old_min) * (new_max - new_min) + new_min


# ---- the policy: a tiny MLP whose outputs are Q-values -----------------------------------------

Weights = dict[str, np.ndarray]


def init_policy(rng: np.random.Generator, length: int, vocab: int, hidden: int) -> Weights:
    """Inputs: one-hot position (``length``) and one-hot previous word (start + ``vocab``)."""
    n_in = length + 1 + vocab

    def xavier(fan_in: int, fan_out: int, gain: float) -> np.ndarray:
        bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-bound, bound, size=(fan_in, fan_out))

    return {"w1": xavier(n_in, hidden, 1.0), "b1": np.zeros(hidden),
            "w2": xavier(hidden, vocab, 1e-4), "b2": np.full(vocab, -1e-4)}


def _rows(length: int, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Input rows of w1 for every (sequence, position): the position's and the previous word's."""
    n, t = actions.shape
    prev = np.concatenate([np.full((n, 1), -1), actions[:, :-1]], axis=1)  # -1: the start
    return np.broadcast_to(np.arange(t), (n, t)), length + 1 + prev


def forward(w: Weights, length: int, actions: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Q-values (logits) at every position of the given sequences (teacher forcing): (N, T, V)."""
    pos, prev = _rows(length, actions)
    z = w["w1"][pos] + w["w1"][prev] + w["b1"]
    h = np.maximum(z, 0.0)
    logits = h @ w["w2"] + w["b2"] + value_offsets(length, w["b2"].shape[0])[:, None]
    return logits, {"pos": pos, "prev": prev, "z": z, "h": h}


def value_offsets(length: int, vocab: int) -> np.ndarray:
    """A fixed offset per position, (T - 1 - t) log V, added to every Q-value at position t: the
    policy (a softmax within a position) does not change, but the Q-values of the near-zero
    initial network become those of the uniform policy with zero expected (z-scored) reward,
    so the first SQL targets are consistent (see the module docstring)."""
    return (length - 1 - np.arange(length)) * math.log(vocab)


def backward(w: Weights, cache: dict[str, np.ndarray], dlogits: np.ndarray) -> Weights:
    h, z = cache["h"], cache["z"]
    grads = {"w2": np.einsum("nth,ntv->hv", h, dlogits), "b2": dlogits.sum(axis=(0, 1))}
    dz = (dlogits @ w["w2"].T) * (z > 0)
    grads["b1"] = dz.sum(axis=(0, 1))
    dw1 = np.zeros_like(w["w1"])
    np.add.at(dw1, cache["pos"].ravel(), dz.reshape(-1, dz.shape[-1]))
    np.add.at(dw1, cache["prev"].ravel(), dz.reshape(-1, dz.shape[-1]))
    grads["w1"] = dw1
    return grads


def _step_logits(w: Weights, length: int, t: int, prev: np.ndarray) -> np.ndarray:
    h = np.maximum(w["w1"][t] + w["w1"][length + 1 + prev] + w["b1"], 0.0)
    return h @ w["w2"] + w["b2"]


def sample(w: Weights, length: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` sequences drawn from softmax(Q), one word after another: (n, length) word indices."""
    actions = np.zeros((n, length), dtype=int)
    prev = np.full(n, -1)
    for t in range(length):
        logits = _step_logits(w, length, t, prev)
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        u = rng.random(n)
        actions[:, t] = np.minimum((np.cumsum(p, axis=1) < u[:, None]).sum(axis=1), p.shape[1] - 1)
        prev = actions[:, t]
    return actions


def greedy(w: Weights, length: int) -> np.ndarray:
    actions = np.zeros(length, dtype=int)
    prev = np.full(1, -1)
    for t in range(length):
        actions[t] = int(np.argmax(_step_logits(w, length, t, prev)[0]))
        prev = actions[t: t + 1]
    return actions


def _logsumexp(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))[..., 0]


def sql_loss(logits: np.ndarray, target_logits: np.ndarray, actions: np.ndarray,
             rewards: np.ndarray) -> tuple[float, np.ndarray]:
    """The code's ``v2_v2r_v3_v3r`` soft Q-learning loss (coefficient None: (v2 + v3) / 2), summed
    over the positions and averaged over the sequences, and its gradient with respect to ``logits``.

    A_t = Q(s_t, a_t) - V(s_t) (= log pi(a_t | s_t)); V'(s) = logsumexp of the target network's Q.
    v2 (single step): A_t -> V'(s_t+1) - V'(s_t), and A_T -> r - V'(s_T) at the last word.
    v3 (multi step): sum_{k >= t} A_k -> r - V'(s_t)."""
    n, t_len, _ = logits.shape
    lse = _logsumexp(logits)
    q = np.take_along_axis(logits, actions[..., None], axis=-1)[..., 0]
    a = q - lse
    v_target = _logsumexp(target_logits)
    a_target = np.empty_like(a)
    a_target[:, :-1] = v_target[:, 1:] - v_target[:, :-1]
    a_target[:, -1] = rewards - v_target[:, -1]
    tail = np.flip(np.cumsum(np.flip(a, axis=1), axis=1), axis=1)  # sum of A from t to the end
    tail_target = rewards[:, None] - v_target
    loss = float((((a - a_target) ** 2).sum(axis=1) + ((tail - tail_target) ** 2).sum(axis=1)).mean() / 2)
    # d loss / d A_t: (A_t - target) from v2, plus every v3 residual at k <= t (their sums contain A_t)
    da = ((a - a_target) + np.cumsum(tail - tail_target, axis=1)) / n
    probs = np.exp(logits - lse[..., None])
    dlogits = -probs * da[..., None]
    np.put_along_axis(dlogits, actions[..., None], np.take_along_axis(dlogits, actions[..., None], axis=-1)
                      + da[..., None], axis=-1)
    return loss, dlogits


@dataclass
class Adam:
    """torch.optim.Adam, preceded by clipping the gradients' global norm (as the trainer does)."""

    lr: float
    m: Weights = field(default_factory=dict)
    v: Weights = field(default_factory=dict)
    t: int = 0

    def update(self, w: Weights, grads: Weights, clip: float = GRAD_CLIP) -> None:
        norm = math.sqrt(sum(float((g ** 2).sum()) for g in grads.values()))
        scale = min(1.0, clip / (norm + 1e-6))
        self.t += 1
        b1, b2 = ADAM_BETAS
        for k, g in grads.items():
            g = g * scale
            self.m[k] = b1 * self.m.get(k, 0.0) + (1 - b1) * g
            self.v[k] = b2 * self.v.get(k, 0.0) + (1 - b2) * g * g
            m_hat = self.m[k] / (1 - b1 ** self.t)
            v_hat = self.v[k] / (1 - b2 ** self.t)
            w[k] -= self.lr * m_hat / (np.sqrt(v_hat) + ADAM_EPS)


def train_step(policy: Weights, target: Weights, adam: Adam, length: int, actions: np.ndarray,
               rewards: np.ndarray, target_rate: float) -> float:
    """One SQL update on sampled ``actions`` with their shaped ``rewards``; returns the loss.
    The target network is Polyak-averaged towards the policy first (``_pre_steps`` in the code)."""
    for k in target:
        target[k] = (1 - target_rate) * target[k] + target_rate * policy[k]
    logits, cache = forward(policy, length, actions)
    target_logits, _ = forward(target, length, actions)
    loss, dlogits = sql_loss(logits, target_logits, actions, rewards)
    adam.update(policy, backward(policy, cache, dlogits))
    return loss


# ---- the method ---------------------------------------------------------------------------------

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

    def selection(self, ctx: Context) -> str:
        return selection_data(ctx)[0]

    def setup(self, ctx: Context) -> RlPromptState:
        p = self.params
        split, examples = selection_data(ctx)
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
        if not self._affords_step(state):
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
        elif not self._affords_step(state):
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

    def _affords_step(self, state: RlPromptState) -> bool:
        """Whether the budget left pays, in the worst case, for one more step and a greedy score after it."""
        return state.spend.count(state.prompts * state.batch + len(state.examples)) >= 1
