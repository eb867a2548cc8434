"""The task for a dataset and a metric: the one builder that runs, resumes, exports, the Gymnasium
env and the benchmarks share, so the same data and reward always make the same task."""

from __future__ import annotations

from typing import Callable

from promptgym.data.dataset import Dataset
from promptgym.tasks.code import CodeTask, CodeTestsMetric
from promptgym.tasks.metrics import CallableMetric, Metric
from promptgym.tasks.task import ChoiceTask, GenerationTask, Task


def task_for(dataset: Dataset, normalize: str = "none", scoring: str = "logprob",
             metric: Metric | Callable | None = None, max_tokens: int | None = None,
             calibrate: bool = False) -> Task:
    """A code reward (``CodeTestsMetric``, under any length penalty) makes a ``CodeTask`` (longer
    answers, no stop at blank lines); a dataset with choices a ``ChoiceTask`` (its options scored
    by log-probability or answered by generation, ``scoring``; calibrated by each prompt's label
    prior with ``calibrate``; the chosen option scored by ``metric`` when one is given, else by
    accuracy); anything else a ``GenerationTask``. ``max_tokens`` caps a generated free-text or
    code answer (None: the task's own default)."""
    if metric is not None and not hasattr(metric, "name"):
        metric = CallableMetric(metric)
    cap = {} if max_tokens is None else {"max_tokens": max_tokens}
    if isinstance(_base(metric), CodeTestsMetric):
        return CodeTask(metric=metric, **cap)
    if dataset.is_choice:
        task = ChoiceTask(normalize=normalize, scoring=scoring, calibrate=calibrate)
        if metric is not None:
            task.metric = metric
        return task
    return GenerationTask(metric=metric, **cap)


def _base(metric: Metric | None) -> Metric | None:
    """The metric under any length penalties (each keeps the one it wraps as ``base``)."""
    while metric is not None and not isinstance(metric, CodeTestsMetric) and hasattr(metric, "base"):
        metric = metric.base
    return metric
