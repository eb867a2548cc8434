"""RLPrompt's reward (the code's ``fsc_reward.py``): the gap between the label's probability and the
best other label's, piecewise-scaled, averaged per prompt; then stabilised across a step's prompts
(z-score, then the fsc config's shaping)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from promptgym.evaluation.evaluator import EvalResult
from promptgym.models.base import OptionScores
from promptgym.tasks.task import ChoiceTask, Task

ZSCORE_EPS = 1e-4  # fsc_reward.py: (R - mean) / (std + 1e-4)
SHAPING = (0.0, 1.0, 0.0, 5.0)  # fsc_config.yaml: reward shaping [old_min, old_max] -> [new_min, new_max]


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
            probs = task.probabilities(response, task.aligned(example, result.prior))  # calibrated, if the task is
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
