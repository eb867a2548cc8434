"""``tasks.build.task_for``: the one task builder runs, exports, the env and the benchmarks share."""

from __future__ import annotations

from promptgym.data.dataset import Dataset, Example
from promptgym.tasks.build import task_for
from promptgym.tasks.code import CodeTask, CodeTestsMetric
from promptgym.tasks.metrics import ChoiceAccuracy, ExactMatch
from promptgym.tasks.rewards import LengthPenalty
from promptgym.tasks.task import ChoiceTask, GenerationTask

CHOICE = Dataset("d", [Example(id="e1", input="The soup was cold.", targets=("negative",),
                               choices=("positive", "negative"))])
FREE = Dataset("d", [Example(id="q1", input="What is 6*7?", targets=("42",))])


def test_the_natural_task_of_a_dataset():
    assert isinstance(task_for(CHOICE), ChoiceTask) and isinstance(task_for(CHOICE).metric, ChoiceAccuracy)
    assert task_for(CHOICE, normalize="mean", scoring="generate").normalize == "mean"
    assert task_for(CHOICE, scoring="generate").scoring == "generate"
    assert isinstance(task_for(FREE), GenerationTask) and isinstance(task_for(FREE).metric, ExactMatch)


def test_a_reward_on_a_choice_dataset_scores_the_chosen_option():
    """As a run builds it: the options stay options, the reward scores the one chosen (this builder
    once returned a GenerationTask here, unlike the runner's)."""
    task = task_for(CHOICE, metric=lambda prediction, example: 0.5)
    assert isinstance(task, ChoiceTask) and task.metric(prediction="negative", example=CHOICE.examples[0]) == 0.5


def test_a_code_reward_makes_a_code_task_also_under_a_length_penalty():
    assert isinstance(task_for(FREE, metric=CodeTestsMetric()), CodeTask)
    penalised = LengthPenalty(CodeTestsMetric(), 50)
    task = task_for(FREE, metric=penalised)
    assert isinstance(task, CodeTask) and task.metric is penalised
    assert type(task_for(FREE, metric=LengthPenalty(ExactMatch(), 5))) is GenerationTask
