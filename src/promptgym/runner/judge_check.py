"""The held-out check of a judged run: the answers the start and the returned prompt already gave on
test, scored against the examples' references by a metric the search never optimized (ROUGE-L by
default), and compared pairwise. A search that optimizes against a judge can find what the judge
likes rather than what was meant (a prompt whose answers ignore the input, in one measured run);
the same judge scoring the held-out test cannot see that, a reference metric can. No model call:
the predictions are those of the held-out evaluation. The check never changes which prompt is
returned (selection never looks at test); a clearly worse reference score is reported instead."""

from __future__ import annotations

from typing import Any

from promptgym.errors import PromptgymError
from promptgym.evaluation import stats
from promptgym.evaluation.evaluator import EvalResult
from promptgym.tasks.judge import RubricJudge
from promptgym.tasks.metrics import Metric, RewardError
from promptgym.tasks.rewards import JUDGE_PREFIX, load_reward
from promptgym.tasks.task import Task

DEFAULT_JUDGE_CHECK = "rouge-l"
FALLBACK = "token-f1"  # needs no extra, for when rouge-score (the ``metrics`` extra) is missing
OFF = "none"


def judge_check_of(config: dict[str, Any], task: Task) -> tuple[str, Metric] | None:
    """The spec and metric of a judged run's reference check (``judge_check`` in the config, set to
    the default when not given, so the run stores it); None for a run not judged or
    ``judge_check="none"``. ROUGE-L without its package falls back to token F1; a spec that is not a
    metric of free text against references is one line."""
    if not isinstance(task.metric, RubricJudge):
        return None
    spec = str(config.setdefault("judge_check", DEFAULT_JUDGE_CHECK)).strip()
    if spec.lower() == OFF:
        return None
    if spec.lower().startswith(JUDGE_PREFIX):
        raise PromptgymError(f"--judge-check '{spec}': the check scores answers against the references without "
                             f"a model; use a metric such as {DEFAULT_JUDGE_CHECK} or token-f1, or none")
    try:
        metric = load_reward(spec)
    except RewardError:
        if spec.lower() != DEFAULT_JUDGE_CHECK:
            raise
        return FALLBACK, load_reward(FALLBACK)
    config["judge_check"] = getattr(metric, "spec", None) or spec  # a file's absolute path, for a resume
    return config["judge_check"], metric


def reference_check(check: tuple[str, Metric] | None, initial: EvalResult | None, best: EvalResult | None,
                    seed: int) -> dict[str, Any] | None:
    """The returned prompt against the start on test by the reference metric: their means, the
    delta with its 95% paired interval and two-sided p, and ``flagged`` when the returned prompt
    differs from the start and is clearly worse (the interval entirely below 0). None without a
    check, a test split, or references on every test example; a metric that fails on an example
    leaves its one line as ``error``."""
    if check is None or initial is None or best is None or not initial.examples:
        return None
    if not all(any(t.strip() for t in e.targets) for e in initial.examples):
        return None
    spec, metric = check
    try:
        start, returned = _scores(metric, initial), _scores(metric, best)
    except RewardError as exc:
        return dict(metric=spec, error=str(exc))
    c = stats.compare(start, returned, "two-sided", seed)
    return dict(metric=spec, start=c.mean_a, returned=c.mean_b, delta=c.delta, low=c.low, high=c.high,
                p_value=c.p_value, flagged=best.prompt.id != initial.prompt.id and c.high < 0)


def _scores(metric: Metric, result: EvalResult) -> list[float]:
    return [float(metric(prediction, example)) for prediction, example in zip(result.predictions, result.examples)]
