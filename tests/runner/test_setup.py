"""``runner.setup``: a shipped example's own reward, brevity term and answer cap, and how the
run's own reward and length penalty replace them."""

from __future__ import annotations

from promptgym.data.loaders import load_dataset
from promptgym.runner.setup import metric_of, task_of
from promptgym.tasks.code import CodeTask
from promptgym.tasks.metrics import ExactMatch
from promptgym.tasks.rewards import LengthPenalty
from promptgym.tasks.task import GenerationTask
from promptgym.tasks.text_metrics import RougeL, TokenF1

SUMMARIES = load_dataset("example:summaries")


def _config(**given):
    return {"dataset": "example:summaries", **given}


def test_the_example_brings_its_reward_brevity_term_and_answer_cap():
    task = task_of(_config(), SUMMARIES, "generate")
    assert type(task) is GenerationTask and task.max_tokens == 64
    assert isinstance(task.metric, LengthPenalty) and isinstance(task.metric.base, RougeL)
    assert (task.metric.target_words, task.metric.weight) == (25, 0.5)


def test_the_runs_own_reward_replaces_the_examples_and_its_brevity_term():
    assert isinstance(metric_of(_config(reward="token-f1"), SUMMARIES, None), TokenF1)
    assert isinstance(metric_of(_config(), SUMMARIES, ExactMatch()), ExactMatch)
    penalised = metric_of(_config(length_penalty=[10, 0.3]), SUMMARIES, None)  # the example's reward, this penalty
    assert isinstance(penalised.base, RougeL) and (penalised.target_words, penalised.weight) == (10, 0.3)


def test_other_datasets_keep_the_task_defaults():
    task = task_of({"dataset": "example:python-functions"}, load_dataset("example:python-functions"), "generate")
    assert type(task) is CodeTask and task.max_tokens == CodeTask().max_tokens
    inline = task_of(_config(inline_dataset=True), SUMMARIES, "generate")  # an in-memory dataset of that name
    assert task_of({"dataset": "x.jsonl"}, SUMMARIES, "generate").max_tokens == GenerationTask().max_tokens
    assert isinstance(inline.metric, ExactMatch)
