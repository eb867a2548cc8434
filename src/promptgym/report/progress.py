"""The live progress bar of a run's model calls against its budget."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator


@contextmanager
def call_progress(quiet: bool, limit: int | None, spent: int) -> Iterator[Callable[[bool, bool], None] | None]:
    """A rich progress bar of model calls against the budget; yields the Evaluator's ``on_call``
    hook, or None when quiet or stderr is not a TTY."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, transient=False) as progress:
        bar = progress.add_task("model calls", total=limit, completed=spent)
        counts = {"cached": 0, "heldout": 0}

        def on_call(cached: bool, charged: bool) -> None:
            if cached:
                counts["cached"] += 1
            elif not charged:
                counts["heldout"] += 1
            else:
                progress.advance(bar)
            progress.update(bar, description=f"model calls (cached {counts['cached']}, "
                                             f"held-out eval {counts['heldout']})")

        yield on_call
