"""The run store as an optimizer's Recorder (``optimizers.base.Recorder``'s interface): candidates,
scores and method artifacts of one run go straight into its records. It sits in the runner, above
both sides: the store sees plain records, never a Prompt or an EvalResult."""

from __future__ import annotations

from typing import Any

from promptgym.evaluation.evaluator import EvalResult
from promptgym.store.runs import RunStore
from promptgym.tasks.prompt import Prompt


class RunRecorder:
    def __init__(self, store: RunStore, run_id: str):
        self.store, self.run_id = store, run_id

    def candidate(self, prompt: Prompt, parents: list[str], operation: str) -> None:
        self.store.add_candidate(self.run_id, prompt.id, prompt.to_dict(), parents, operation)

    def score(self, prompt: Prompt, split: str, result: EvalResult) -> None:
        self.store.add_score(
            self.run_id, prompt.id, split, result.mean,
            {e.id: s for e, s in zip(result.examples, result.scores)},
            {e.id: p for e, p in zip(result.examples, result.predictions)},
            _by_example(result, result.probability), _by_example(result, result.margin))

    def put_artifact(self, name: str, data: Any) -> None:
        self.store.put_artifact(self.run_id, name, data)

    def get_artifact(self, name: str) -> Any | None:
        return self.store.get_artifact(self.run_id, name)


def _by_example(result: EvalResult, values: list[float | None]) -> dict[str, float | None] | None:
    """Example id -> value, or None when the result has no soft evidence at all (nothing stored)."""
    if len(values) != len(result.examples) or all(v is None for v in values):
        return None
    return {e.id: v for e, v in zip(result.examples, values)}
