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

from promptgym.optimizers.rlprompt.optimizer import (GENERAL_WORDS, RlPromptOptimizer, RlPromptState,
                                                     build_vocabulary, words)

__all__ = ["GENERAL_WORDS", "RlPromptOptimizer", "RlPromptState", "build_vocabulary", "words"]
