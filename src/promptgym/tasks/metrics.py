"""Metrics: how a prediction is scored against an example (1.0 = right)."""

from __future__ import annotations

from typing import Callable, Protocol

from promptgym.data.dataset import Example
from promptgym.errors import PromptgymError
from promptgym.tasks.parsing import extract_answer, normalize


class RewardError(PromptgymError):
    """A reward spec that cannot be loaded, or a reward that failed; the message is one line."""


class Metric(Protocol):
    name: str

    def __call__(self, prediction: str, example: Example) -> float: ...


class ChoiceAccuracy:
    """1 when the predicted label is the example's label."""

    name = "accuracy"

    def __call__(self, prediction: str, example: Example) -> float:
        return float(prediction == example.target)


class ExactMatch:
    """1 when the extracted answer equals any accepted answer after normalisation."""

    name = "exact_match"

    def __call__(self, prediction: str, example: Example) -> float:
        answer = normalize(extract_answer(prediction))
        return float(any(answer == normalize(t) for t in example.targets))


class CallableMetric:
    """Wrap a user function ``f(prediction, example) -> float`` (or ``-> bool``)."""

    def __init__(self, fn: Callable[[str, Example], float], name: str | None = None):
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "custom")

    def __call__(self, prediction: str, example: Example) -> float:
        return float(self.fn(prediction, example))
