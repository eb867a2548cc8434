"""Held-out evaluation: the start, the returned prompt and the method's own pick scored on the
train and test splits after the search, outside the budget and never shown to the method, each
prompt on each split once; and the returned prompt against the start on test."""

from __future__ import annotations

from typing import Any

from promptgym.data.dataset import Splits
from promptgym.evaluation import stats
from promptgym.evaluation.evaluator import EvalResult, Evaluator
from promptgym.runner.recorder import RunRecorder
from promptgym.tasks.prompt import Prompt
from promptgym.tasks.task import Task

Scores = dict[tuple[str, str], EvalResult]  # (prompt id, split) -> result


def evaluate_heldout(evaluator: Evaluator, task: Task, splits: Splits, recorder: RunRecorder, initial: Prompt,
                     best: Prompt, method_best: Prompt) -> Scores:
    """Test and train for the start and the returned prompt; test only for the method's own pick.
    Test first: the first call after final selection is then a test call, so a counter outside the
    process (a proxy that tells test calls by their inputs) sees where the budgeted calls end."""
    results: Scores = {}
    for prompt, splits_of in ((initial, ("test", "train")), (best, ("test", "train")), (method_best, ("test",))):
        for split in splits_of:
            examples = splits.train if split == "train" else splits.test
            if examples and (prompt.id, split) not in results:
                result = evaluator.run_task(task, prompt, examples, charge=False)
                recorder.score(prompt, "train-final" if split == "train" else split, result)
                results[(prompt.id, split)] = result
    return results


def fields_on_test(task: Task, initial: EvalResult | None, best: EvalResult | None) -> dict[str, Any]:
    """For a metric that scores an answer field by field (``json-schema``): each field's mean on
    test for the start and the returned prompt, ``{"field_scores": {"start": {...}, "returned":
    {...}}}``, read from the answers already scored; {} for any other metric or without a test split."""
    metric = task.metric
    while not hasattr(metric, "field_scores") and hasattr(metric, "base"):  # under a length penalty
        metric = metric.base
    if not hasattr(metric, "field_scores") or initial is None or best is None or not initial.examples:
        return {}
    return {"field_scores": {name: _field_means(metric, result) for name, result in
                             (("start", initial), ("returned", best))}}


def _field_means(metric: Any, result: EvalResult) -> dict[str, float]:
    per_example = [metric.field_scores(p, e) for p, e in zip(result.predictions, result.examples)]
    names = list(dict.fromkeys(name for fields in per_example for name in fields))
    return {name: sum(f.get(name, 0.0) for f in per_example) / len(per_example) for name in names}


def paired_on_test(initial: EvalResult | None, best: EvalResult | None, seed: int) -> dict[str, Any]:
    """The returned prompt against the start on test: delta, 95% paired interval, two-sided p."""
    if initial is None or best is None:
        return dict(test_delta=None, test_interval=None, test_p_value=None, test_share_better=None)
    if best.prompt.id == initial.prompt.id:
        return dict(test_delta=0.0, test_interval=[0.0, 0.0], test_p_value=1.0, test_share_better=None)
    c = stats.compare(initial.scores, best.scores, "two-sided", seed)
    return dict(test_delta=c.delta, test_interval=[c.low, c.high], test_p_value=c.p_value,
                test_share_better=stats.share_better(initial.scores, best.scores, seed))
