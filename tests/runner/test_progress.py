"""The run's live status (``promptgym.runner.progress``) and the step hook that feeds it."""

from __future__ import annotations

import io

import pytest

from promptgym.optimizers import REGISTRY
from promptgym.runner.progress import PLAIN_EVERY, RunStatus, run_status

PROJECTION = {"calls": 200, "prompt_tokens": 9000, "completion_tokens": 1000}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("name", ["opro", "ape", "evoprompt-ga", "grips"])
def test_the_step_hook_fires_once_per_step_with_the_best_score(name, scripted_context):
    ctx = scripted_context(budget=150)
    seen: list[tuple[int, float | None]] = []
    ctx.on_step = lambda steps, best: seen.append((steps, best))
    optimizer = REGISTRY[name]()
    optimizer.run(ctx)
    assert [steps for steps, _ in seen] == list(range(1, ctx.stats["steps"] + 1))
    assert ctx.stats["steps"] >= 1
    best = optimizer.best_score(ctx, ctx.state)
    assert seen[-1][1] == optimizer.shown_score(ctx, ctx.state, best)
    bests = [best for _, best in seen if best is not None]
    assert all(0 <= b <= 1 for b in bests)  # the metric's scale, also for GRIPS (issue 27)
    if name != "grips":  # GRIPS shows its current prompt's accuracy (it accepts by its own score)
        assert bests == sorted(bests) and seen[-1][1] == best  # the best so far never falls


def test_off_a_terminal_a_plain_line_per_step_at_most_every_five_seconds():
    stream, clock = io.StringIO(), Clock()
    status = RunStatus(100, 0, PROJECTION, stream, live=False, clock=clock)
    with status.progress:
        for _ in range(3):
            status.on_call(False, True, 120)
        status.on_call(True, False, 0)
        status.on_step(1, 0.5)
        clock.now = 1.0
        status.on_step(2, 0.625)  # within 5 s of the last line: not printed
        clock.now = 1.0 + PLAIN_EVERY
        status.on_step(3, 0.75)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("promptgym: step 1 | best 0.500 | calls 3/100 | tokens 360/~10.0k | cached 1")
    assert "step 3 | best 0.750" in lines[1] and "ETA" in lines[1] and "elapsed" in lines[1]


def test_on_a_terminal_the_live_line_redraws_and_prints_no_plain_lines():
    stream = Terminal()
    with run_status(False, 100, 0, PROJECTION, stream=stream) as status:
        assert status is not None and status.live
        status.on_call(False, True, 50)
        status.on_step(1, 0.25)
        status.phase("final selection")
        status.progress.refresh()
    out = stream.getvalue()
    assert "promptgym: step" not in out
    assert "step 1, final selection | best 0.250 | calls 1/100 | tokens 50/~10.0k" in out


def test_quiet_shows_nothing():
    with run_status(True, 100, 0, PROJECTION, stream=io.StringIO()) as status:
        assert status is None


def test_held_out_calls_are_not_charged_but_count_toward_the_eta():
    status = RunStatus(100, 7, None, io.StringIO(), live=False)
    status.on_call(False, False, 10)
    assert status.charged == 7 and status.progress.tasks[0].completed == 8
    assert "calls 7/100 | tokens 10 |" in status.describe()
