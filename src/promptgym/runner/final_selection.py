"""Final selection: the method's best candidates race the starting prompt on the dev split
(``evaluation.selection.run_race``: the fixed race, or the sequential one), charged to the run's budget under the ledger role ``select``; the
start is kept unless a finalist beats it. Each finalist's dev scores are stored as one row. A
judge's calls here have role ``select`` too: the role names the phase whose budget meter a call
draws on (``RunStore.charged_calls``), so a resumed search meets the same meter."""

from __future__ import annotations

from dataclasses import dataclass

from promptgym.data.dataset import Example
from promptgym.evaluation.evaluator import Budget, EvalResult, Evaluator
from promptgym.evaluation.selection import Selection, run_race
from promptgym.runner.progress import RunStatus
from promptgym.runner.search import Ledger, Search
from promptgym.runner.setup import Setup
from promptgym.runner.recorder import RunRecorder
from promptgym.store.runs import SELECT_ROLE, RunStore
from promptgym.tasks.prompt import Prompt
from promptgym.tasks.task import Task


@dataclass
class Choice:
    """The prompt the run returns, and the race that chose it (None when selection was off)."""

    best: Prompt
    selection: Selection | None


def select(setup: Setup, store: RunStore, run_id: str, found: Search, recorder: RunRecorder, ledger: Ledger,
           recorded: set[str], status: RunStatus | None) -> Choice:
    """The returned prompt: the race's winner, or the method's own pick when selection is off."""
    plan, initial = setup.plan, setup.initial
    if not plan.enabled:
        return Choice(found.method_best, None)
    if status:
        status.phase("final selection")
    selector = Evaluator(setup.task_backend, setup.optimizer_backend, setup.cache,
                         Budget(setup.config["budget"], spent=store.charged_calls(run_id)),
                         ledger=lambda rows: ledger(rows, SELECT_ROLE),
                         on_call=status.on_call if status else None, origin=run_id, recorded=recorded,
                         judge_model=setup.judge_backend, verdicts=found.evaluator.verdicts)
    finalists = list({p.id: p for p in [found.method_best, *setup.optimizer.ranking(found.ctx, found.ctx.state)]
                      if p.id != initial.id}.values())[:plan.k]  # the method's best first
    raced: dict[str, list[EvalResult]] = {}
    selection = run_race(plan, initial, finalists, setup.splits.dev, race_scorer(selector, setup.task, raced),
                         seed=setup.config["seed"])
    for rounds in raced.values():  # one row per finalist: every dev example it was scored on
        recorder.score(rounds[0].prompt, SELECT_ROLE, EvalResult.joined(rounds))
    return Choice(selection.chosen, selection)


def race_scorer(selector: Evaluator, task: Task, raced: dict[str, list[EvalResult]]):
    """Final selection's scoring: charged, one call per example; each round's result is kept in
    ``raced`` (by prompt id) for the store, and handed to the race whole (scores and soft evidence)."""
    def score(prompt: Prompt, examples: list[Example]) -> EvalResult:
        result = selector.run_task(task, prompt, examples)
        raced.setdefault(prompt.id, []).append(result)
        return result
    return score

