"""Stoppers and the step-shaped base: what stops a run, what is recorded, and that a method's
state belongs to the run (one optimizer instance can run twice)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from promptgym.errors import PromptgymError
from promptgym.optimizers.base import Context, Optimizer, State
from promptgym.optimizers.params import Param
from promptgym.optimizers.stopping import MaxSteps, Patience, Stop, TargetScore, WallTime


def test_patience_counts_steps_without_a_strictly_higher_best():
    stopper = Patience(2)
    stopper.start(0.5)
    assert [stopper(i, b) for i, b in enumerate([0.5, 0.6, 0.6, 0.6], 1)] == [False, False, False, True]


def test_patience_ignores_steps_before_there_is_a_score():
    stopper = Patience(1)
    stopper.start(None)
    assert stopper(1, None) is False and stopper(2, 0.1) is False and stopper(3, 0.1) is True


def test_target_max_steps_and_wall_time():
    assert TargetScore(0.8)(1, 0.8) and not TargetScore(0.8)(1, 0.79) and not TargetScore(0.8)(1, None)
    assert MaxSteps(3)(3, None) and not MaxSteps(3)(2, None)
    assert WallTime(0)(1, None) and not WallTime(3600)(1, None)


def test_stop_settings_from_a_mapping_and_back():
    stop = Stop.of({"max_steps": 3, "target": None})
    assert stop == Stop(max_steps=3) and stop.to_dict() == {"max_steps": 3}
    assert Stop.of(None) == Stop() and Stop().stoppers() == []
    assert [s.name for s in Stop(1, 2, 0.5, 10).stoppers()] == ["max_steps", "patience", "target", "wall_time"]
    with pytest.raises(PromptgymError, match="unknown setting"):
        Stop.of({"max_step": 3})
    with pytest.raises(PromptgymError, match="max_steps"):
        Stop(max_steps=0)


@dataclass
class CountState(State):
    scores: list[float] | None = None
    i: int = 0


class Counting(Optimizer):
    """Scores its initial prompt, then 'finds' the scores of a fixed list, one per step."""

    name = "counting"
    parameters = {"scores": Param("0.1 0.2 0.2 0.2 0.5", "the score found at each step")}

    def setup(self, ctx: Context) -> CountState:
        return CountState(scores=[float(x) for x in self.params["scores"].split()])

    def step(self, ctx: Context, state: CountState) -> None:
        state.i += 1
        if state.i >= len(state.scores):
            state.finished = "done"

    def best_score(self, ctx: Context, state: CountState) -> float:
        return max(state.scores[: state.i + 1])


@pytest.mark.parametrize("stop, steps, stopped_by", [
    (None, 5, "done"), (Stop(max_steps=2), 2, "max_steps"), (Stop(patience=2), 3, "patience"),
    (Stop(target=0.2), 1, "target"), (Stop(max_seconds=0), 1, "wall_time"),
    (Stop(max_steps=1, target=0.2), 1, "max_steps"),  # both fire: the first named is recorded
])
def test_the_base_steps_until_a_stopper_fires_and_records_which(stop, steps, stopped_by, scripted_context):
    ctx = scripted_context()
    assert Counting().run(ctx, stop) == ctx.initial
    assert ctx.stats["steps"] == steps and ctx.stats["stopped_by"] == stopped_by


def test_one_instance_runs_twice_with_fresh_state(scripted_context):
    method = Counting()
    first, second = scripted_context(), scripted_context()
    method.run(first, Stop(max_steps=2))
    method.run(second)
    assert first.state is not second.state and first.state.i == 2 and second.state.i == 5
