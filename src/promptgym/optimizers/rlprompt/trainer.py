"""RLPrompt's trainer: the code's soft Q-learning loss (``sql_losses.py``, ``v2_v2r_v3_v3r``) and one
update of the policy (``sql_module.py``): target network Polyak-averaged first, then Adam on the
clipped gradient."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from promptgym.optimizers.rlprompt.policy import Weights, backward, forward

GRAD_CLIP = 5.0  # trainer default: gradient norm clipped to 5
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults


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
