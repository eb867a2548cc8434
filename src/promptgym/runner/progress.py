"""A run's live status on stderr: the method's step, its best score so far, model calls against the
budget, tokens against the projection, cached calls, elapsed time and an ETA.

On a terminal it is one rich line that redraws itself; elsewhere (CI, a pipe, a log file) a plain
line after a step, at most every ``every`` seconds, so logs show progress without flooding. The ETA
is rich's: the calls still to make (the projection's, see ``promptgym.projection``) at the rate of
the last 30 s. The runner feeds it through two hooks, the Evaluator's ``on_call`` and the Context's
``on_step``: methods never display anything themselves.
"""

from __future__ import annotations

import datetime
import sys
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from promptgym.projection import duration

PLAIN_EVERY = 5.0  # seconds between two plain lines at least
FIRST_ESTIMATE_CALLS = 8  # model calls timed before a first time estimate, when the projection has none


class RunStatus:
    """What the run has done so far, and its display. ``projection`` is the run's projection record
    (``Projection.to_dict()``) or None (no ETA, tokens without a target)."""

    def __init__(self, budget: int | None, spent: int, projection: dict[str, Any] | None, stream: TextIO,
                 live: bool, every: float = PLAIN_EVERY, clock: Callable[[], float] = time.monotonic):
        self.budget, self.charged, self.projection = budget, spent, projection
        self.stream, self.live, self.every, self.clock = stream, live, every, clock
        self.step: int | None = None
        self.best: float | None = None
        self.stage = "setting up"
        self.tokens = self.cached = 0
        self.started = clock()
        self._printed_at: float | None = None
        self.made = 0  # model calls made (not from the cache), charged or not
        self.first_estimate: float | None = None  # seconds still to go, said once after the first calls
        columns = [TextColumn("{task.description}", markup=False), BarColumn(bar_width=20), TimeElapsedColumn(),
                   TextColumn("ETA"), TimeRemainingColumn()]
        self.progress = Progress(*columns, console=Console(file=stream), transient=False, disable=not live)
        total = projection["calls"] if projection else budget
        self.bar = self.progress.add_task(self.describe(), total=total, completed=spent)

    # -- the hooks ------------------------------------------------------------------------------------
    def on_call(self, cached: bool, charged: bool, tokens: int = 0) -> None:
        """The Evaluator's hook: one language-model call answered (from the cache or the model)."""
        if cached:
            self.cached += 1
        else:
            self.charged += charged
            self.tokens += tokens
            self.made += 1
            self.progress.advance(self.bar)
            if self.made == FIRST_ESTIMATE_CALLS:
                self._estimate()
        self.progress.update(self.bar, description=self.describe())

    def _estimate(self) -> None:
        """A fresh machine (no timed calls: the projection has no time): once the first
        ``FIRST_ESTIMATE_CALLS`` calls are made, the time the run's other projected calls (search,
        final selection and the held-out test) take at their pace, said once."""
        if not self.projection or self.projection.get("seconds") is not None:
            return
        spent = self.clock() - self.started
        left = max(int(self.projection["calls"]) - self.made, 0)
        self.first_estimate = left * spent / self.made
        heldout = (self.projection.get("heldout") or {}).get("calls") or 0
        line = (f"promptgym: time: about {duration(self.first_estimate)} to go, a first estimate from the first "
                f"{self.made} calls ({spent / self.made:.2f} s each) for the {left} projected still "
                f"(the held-out test's {heldout} included)")
        if self.live:
            self.progress.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=self.stream, flush=True)

    def on_step(self, steps: int, best: float | None) -> None:
        """The Context's hook: the method finished step ``steps``; ``best`` is its best score so far."""
        self.step, self.best, self.stage = steps, best, "search"
        self.progress.update(self.bar, description=self.describe())
        if not self.live:
            now = self.clock()
            if self._printed_at is None or now - self._printed_at >= self.every:
                self._printed_at = now
                print(self.plain_line(), file=self.stream, flush=True)

    def phase(self, stage: str) -> None:
        """The runner moved on (``final selection``, ``held-out test``)."""
        self.stage = stage
        self.progress.update(self.bar, description=self.describe())

    # -- what is shown --------------------------------------------------------------------------------
    def describe(self) -> str:
        step = "" if self.step is None else f"step {self.step}"
        where = step if self.stage == "search" else (f"{step}, {self.stage}" if step else self.stage)
        best = "-" if self.best is None else f"{self.best:.3f}"
        budget = "no budget" if self.budget is None else str(self.budget)
        tokens = _k(self.tokens) + (f"/~{_k(self.projection['prompt_tokens'] + self.projection['completion_tokens'])}"
                                    if self.projection else "")
        return f"{where} | best {best} | calls {self.charged}/{budget} | tokens {tokens} | cached {self.cached}"

    def plain_line(self) -> str:
        task = self.progress.tasks[0]
        left = task.time_remaining
        eta = "?" if left is None else str(datetime.timedelta(seconds=int(left)))
        elapsed = str(datetime.timedelta(seconds=int(self.clock() - self.started)))
        return f"promptgym: {self.describe()} | {elapsed} elapsed, ETA {eta}"


@contextmanager
def run_status(quiet: bool, budget: int | None, spent: int, projection: dict[str, Any] | None,
               stream: TextIO | None = None) -> Iterator[RunStatus | None]:
    """The run's status display on ``stream`` (stderr): live on a terminal, plain lines otherwise;
    None when ``quiet``."""
    if quiet:
        yield None
        return
    stream = stream or sys.stderr
    status = RunStatus(budget, spent, projection, stream, live=stream.isatty())
    with status.progress:
        yield status


def _k(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)
