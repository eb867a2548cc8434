"""Final selection: the method's best candidates race the starting prompt on the dev split
(``evaluation.selection.run_race``: the fixed race, or the sequential one), charged to the run's budget under the ledger role ``select``; the
start is kept unless a finalist beats it. Each finalist's dev scores are stored as one row. A
judge's calls here have role ``select`` too: the role names the phase whose budget meter a call
draws on (``RunStore.charged_calls``), so a resumed search meets the same meter.

With ``--reasoning search`` the reasoning twins of the method's best and of the start (the same
prompt, answering after its reasoning) race too, as finalists like any other: whether the returned
prompt reasons is decided on dev evidence, and the race's record says how each mode did there."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

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
    reasoning: dict[str, Any] | None = None  # --reasoning search: direct against reasoning on dev


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
    parents = {"the method's best": found.method_best, "your prompt": initial}
    if found.method_best.id == initial.id:
        del parents["the method's best"]
    twins = reasoning_twins(plan.twins, parents, recorder)
    finalists += [twin for twin in twins.values() if twin.id not in {p.id for p in finalists}]
    raced: dict[str, list[EvalResult]] = {}
    selection = run_race(plan, initial, finalists, setup.splits.dev, race_scorer(selector, setup.task, raced),
                         seed=setup.config["seed"])
    for rounds in raced.values():  # one row per finalist: every dev example it was scored on
        recorder.score(rounds[0].prompt, SELECT_ROLE, EvalResult.joined(rounds))
    pairs = {of: (parents[of], twin) for of, twin in twins.items()}
    return Choice(selection.chosen, selection, direct_vs_reasoning(selection, pairs) if plan.twins else None)


TWIN_OPERATION = "reasoning-twin"


def reasoning_twins(count: int, parents: dict[str, Prompt], recorder: RunRecorder) -> dict[str, Prompt]:
    """The first ``count`` parents' reasoning twins (the same prompt with ``reasoning=True``), by
    whose twin each is; one already reasoning has none. Each is recorded as a candidate, the child
    of its parent (``TWIN_OPERATION``), so that lineage and the run page show where it came from."""
    twins: dict[str, Prompt] = {}
    for of, parent in list(parents.items())[:count]:
        if parent.reasoning:
            continue
        twin = replace(parent, reasoning=True)
        recorder.candidate(twin, [parent.id], TWIN_OPERATION)
        twins[of] = twin
    return twins


def direct_vs_reasoning(selection: Selection, pairs: dict[str, tuple[Prompt, Prompt]]) -> dict[str, Any]:
    """The race's evidence on the two modes: for your prompt and the method's best, each mode's dev
    score (on the dev examples it was scored on before it won or left the race), and which mode the
    returned prompt uses, with a sentence for the summary."""
    entrants = {e.prompt.id: e for e in selection.entrants}
    rows: list[dict[str, Any]] = []
    for of, (direct, reasoning) in pairs.items():
        for mode, prompt in (("direct", direct), ("reasoning", reasoning)):
            entrant = entrants.get(prompt.id)
            rows.append({"of": of, "mode": mode, "candidate_id": prompt.id,
                         "dev_score": entrant.dev_score if entrant else None,
                         "dev_n": len(entrant.scores) if entrant else 0})
    returned = "reasoning" if selection.chosen.reasoning else "direct"
    parts = []
    for of in pairs:
        shown = [f"{r['mode']} {r['dev_score']:.3f} on {r['dev_n']}" if r["dev_score"] is not None
                 else f"{r['mode']} not raced" for r in rows if r["of"] == of]
        parts.append(f"{of}: {', '.join(shown)}")
    how = "reasons before it answers" if returned == "reasoning" else "answers directly"
    sentence = f"direct vs reasoning on dev ({'; '.join(parts) or 'no twin raced'}); the returned prompt {how}"
    return {"returned": returned, "raced": rows, "sentence": sentence}


def race_scorer(selector: Evaluator, task: Task, raced: dict[str, list[EvalResult]]):
    """Final selection's scoring: charged, one call per example; each round's result is kept in
    ``raced`` (by prompt id) for the store, and handed to the race whole (scores and soft evidence)."""
    def score(prompt: Prompt, examples: list[Example]) -> EvalResult:
        result = selector.run_task(task, prompt, examples)
        raced.setdefault(prompt.id, []).append(result)
        return result
    return score

