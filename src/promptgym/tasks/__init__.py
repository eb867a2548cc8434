"""Tasks: prompt candidates (instruction, layout, verbalizers, demos), answer parsing, metrics."""

from promptgym.tasks.metrics import CallableMetric, ChoiceAccuracy, ExactMatch
from promptgym.tasks.prompt import LAYOUTS, Layout, Prompt, get_layout
from promptgym.tasks.build import task_for
from promptgym.tasks.task import ChoiceTask, GenerationTask, Task

__all__ = ["CallableMetric", "ChoiceAccuracy", "ExactMatch", "LAYOUTS", "Layout", "Prompt",
           "get_layout", "ChoiceTask", "GenerationTask", "Task", "task_for"]
