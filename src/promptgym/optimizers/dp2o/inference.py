"""From a policy's prompt distribution to class predictions (pure numpy).

``table`` has shape (h, n, C): the task model's class probabilities for prompt k on input i.
At test time only the entries a variant needs are known (NaN elsewhere); ``needed_pairs`` says
which ones to fetch before predicting.
"""

from __future__ import annotations

import numpy as np


def top_prompts(pi: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k most probable prompts per input, most probable first; ties by index."""
    k = max(1, min(k, pi.shape[1]))
    return np.argsort(-pi, axis=1, kind="stable")[:, :k]


def greedy(pi: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Each input gets its argmax prompt; the prediction is that prompt's argmax class."""
    chosen = pi.argmax(axis=1)
    return table[chosen, np.arange(len(chosen))].argmax(axis=1)


def ensemble(pi: np.ndarray, table: np.ndarray, k: int) -> np.ndarray:
    """Paper's inference: argmax_c sum_{j in top-k(pi)} pi_j * log p(c | prompt_j, x)."""
    top = top_prompts(pi, k)
    rows = np.arange(len(pi))[:, None]
    weights = pi[rows, top]                                    # (n, k)
    logp = np.log(np.clip(table[top, rows], 1e-12, 1.0))      # (n, k, C)
    return (weights[:, :, None] * logp).sum(axis=1).argmax(axis=1)


def nearest(inputs: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Similarity baseline: for each input, the pool prompt whose (demo) embedding has the
    highest cosine similarity; ties go to the lower index."""
    a = inputs / np.maximum(np.linalg.norm(inputs, axis=1, keepdims=True), 1e-12)
    b = pool / np.maximum(np.linalg.norm(pool, axis=1, keepdims=True), 1e-12)
    return (a @ b.T).argmax(axis=1)


def chosen_predictions(chosen: np.ndarray, table: np.ndarray) -> np.ndarray:
    return table[chosen, np.arange(len(chosen))].argmax(axis=1)


def needed_pairs(pi: np.ndarray | None, k: int, extra: list[np.ndarray] = ()) -> dict[int, list[int]]:
    """prompt index -> input indices whose probabilities greedy + top-k ensemble (+ any fixed
    per-input choices in ``extra``) will read."""
    need: dict[int, set[int]] = {}
    if pi is not None:
        for i, row in enumerate(top_prompts(pi, k)):
            for j in row:
                need.setdefault(int(j), set()).add(i)
    for chosen in extra:
        for i, j in enumerate(chosen):
            need.setdefault(int(j), set()).add(i)
    return {j: sorted(v) for j, v in sorted(need.items())}
