"""RLPrompt's policy: a tiny numpy MLP whose outputs are the Q-values of the next word (one-hot
position and previous word in, one Q-value per vocabulary word out); the policy is their softmax.
Forward and backward passes, sampling and the greedy prompt."""

from __future__ import annotations

import math

import numpy as np

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
