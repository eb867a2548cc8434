"""``PromptEditEnv``: a Gymnasium environment in which an agent edits a prompt, TEMPERA-style
(Zhang et al., ICLR 2023; the spec's section 3), rewarded by the task metric through promptgym's
Evaluator.

An episode starts from the initial prompt (its instruction, layout, label words and demonstrations)
and a batch of training examples drawn with the env's seeded generator. Each step applies one edit;
the edited prompt is scored on the batch; after ``max_steps`` edits, or the ``stop`` action, the
episode ends.

**Action space**: ``Discrete(n)`` over a fixed, enumerated list of edits (``env.action_names`` lists
them; SB3's PPO, A2C and DQN all take ``Discrete``). The list depends only on the constructor's
arguments, never on the current prompt; an edit that does not apply to the current prompt (deleting
phrase 7 of a 5-phrase instruction, adding from an empty slot, label words that would collide) is a
no-op: the prompt stays, the step counts, the reward is ``invalid_penalty`` (default 0) and
``info["valid"]`` is False. ``env.action_masks()`` says which actions would change the prompt now
(for sb3-contrib's ``MaskablePPO``; plain PPO ignores it). The edits, in this order:

- ``stop``: end the episode (terminated).
- ``del:i``: delete instruction phrase ``i`` (i < ``max_phrases``), GRIPS's ``delete`` on GRIPS's
  rule-based chunker (``promptgym.optimizers.grips.segment``). A deleted phrase joins the episode's
  add pool.
- ``swap:i,j``: exchange phrases ``i < j`` (GRIPS's ``swap``).
- ``add:k@p``: insert add-pool phrase ``k`` (``add_slots`` of them: first the ``extra_phrases`` you
  give, then the phrases deleted in this episode, oldest first) after phrase ``p``, or at the start
  for ``p = -1`` (GRIPS's ``add``; a re-added deleted phrase leaves the pool, as in GRIPS).
- ``sub:i`` (only with ``paraphrase=True``): phrase ``i`` rewritten by the optimizer model, one
  sample (GRIPS's ``paraphrase``; an optimizer call, charged to the budget like any other).
- ``demo:s<-j``: put pool demonstration ``j`` in demo slot ``s`` (if ``j`` already sits in another
  slot the two slots exchange); ``demo:s<->t``: exchange demo slots ``s < t`` (TEMPERA's exemplar
  swap and permutation). ``num_demos`` slots (default: the initial prompt's demos, or 0), and a pool
  of ``demo_pool`` training examples (the initial demos first). Pool examples are never scored.
- ``label:l=w``: show label ``l`` as its variant ``w`` (the label in lower, Capitalised or UPPER case
  (GRIPS's ``CASES``), then the ``label_words`` alternatives you give); ``case:c``: every label in
  case ``c`` (GRIPS's ``labels`` edit). Only for tasks with one shared label set.
- ``layout:name``: switch to a shipped layout (``promptgym.tasks.prompt.LAYOUTS``).

**Observation**: ``Box(-1, 1, (d,), float32)``, the concatenation of (``env.observation_parts`` gives
each part's slice):

- ``words``: hashed bag of words of the instruction (``hash_dim`` buckets, stable hash of the
  lower-cased words), L2-normalised counts;
- ``shape``: phrases / ``max_phrases`` and words / 64, both clipped to 1;
- ``layout``: one-hot of the shipped layout (all zero for a custom one);
- ``labels``: per label, one-hot over its variants plus one "other" entry;
- ``demos``: per demo slot, one-hot over the demo pool;
- ``add_pool``: which add slots hold a phrase;
- ``scores``: the last ``history`` scores (newest first, the episode's start repeated before
  there were as many), the current score minus the start's, the episode's best; all divided by
  ``score_scale`` and clipped to [-1, 1];
- ``progress``: steps taken / ``max_steps``, and 1 once the budget is exhausted (else 0). The budget
  left is not observed: an observation depends only on the episode (seed and actions), never on
  what the shared cache already holds.

The current prompt is in ``info``: ``prompt`` (instruction), ``prompt_full`` (``Prompt.to_dict()``),
``prompt_text`` (rendered with ``{input}`` for the input), with ``score``, ``start_score``, ``step``,
``action`` (its name), ``valid`` and ``budget_exhausted``. ``env.usage()`` gives the calls made,
cached answers and the budget spent and left.

**Reward**: the score of a prompt is ``score_fn(result)`` of its ``EvalResult`` on the episode's
batch (default: the task metric's mean, e.g. accuracy), computed by ``Evaluator.run_task``: cached
answers are free, and every new model call is charged to the evaluator's hard budget.
``reward="delta"`` (default, TEMPERA): ``r_t = reward_scale x (s_t - s_{t-1})``, so an episode's
return is the final prompt's score minus the start's. ``reward="final"``: 0 on every step but the
last, which gets ``reward_scale x s_T`` (the score itself). When the budget runs out mid-step the
episode is truncated (``truncated=True``, reward 0 for that step, ``info["budget_exhausted"]``):
no exception reaches the agent. A reset with no budget left for the start's score (not cached)
gives an episode that truncates on its first step. ``max_steps`` edits also truncate.

Randomness: ``reset(seed=...)`` seeds the batch draw (``batch_size`` examples from the training
examples outside the demo pool, redrawn every episode unless ``fixed_batch``); the demo pool is
drawn once, at construction, with ``seed``. Edits are deterministic except ``sub`` (a fresh sample
each time it is asked).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import replace
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from promptgym.data.dataset import Example, split_dataset
from promptgym.errors import BudgetExhausted, PromptgymError
from promptgym.evaluation.cache import ResponseCache
from promptgym.evaluation.evaluator import Budget, EvalResult, Evaluator
from promptgym.optimizers.base import Context
from promptgym.optimizers.grips import CASES, add, delete, paraphrase, phrases, swap, with_label_words
from promptgym.paths import default_cache_url
from promptgym.runner.backends import backend_for
from promptgym.runner.config import dataset_from_config
from promptgym.runner.setup import initial_prompt, task_of
from promptgym.tasks.prompt import LAYOUTS, Prompt
from promptgym.tasks.task import Task

ScoreFn = Callable[[EvalResult], float]
WORD = re.compile(r"\w+(?:['’-]\w+)*")
WORD_SCALE = 64  # the instruction length feature: words / WORD_SCALE, clipped to 1


def _mean(result: EvalResult) -> float:
    return result.mean


class PromptEditEnv(gym.Env):
    """Edit a prompt step by step; rewarded by the task metric on a batch of training examples.

    The module docstring documents the action space, the observation and the reward.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, evaluator: Evaluator, task: Task, train: Sequence[Example], initial: Prompt | str,
                 *, max_steps: int = 6, batch_size: int = 8, fixed_batch: bool = False,
                 reward: str = "delta", reward_scale: float = 1.0, score_fn: ScoreFn | None = None,
                 score_scale: float = 1.0, invalid_penalty: float = 0.0,
                 max_phrases: int = 10, add_slots: int = 3, extra_phrases: Sequence[str] = (),
                 paraphrase: bool = False, num_demos: int | None = None, demo_pool: int = 8,
                 label_words: dict[str, Sequence[str]] | None = None, hash_dim: int = 64, history: int = 4,
                 seed: int = 0, render_mode: str | None = None):
        if reward not in ("delta", "final"):
            raise ValueError("reward must be 'delta' or 'final'")
        if max_steps < 1 or batch_size < 1 or max_phrases < 1 or hash_dim < 1 or history < 1:
            raise ValueError("max_steps, batch_size, max_phrases, hash_dim and history must be at least 1")
        if render_mode not in (None, "ansi"):
            raise ValueError("render_mode must be None or 'ansi'")
        self.evaluator, self.task = evaluator, task
        self.initial = Prompt(initial) if isinstance(initial, str) else initial
        self.max_steps, self.batch_size, self.fixed_batch = max_steps, batch_size, fixed_batch
        self.reward_mode, self.reward_scale, self.invalid_penalty = reward, reward_scale, invalid_penalty
        self.score_fn: ScoreFn = score_fn or _mean
        self.score_scale = score_scale
        self.max_phrases, self.add_slots = max_phrases, add_slots
        self.extra_phrases = [p.strip() for p in extra_phrases if p.strip()]
        if len(self.extra_phrases) > add_slots:
            raise ValueError(f"{len(self.extra_phrases)} extra_phrases but only {add_slots} add_slots")
        self.paraphrase = paraphrase
        self.hash_dim, self.history = hash_dim, history
        self.render_mode = render_mode

        # The demo pool: the initial demos first, then training examples drawn with ``seed``.
        train = list(train)
        k = len(self.initial.demos) if num_demos is None else num_demos
        pool: list[tuple[str, str]] = list(dict.fromkeys(self.initial.demos))
        pool_ids: set[str] = set()
        if k:
            wanted = max(demo_pool, k) - len(pool)
            order = np.random.default_rng(seed).permutation(len(train)).tolist()
            for i in order:
                if wanted <= 0:
                    break
                ex = train[i]
                if (ex.input, ex.target) not in pool:
                    pool.append((ex.input, ex.target))
                    pool_ids.add(ex.id)
                    wanted -= 1
            if len(pool) < k:
                raise PromptgymError(f"{k} demo slots but only {len(pool)} demonstrations for the pool")
            if len(self.initial.demos) != k:  # the slots start with the initial demos, then the pool's
                start = (list(self.initial.demos) + [d for d in pool if d not in self.initial.demos])[:k]
                self.initial = replace(self.initial, demos=tuple(start))
        self.num_demos, self.demo_pool = k, pool if k else []
        pool_inputs = {d[0] for d in self.demo_pool}
        self.examples = [e for e in train if e.id not in pool_ids and e.input not in pool_inputs]
        if not self.examples:
            raise PromptgymError("no training examples left to score on (all are in the demo pool)")
        self.batch_size = min(batch_size, len(self.examples))

        # Labels: one shared label set, else no label edits.
        first = self.examples[0].choices
        self.labels: list[str] = list(first) if first and all(e.choices == first for e in self.examples) else []
        label_words = label_words or {}
        unknown = sorted(set(label_words) - set(self.labels))
        if unknown:
            raise ValueError(f"label_words for unknown labels {unknown} (labels: {self.labels})")
        self.variants: list[list[str]] = [
            list(dict.fromkeys([case(label) for case in CASES] + [w.strip() for w in label_words.get(label, ())
                                                                  if w.strip()]))
            for label in self.labels]
        self.n_variants = max((len(v) for v in self.variants), default=0)

        self.layouts = list(LAYOUTS)
        self.actions: list[tuple] = self._enumerate_actions()
        self.action_names = [self._action_name(a) for a in self.actions]
        self.action_space = spaces.Discrete(len(self.actions))
        self.observation_parts: dict[str, slice] = {}
        offset = 0
        for name, size in (("words", hash_dim), ("shape", 2), ("layout", len(self.layouts)),
                           ("labels", len(self.labels) * (self.n_variants + 1)),
                           ("demos", self.num_demos * len(self.demo_pool)), ("add_pool", add_slots),
                           ("scores", history + 2), ("progress", 2)):
            self.observation_parts[name] = slice(offset, offset + size)
            offset += size
        self.observation_space = spaces.Box(-1.0, 1.0, (offset,), dtype=np.float32)

        self._ctx = Context(task=task, evaluator=evaluator, train=self.examples, initial=self.initial, seed=seed)
        self.prompt = self.initial
        self.batch: list[Example] = []
        self.scores: list[float] = []
        self.deleted: list[str] = []
        self.steps = 0
        self.exhausted = False
        self._last: dict[str, Any] = {"action": None, "valid": True}

    # -------------------------------------------------------------------------------------------
    # Construction from a dataset name and model specs, as the CLI takes them

    @classmethod
    def from_spec(cls, dataset: str, model: str = "embedded", *, optimizer_model: str | None = None,
                  budget: int | None = None, train_size: int = 24, test_size: int = 0, seed: int = 0,
                  prompt: str | None = None, layout: str = "chat", normalize: str = "none",
                  scoring: str | None = None, cache_url: str | None = None, **env_kwargs: Any) -> "PromptEditEnv":
        """An env on ``dataset`` (any ``--dataset`` spec: ``bigbench:TASK``, a file, ``example:...``)
        scored by ``model`` (``embedded``, ``gguf:PATH``, ``openai:MODEL``...), built like a run (by the
        runner's setup): seeded disjoint splits, the dataset's task and reward, the shared response cache
        (``$PROMPTGYM_HOME/cache.sqlite`` unless ``cache_url``), a hard ``budget`` of model calls
        (None: no limit) and the task's own instruction as the start. ``optimizer_model`` (for
        ``paraphrase=True``) defaults to ``model``. The splits are ``env.splits`` (``test`` is held
        out, never seen by the env); the rest of the keywords go to the constructor."""
        config = dict(dataset=dataset, fields={}, prompt=prompt, layout=layout, normalize=normalize)
        data = dataset_from_config(config)
        splits = split_dataset(data, train_size, test_size, 0, seed)
        task_backend = backend_for(model)
        opt_backend = backend_for(optimizer_model) if optimizer_model else task_backend
        task = task_of(config, data, scoring or ("logprob" if task_backend.supports_scoring else "generate"))
        evaluator = Evaluator(task_backend, opt_backend, ResponseCache(cache_url or default_cache_url()),
                              Budget(budget))
        env_kwargs.setdefault("num_demos", 2)
        env_kwargs.setdefault("seed", seed)
        env = cls(evaluator, task, splits.train, initial_prompt(config, data, task), **env_kwargs)
        env.splits = splits
        env.dataset_name = dataset
        return env

    # -------------------------------------------------------------------------------------------
    # The action list

    def _enumerate_actions(self) -> list[tuple]:
        P, acts = self.max_phrases, [("stop",)]
        acts += [("del", i) for i in range(P)]
        acts += [("swap", i, j) for i in range(P) for j in range(i + 1, P)]
        acts += [("add", k, p) for k in range(self.add_slots) for p in range(-1, P)]
        if self.paraphrase:
            acts += [("sub", i) for i in range(P)]
        n_pool = len(self.demo_pool)
        acts += [("demo", s, j) for s in range(self.num_demos) for j in range(n_pool)]
        acts += [("demo_perm", s, t) for s in range(self.num_demos) for t in range(s + 1, self.num_demos)]
        acts += [("label", li, v) for li, variants in enumerate(self.variants) for v in range(len(variants))]
        if self.labels:
            acts += [("case", c) for c in range(len(CASES))]
        acts += [("layout", name) for name in self.layouts]
        return acts

    def _action_name(self, action: tuple) -> str:
        kind = action[0]
        if kind in ("stop",):
            return kind
        if kind in ("del", "sub"):
            return f"{kind}:{action[1]}"
        if kind == "swap":
            return f"swap:{action[1]},{action[2]}"
        if kind == "add":
            return f"add:{action[1]}@{action[2]}"
        if kind == "demo":
            return f"demo:{action[1]}<-{action[2]}"
        if kind == "demo_perm":
            return f"demo:{action[1]}<->{action[2]}"
        if kind == "label":
            return f"label:{self.labels[action[1]]}={self.variants[action[1]][action[2]]}"
        if kind == "case":
            return f"case:{('lower', 'capitalised', 'upper')[action[1]]}"
        return f"layout:{action[1]}"

    def add_pool(self) -> list[str]:
        """The phrases the ``add`` actions insert, by slot: extra phrases, then this episode's deletions."""
        return (self.extra_phrases + self.deleted)[: self.add_slots]

    def apply(self, prompt: Prompt, action: int) -> Prompt | None:
        """The prompt after ``action`` (an index into ``action_names``), or None when it does not
        apply. Changes no state (``sub`` draws a fresh optimizer sample each time); ``step`` uses it."""
        act = self.actions[int(action)]
        kind, text = act[0], prompt.instruction
        found = phrases(text)
        new_text: str | None = None
        if kind == "stop":
            return None
        if kind == "del":
            if act[1] >= len(found) or len(found) < 2:  # never delete the last phrase
                return None
            new_text = delete(text, act[1])
        elif kind == "swap":
            if act[2] >= len(found) or found[act[1]] == found[act[2]]:
                return None
            new_text = swap(text, act[1], act[2])
        elif kind == "add":
            pool = self.add_pool()
            if act[1] >= len(pool) or act[2] >= len(found):
                return None
            new_text = add(text, pool[act[1]], act[2])
        elif kind == "sub":
            if act[1] >= len(found):
                return None
            new_text = paraphrase(self._ctx, text, act[1])
        elif kind in ("demo", "demo_perm"):
            demos = list(prompt.demos)
            s = act[1]
            if kind == "demo":
                incoming = self.demo_pool[act[2]]
                if demos[s] == incoming:
                    return None
                if incoming in demos:  # already in another slot: the two slots exchange
                    t = demos.index(incoming)
                    demos[t] = demos[s]
                demos[s] = incoming
            else:
                t = act[2]
                if demos[s] == demos[t]:
                    return None
                demos[s], demos[t] = demos[t], demos[s]
            return replace(prompt, demos=tuple(demos))
        elif kind in ("label", "case"):
            words = [prompt.verbalize(label) for label in self.labels]
            if kind == "label":
                words[act[1]] = self.variants[act[1]][act[2]]
            else:
                words = [CASES[act[1]](w) for w in words]
            if len({w.casefold() for w in words}) < len(words) or not all(words):
                return None  # labels must stay distinct
            new = with_label_words(prompt, self.labels, words)
            return new if new.id != prompt.id else None
        else:
            if prompt.layout.name == act[1] and prompt.layout == LAYOUTS[act[1]]:
                return None
            return replace(prompt, layout=LAYOUTS[act[1]])
        if new_text is None or not any(ch.isalpha() for ch in new_text) or new_text == text:
            return None
        return prompt.with_instruction(new_text)

    def action_masks(self) -> np.ndarray:
        """Which actions change the current prompt (``stop`` always does something), as booleans;
        the name sb3-contrib's ``MaskablePPO`` looks for. No model is asked: ``sub`` counts as
        valid when its phrase exists (the paraphrase itself may still fail)."""
        found = len(phrases(self.prompt.instruction))
        mask = np.zeros(len(self.actions), dtype=bool)
        for a, act in enumerate(self.actions):
            if act[0] == "stop":
                mask[a] = True
            elif act[0] == "sub":
                mask[a] = act[1] < found
            else:
                mask[a] = self.apply(self.prompt, a) is not None
        return mask

    # -------------------------------------------------------------------------------------------
    # The gymnasium interface

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if not self.batch or not self.fixed_batch:
            n = len(self.examples)
            idx = sorted(self.np_random.choice(n, size=self.batch_size, replace=False).tolist())
            self.batch = [self.examples[i] for i in idx]
        self.prompt = self.initial
        self.deleted = []
        self.steps = 0
        self.exhausted = False
        self._last = {"action": None, "valid": True}
        try:
            self.scores = [self._score(self.prompt)]
        except BudgetExhausted:
            self.scores = [0.0]
            self.exhausted = True
        return self._observation(), self._info()

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r} for {self.action_space}")
        action = int(action)
        name = self.action_names[action]
        self.steps += 1
        at_limit = self.steps >= self.max_steps
        if self.exhausted:  # the budget ran out at reset: nothing can be scored
            self._last = {"action": name, "valid": False}
            return self._observation(), 0.0, False, True, self._info()
        if self.actions[action][0] == "stop":
            self._last = {"action": name, "valid": True}
            return self._observation(), self._end_reward(), True, False, self._info()
        previous = self.scores[-1]
        try:
            new = self.apply(self.prompt, action)
            if new is None:
                self.scores.append(previous)
                self._last = {"action": name, "valid": False}
                reward = self.invalid_penalty
            else:
                score = self._score(new)
                self._accept(action, new)
                self.scores.append(score)
                self._last = {"action": name, "valid": True}
                reward = self.reward_scale * (score - previous) if self.reward_mode == "delta" else 0.0
        except BudgetExhausted:  # the edit stays unscored and unapplied; the episode ends here
            self.exhausted = True
            self._last = {"action": name, "valid": False}
            return self._observation(), self._end_reward(), False, True, self._info()
        if at_limit and self.reward_mode == "final":
            reward += self._end_reward()
        return self._observation(), float(reward), False, at_limit, self._info()

    def render(self):
        if self.render_mode == "ansi":
            return (f"step {self.steps}/{self.max_steps} score {self.scores[-1]:.3f} "
                    f"(start {self.scores[0]:.3f})\n{self.prompt_text(self.prompt)}\n")
        return None

    # -------------------------------------------------------------------------------------------

    def _end_reward(self) -> float:
        return self.reward_scale * self.scores[-1] if self.reward_mode == "final" else 0.0

    def _accept(self, action: int, new: Prompt) -> None:
        act = self.actions[action]
        if act[0] == "del":
            self.deleted.append(phrases(self.prompt.instruction)[act[1]])
        elif act[0] == "add":
            k = act[1] - len(self.extra_phrases)
            if k >= 0:  # a re-added deletion leaves the pool (GRIPS's delete tracker)
                self.deleted.pop(k)
        self.prompt = new

    def _score(self, prompt: Prompt) -> float:
        return float(self.score_fn(self._ctx.evaluate(prompt, self.batch, split="train")))

    def prompt_text(self, prompt: Prompt | None = None) -> str:
        """The prompt as the model sees it, with ``{input}`` where an example's input goes."""
        prompt = prompt or self.prompt
        rendered = prompt.render("{input}", options=[prompt.verbalize(label) for label in self.labels])
        body = rendered.text if rendered.messages is None else "\n".join(
            f"[{role}] {content}" for role, content in rendered.messages)
        return body + rendered.answer_prefix

    def _observation(self) -> np.ndarray:
        obs = np.zeros(self.observation_space.shape, dtype=np.float32)
        part = self.observation_parts
        text = self.prompt.instruction
        words = [w.lower() for w in WORD.findall(text)]
        bag = np.zeros(self.hash_dim, dtype=np.float64)
        for w in words:
            bag[zlib.crc32(w.encode()) % self.hash_dim] += 1.0
        norm = np.linalg.norm(bag)
        obs[part["words"]] = bag / norm if norm else bag
        obs[part["shape"]] = [min(len(phrases(text)) / self.max_phrases, 1.0), min(len(words) / WORD_SCALE, 1.0)]
        layout = np.zeros(len(self.layouts))
        name = self.prompt.layout.name
        if name in LAYOUTS and LAYOUTS[name] == self.prompt.layout:
            layout[self.layouts.index(name)] = 1.0
        obs[part["layout"]] = layout
        labels = np.zeros((len(self.labels), self.n_variants + 1))
        for li, label in enumerate(self.labels):
            word = self.prompt.verbalize(label)
            variants = self.variants[li]
            labels[li, variants.index(word) if word in variants else self.n_variants] = 1.0
        obs[part["labels"]] = labels.ravel()
        demos = np.zeros((self.num_demos, len(self.demo_pool)))
        for s, demo in enumerate(self.prompt.demos[: self.num_demos]):
            if demo in self.demo_pool:
                demos[s, self.demo_pool.index(demo)] = 1.0
        obs[part["demos"]] = demos.ravel()
        obs[part["add_pool"]] = [1.0 if k < len(self.add_pool()) else 0.0 for k in range(self.add_slots)]
        recent = (self.scores[::-1] + [self.scores[0]] * self.history)[: self.history]
        scores = np.array(recent + [self.scores[-1] - self.scores[0], max(self.scores)]) / self.score_scale
        obs[part["scores"]] = np.clip(scores, -1.0, 1.0)
        obs[part["progress"]] = [min(self.steps / self.max_steps, 1.0), float(self.exhausted)]
        return obs

    def _info(self) -> dict[str, Any]:
        return dict(prompt=self.prompt.instruction, prompt_full=self.prompt.to_dict(),
                    prompt_text=self.prompt_text(), score=self.scores[-1], start_score=self.scores[0],
                    step=self.steps, action=self._last["action"], valid=self._last["valid"],
                    budget_exhausted=self.exhausted)

    def usage(self) -> dict[str, Any]:
        """What this env's evaluator has spent: model calls made, answers replayed from the cache,
        budget spent and left (None: no limit). Not in ``info``, which must not depend on the cache."""
        usage, budget = self.evaluator.usage, self.evaluator.budget
        return dict(calls=usage.calls, cached_calls=usage.cached_calls, budget_spent=budget.spent,
                    budget_remaining=None if budget.limit is None else budget.remaining)


