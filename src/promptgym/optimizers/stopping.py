"""When a run stops: stoppers the base asks after every step of any method (as GEPA's stop
conditions), composed from ``Stop`` settings given to the API or the CLI.

The budget always applies: the Evaluator refuses the call past it and the base keeps the best
found so far (methods also size their plans to it, see ``budget``). It is not a stopper reading the
budget meter after a step: a resumed run starts with the meter at what the killed attempt spent
and replays for free, so such a stopper would fire at a different step. A method also ends on its
own (its planned steps are done, or its plan cannot pay for another step).
``ctx.stats["stopped_by"]`` says which ended a run: ``done``, ``budget``, ``max_steps``,
``patience``, ``target`` or ``wall_time``; ``ctx.stats["steps"]`` how many steps it took.

Every stopper but wall time decides from the run's own steps and scores, so a resumed run (which
replays its calls from the cache) stops at the same place. Wall time reads the clock: a run stopped
by it and resumed goes on to a different place (the replay is faster, so it gets further).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from promptgym.errors import PromptgymError


class Stopper:
    """Asked after every step: ``steps`` done so far and the method's best score so far."""

    name = ""

    def start(self, best: float | None) -> None:
        """Called once the method is set up, with its best score before the first step."""

    def __call__(self, steps: int, best: float | None) -> bool:
        raise NotImplementedError


class MaxSteps(Stopper):
    name = "max_steps"

    def __init__(self, steps: int):
        self.steps = steps

    def __call__(self, steps: int, best: float | None) -> bool:
        return steps >= self.steps


class Patience(Stopper):
    """``steps`` steps in a row without a new best (strictly higher than the best before them).
    Steps before the method has any score (e.g. DP2O's first stage) do not count."""

    name = "patience"

    def __init__(self, steps: int):
        self.steps = steps
        self.best = -math.inf
        self.since = 0

    def __call__(self, steps: int, best: float | None) -> bool:
        if best is None:
            return False
        if best > self.best:
            self.best, self.since = best, 0
        else:
            self.since += 1
        return self.since >= self.steps

    def start(self, best: float | None) -> None:
        self.best = -math.inf if best is None else best


class TargetScore(Stopper):
    name = "target"

    def __init__(self, score: float):
        self.score = score

    def __call__(self, steps: int, best: float | None) -> bool:
        return best is not None and best >= self.score


class WallTime(Stopper):
    """Seconds since the run started. Breaks replay: see the module docstring."""

    name = "wall_time"

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.started = time.monotonic()

    def __call__(self, steps: int, best: float | None) -> bool:
        return time.monotonic() - self.started >= self.seconds


@dataclass(frozen=True)
class Stop:
    """Stopping settings for any method; None leaves a stopper off (the default: a method runs its
    plan within the budget). ``max_seconds`` breaks resume-by-replay (see the module docstring)."""

    max_steps: int | None = None
    patience: int | None = None
    target: float | None = None
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        for name, least in (("max_steps", 1), ("patience", 1), ("max_seconds", 0)):
            value = getattr(self, name)
            if value is not None and not value >= least:
                raise PromptgymError(f"stop: {name} must be at least {least} (got {value})")

    @classmethod
    def of(cls, value: "Stop | Mapping[str, Any] | None") -> "Stop":
        """A Stop from a Stop, a mapping of its fields (unknown names are an error) or None."""
        if isinstance(value, Stop):
            return value
        given = dict(value or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise PromptgymError(f"stop: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**{k: v for k, v in given.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """The settings given (what a run's config stores, so a resumed run stops the same way)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def stoppers(self) -> list[Stopper]:
        """Fresh stoppers for one run (patience and wall time keep per-run state)."""
        out: list[Stopper] = []
        if self.max_steps is not None:
            out.append(MaxSteps(self.max_steps))
        if self.patience is not None:
            out.append(Patience(self.patience))
        if self.target is not None:
            out.append(TargetScore(self.target))
        if self.max_seconds is not None:
            out.append(WallTime(self.max_seconds))
        return out
