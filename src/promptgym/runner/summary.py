"""What a run hands back: ``RunSummary`` (the ``--json`` record and the result kept in the store)
and ``RunResult`` (the summary with the starting and the returned prompt as objects). Types only:
the runner fills them (``runner.summarize``), the API returns them, the CLI and reports read them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Iterator

from promptgym.tasks.prompt import Prompt


@dataclass
class RunSummary(Mapping):
    """A finished run's outcome: the JSON contract of ``--json`` (the README's field table) and the
    result kept in the store. Reads like the dict it replaced (``summary["best_score"]``); a
    method's own held-out numbers (``heldout_report``, e.g. ``dp2o``) are in ``extra`` and follow
    the fixed fields, never replacing one."""

    run_id: str
    method: str
    dataset: str
    initial_prompt: str
    best_prompt: str
    initial_score: float
    best_score: float
    test_initial: float | None
    test_best: float | None
    improved_on_test: bool
    llm_calls: int
    cached_calls: int
    budget: int | None
    budget_used: int
    prompt_tokens: int
    completion_tokens: int
    model_seconds: float
    seconds: float
    seed: int
    train_size: int
    test_size: int
    task_model: str
    optimizer_model: str
    candidates: int
    stats: dict[str, Any]
    best_prompt_full: dict[str, Any]  # layout, verbalizers and demos too; not in --json
    initial_prompt_full: dict[str, Any]
    # Final selection (None in runs stored before it existed): the dev split, the race's record,
    # and the held-out comparison of the returned prompt with the start.
    dev_size: int | None = None
    dev_initial: float | None = None
    dev_best: float | None = None
    kept_start: bool | None = None
    selection: dict[str, Any] | None = None
    method_best_prompt: str | None = None  # the method's own pick, before the guard
    test_method_best: float | None = None
    test_delta: float | None = None
    test_interval: list[float] | None = None  # 95% paired bootstrap interval of test_delta
    test_p_value: float | None = None  # two-sided paired test (exact McNemar for 0/1 metrics)
    verdict: str | None = None
    projection: dict[str, Any] | None = None  # what the run was projected to cost (promptgym.projection)
    # (fields added later come last: the --json order is a contract)
    # share of paired bootstrap resamples of test in which the returned prompt beats the start
    # (held-out evidence, not a posterior); None when the start was returned
    test_share_better: float | None = None
    # when the start was kept: the gain the race could have detected on its dev size, and what
    # would detect half of it (``selection.detectable``; its ``sentence`` in words)
    detectable: dict[str, Any] | None = None
    # contextual calibration of choice scores (--calibrate): how, the content-free inputs, and the
    # label prior of your prompt and of the returned one; None when scores were not calibrated
    calibration: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.extra = {k: v for k, v in self.extra.items() if k not in _SUMMARY_FIELDS}

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key) if key in _SUMMARY_FIELDS else self.extra[key]

    def __iter__(self) -> Iterator[str]:
        yield from _SUMMARY_FIELDS
        yield from self.extra

    def __len__(self) -> int:
        return len(_SUMMARY_FIELDS) + len(self.extra)

    def to_dict(self, full: bool = True) -> dict[str, Any]:
        """The JSON-able record; ``full=False`` is the ``--json`` line (without ``*_full``)."""
        return {k: v for k, v in self.items() if full or not k.endswith("_full")}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSummary:
        return cls(**{k: data.get(k) for k in _SUMMARY_FIELDS},
                   extra={k: v for k, v in data.items() if k not in _SUMMARY_FIELDS})


_SUMMARY_FIELDS = tuple(f.name for f in fields(RunSummary) if f.name != "extra")


@dataclass
class RunResult:
    run_id: str
    best_prompt: Prompt
    initial_prompt: Prompt
    summary: RunSummary

    def __getitem__(self, key: str) -> Any:
        return self.summary[key]
