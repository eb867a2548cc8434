"""DP2O, Dialogue for Prompting (Li et al., AAAI 2024, arXiv 2308.07272; code czx-li/DP2O).

Two stages, then per-input inference:

Stage A, a pool of demonstration prompts written in a dialogue.
  1. Every training example (or a seeded subset when the budget is small) is scored as a
     one-shot demonstration with SUE on the training set (leaving itself out); the top ``seeds``
     (m) are the seeds.
  2. ``rounds`` conversations with the optimizer model; each has m - 2 turns, each turn shows a
     window of 3 seeds and asks for one new labelled example per label; the history is carried as
     chat messages (see ``dialogue``). Replies are parsed tolerantly, de-duplicated, and
     degenerate items, copies of training inputs and items with a malformed label are dropped
     and counted.
  3. Every candidate is scored with SUE (one pass over the SUE examples per candidate: linear
     cost); the top ``pool_size`` (h, default 15 as the released code) form the pool.
  A pool item is the starting ``Prompt`` with ``demos=((input, label),)``: one generated labelled
  example, like the released code's one-shot prefixes, so layouts and verbalizers are reused.

Stage B, prompt matching by policy gradient (see ``policy``).
  The task model's class probabilities for every (pool prompt, train input) and (pool prompt,
  dev input) pair are computed once through the Evaluator (cached, budgeted); the 200 episodes
  read rewards from that table, so training makes no model call. State: a frozen embedding of
  each input, z-normalised with the training states' mean and std. The policy with the best dev
  score (greedy accuracy, then ensemble accuracy; ties go to the later, more trained policy, as the
  released code's ``best_acc <= acc``) is kept.

Inference: greedy (the argmax prompt per input) and the paper's top-k (k=10) ensemble
``argmax_c sum_j pi_j log p(c | prompt_j, x)``; baselines: the starting prompt, the best single
pool prompt by dev, and the nearest pool prompt by embedding cosine (the code's ``use_similar``).
``optimize`` returns the best single pool prompt by dev (the generic contract); the policy, the
pool and the encoder are stored as the run artifact ``dp2o`` for ``heldout_report`` and
``predict``; a resumed run reloads a finished policy instead of retraining it.

Decisions where the paper (body not available) and the code are silent or wrong:
- SUE's formula is unpublished. Reconstruction: ``SUE = 10 * mean margin + 6.5 * mean H(p)/log2 C
  (+ g * GlobalE, g = 0 by default)``, i.e. the mean unnormalised reward; weights are parameters
  (``sue_supervised``, ``sue_unsupervised``, ``sue_global``). The run reports the Spearman
  correlation of SUE (and of its parts) with dev accuracy over the pool, and over every screened
  candidate with ``dev_all_candidates=True``.
- Reward for C classes: margin = p_y - max_{c != y} p_c; entropy in bits divided by log2 C, so
  that for two classes it is exactly the code's ``10 margin + 6.5 H_2``. Sign (pitfall 4): kept as
  the code (+, an anti-overconfidence bonus in the spirit of LocalE). With raw bits and 4 classes
  the bonus would let a flat wrong prediction out-earn a certain right one; normalising by log2 C
  keeps the binary trade-off (reward increases with p_y up to p_y ~ 0.9). ``reward_entropy`` < 0
  flips it.
- Rewards are standardised within each episode's batch (``reward_norm='batch'``); 'running' uses
  statistics of earlier episodes only (no spurious zero, never a sample's own value).
- Dev split: the run's dev split if it has one; otherwise a seeded ``dev_fraction`` (0.3) of the
  training examples (at least 2 on each side), because selection needs data the policy never
  trained on and the test split is never looked at.
- m = 8 seeds, 3 rounds, window 3 (m - 2 turns per round), temperature 0.8: the paper's values
  are not given. Rounds after the first walk the seeds in a seeded shuffled order.
- Long dialogues are trimmed to ``max_history_chars`` (system, first exchange, newest exchanges)
  to fit a small model's context.
- States are embeddings of the raw input text (encoder ``auto``: the task model's own embeddings,
  asked through the Evaluator -- llama.cpp mean pooling in-process, ``/v1/embeddings`` on a server --
  when the task model offers them, TF-IDF otherwise, e.g. on the scripted test model). The
  similarity baseline compares raw input embeddings with the embeddings of the pool demos' input
  texts (the code compared normalised query states with unnormalised prompt states).
- Budget: Stage A and B are scaled down to fit (``plan_budget``: rounds, seed candidates, SUE
  examples, seeds, h, in that order); screening takes a seeded subset if the dialogue wrote more
  than the budget can score. The plan counts distinct requests, not the live budget, so a resumed
  run (whose replayed calls are free) makes exactly the same choices.
"""

from promptgym.optimizers.dp2o.optimizer import Dp2oOptimizer, demo_prompt, plan_budget

__all__ = ["Dp2oOptimizer", "demo_prompt", "plan_budget"]
