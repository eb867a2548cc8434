"""DP2O's prompt-matching policy: a small numpy MLP trained with REINFORCE (no torch needed).

``state -> Linear(D, hidden) -> tanh -> Linear(hidden, h) -> softmax`` over the h pool prompts,
orthogonal initialisation (gain 1, and 0.01 on the last layer, so the first policy is nearly
uniform), AdamW (eps 1e-5, decoupled weight decay 0.01 as torch's default) with the learning
rate decayed linearly to 0 over the episodes, and an entropy bonus.

Fixes of the released code's pitfalls:
- one update per episode from the loss summed once over the batch (the released code called
  ``backward`` on the cumulative loss inside the per-sample loop, counting sample i N-i times);
- rewards standardised within the batch by default, or with running statistics that exclude
  the batch being normalised and never see a spurious 0 (``reward_norm='running'``);
- the weights kept are the best by a caller-given dev score, never by test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np


def orthogonal(rng: np.random.Generator, fan_in: int, fan_out: int, gain: float = 1.0) -> np.ndarray:
    """An (fan_in, fan_out) matrix with orthonormal rows or columns, as torch's orthogonal_
    (which works on the (out, in) weight; we return its transpose for ``x @ W``)."""
    rows, cols = fan_out, fan_in
    a = rng.normal(size=(rows, cols))
    if rows < cols:
        a = a.T
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return (gain * q).T.copy()


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _compact(values: np.ndarray) -> list:
    """Floats with 7 significant digits (float32 precision) for a JSON artifact."""
    return [float(f"{x:.7g}") for x in np.asarray(values, dtype=np.float64).ravel()]


@dataclass
class PolicyNet:
    w1: np.ndarray  # (D, H)
    b1: np.ndarray  # (H,)
    w2: np.ndarray  # (H, A)
    b2: np.ndarray  # (A,)
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))  # state normalisation
    std: np.ndarray = field(default_factory=lambda: np.ones(0))

    @classmethod
    def init(cls, rng: np.random.Generator, state_dim: int, hidden: int, n_actions: int,
             last_gain: float = 0.01) -> "PolicyNet":
        return cls(w1=orthogonal(rng, state_dim, hidden, 1.0), b1=np.zeros(hidden),
                   w2=orthogonal(rng, hidden, n_actions, last_gain), b2=np.zeros(n_actions),
                   mean=np.zeros(state_dim), std=np.ones(state_dim))

    @property
    def params(self) -> list[np.ndarray]:
        return [self.w1, self.b1, self.w2, self.b2]

    @property
    def n_params(self) -> int:
        return int(sum(p.size for p in self.params))

    def normalize(self, states: np.ndarray) -> np.ndarray:
        if self.mean.size == 0:
            return np.asarray(states, dtype=np.float64)
        return (np.asarray(states, dtype=np.float64) - self.mean) / self.std

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised states -> (hidden activations, action probabilities)."""
        hid = np.tanh(x @ self.w1 + self.b1)
        return hid, softmax(hid @ self.w2 + self.b2)

    def probs(self, states: np.ndarray) -> np.ndarray:
        """Raw states -> the policy's distribution over prompts, one row per state."""
        return self.forward(self.normalize(states))[1]

    def grads(self, x: np.ndarray, actions: np.ndarray, advantages: np.ndarray,
              entropy_coef: float) -> tuple[float, list[np.ndarray]]:
        """Loss ``sum_i [-A_i log pi(a_i|s_i) - beta H(pi(.|s_i))]`` and its exact gradients."""
        hid, pi = self.forward(x)
        n = len(x)
        logp = np.log(np.clip(pi, 1e-300, None))
        ent = -(pi * logp).sum(axis=1)
        loss = float(-(advantages * logp[np.arange(n), actions]).sum() - entropy_coef * ent.sum())
        onehot = np.zeros_like(pi)
        onehot[np.arange(n), actions] = 1.0
        # d(-A log pi_a)/dz = -A (onehot - pi);  d(-beta H)/dz_j = beta pi_j (log pi_j + H)
        g_logits = -advantages[:, None] * (onehot - pi) + entropy_coef * pi * (logp + ent[:, None])
        g_w2 = hid.T @ g_logits
        g_b2 = g_logits.sum(axis=0)
        g_pre = (g_logits @ self.w2.T) * (1.0 - hid ** 2)
        g_w1 = x.T @ g_pre
        g_b1 = g_pre.sum(axis=0)
        return loss, [g_w1, g_b1, g_w2, g_b2]

    def copy(self) -> "PolicyNet":
        return PolicyNet(*(np.array(p, copy=True) for p in (self.w1, self.b1, self.w2, self.b2,
                                                           self.mean, self.std)))

    def to_dict(self) -> dict[str, Any]:
        return {"shape": [int(self.w1.shape[0]), int(self.w1.shape[1]), int(self.w2.shape[1])],
                "w1": _compact(self.w1), "b1": _compact(self.b1), "w2": _compact(self.w2),
                "b2": _compact(self.b2), "mean": _compact(self.mean), "std": _compact(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PolicyNet":
        d, h, a = data["shape"]
        arr = lambda key, shape: np.asarray(data[key], dtype=np.float64).reshape(shape)  # noqa: E731
        return cls(w1=arr("w1", (d, h)), b1=arr("b1", (h,)), w2=arr("w2", (h, a)), b2=arr("b2", (a,)),
                   mean=arr("mean", (len(data["mean"]),)), std=arr("std", (len(data["std"]),)))


class AdamW:
    """torch.optim.AdamW's update (decoupled weight decay, bias-corrected moments)."""

    def __init__(self, params: Sequence[np.ndarray], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-5, weight_decay: float = 0.01):
        self.params = list(params)
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.t = 0

    def step(self, grads: Sequence[np.ndarray], lr: float | None = None) -> None:
        lr = self.lr if lr is None else lr
        b1, b2 = self.betas
        self.t += 1
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            p *= 1.0 - lr * self.weight_decay
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            m_hat = m / (1 - b1 ** self.t)
            v_hat = v / (1 - b2 ** self.t)
            p -= lr * m_hat / (np.sqrt(v_hat) + self.eps)


class RunningStats:
    """Mean/std of everything pushed so far (Welford); the caller decides what goes in."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def push(self, values: np.ndarray) -> None:
        for x in np.asarray(values, dtype=np.float64).ravel():
            self.n += 1
            delta = x - self.mean
            self.mean += delta / self.n
            self.m2 += delta * (x - self.mean)

    @property
    def std(self) -> float:
        return float(np.sqrt(self.m2 / (self.n - 1))) if self.n > 1 else 0.0


def normalize_rewards(rewards: np.ndarray, mode: str, stats: RunningStats) -> np.ndarray:
    """'batch': standardise within the batch; 'running': with the statistics of earlier
    episodes only (the first episode uses its own batch); 'none': as they are."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if mode == "none":
        return rewards
    if mode == "batch" or (mode == "running" and stats.n < 2):
        mean, std = rewards.mean(), rewards.std()
    elif mode == "running":
        mean, std = stats.mean, stats.std
    else:
        raise ValueError(f"reward_norm must be batch, running or none, not {mode!r}")
    out = (rewards - mean) / (std + 1e-8)
    stats.push(rewards)  # after use: a batch is never normalised with its own statistics
    return out


@dataclass
class TrainResult:
    policy: PolicyNet          # the best by the dev score (the last one without a dev score)
    best_episode: int          # -1: the initial policy
    best_score: tuple
    curve: list[dict[str, float]]


def train_policy(states: np.ndarray, reward_table: np.ndarray, rng: np.random.Generator, *,
                 hidden: int = 600, episodes: int = 200, lr: float = 1e-3, eps: float = 1e-5,
                 weight_decay: float = 0.01, entropy_coef: float = 0.059, reward_norm: str = "batch",
                 normalize_states: bool = True, last_gain: float = 0.01,
                 dev_score: Callable[[PolicyNet], tuple] | None = None) -> TrainResult:
    """REINFORCE over the training inputs: each episode samples one prompt per input from the
    policy, reads its reward from ``reward_table[prompt, input]`` (precomputed from cached model
    probabilities, so episodes cost no model call), and makes one AdamW step.

    ``dev_score(policy) -> tuple`` (higher is better) is checked before training and after every
    episode; the best-scoring weights are returned (ties go to the later, more trained weights).
    """
    states = np.asarray(states, dtype=np.float64)
    reward_table = np.asarray(reward_table, dtype=np.float64)
    n_actions, n = reward_table.shape
    if states.shape[0] != n:
        raise ValueError(f"{states.shape[0]} states but {n} columns in the reward table")
    policy = PolicyNet.init(rng, states.shape[1], hidden, n_actions, last_gain)
    if normalize_states:
        policy.mean = states.mean(axis=0)
        policy.std = states.std(axis=0) + 1e-8
    x = policy.normalize(states)
    opt = AdamW(policy.params, lr=lr, eps=eps, weight_decay=weight_decay)
    stats = RunningStats()
    best = policy.copy()
    best_score = dev_score(policy) if dev_score else ()
    best_episode = -1
    curve: list[dict[str, float]] = []
    for episode in range(episodes):
        _, pi = policy.forward(x)
        cum = pi.cumsum(axis=1)
        actions = np.minimum((cum < rng.random((n, 1))).sum(axis=1), n_actions - 1)
        raw = reward_table[actions, np.arange(n)]
        adv = normalize_rewards(raw, reward_norm, stats)
        loss, grads = policy.grads(x, actions, adv, entropy_coef)
        opt.step(grads, lr=lr * (1.0 - episode / episodes))
        point = {"episode": episode, "reward": float(raw.mean()), "loss": loss,
                 "entropy": float(-(pi * np.log(np.clip(pi, 1e-300, None))).sum(axis=1).mean())}
        if dev_score:
            score = dev_score(policy)
            point["dev"] = float(score[0]) if score else 0.0
            if score >= best_score:
                best, best_score, best_episode = policy.copy(), score, episode
        curve.append(point)
    if not dev_score:
        best, best_episode = policy.copy(), episodes - 1
    return TrainResult(policy=best, best_episode=best_episode, best_score=tuple(best_score), curve=curve)
