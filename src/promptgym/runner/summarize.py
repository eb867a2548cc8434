"""The run's ``RunSummary`` from what its phases left (search, final selection, held-out scores, the
store's usage), with the result in words (``verdict``) and, when your prompt was kept, the gain dev
could have detected."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from promptgym.data.dataset import Dataset
from promptgym.evaluation.selection import Selection, SelectionPlan, detectable
from promptgym.projection import Projection
from promptgym.runner.final_selection import Choice
from promptgym.runner.heldout import Scores, fields_on_test, paired_on_test
from promptgym.runner.judge_check import reference_check
from promptgym.runner.search import Search
from promptgym.runner.setup import Setup
from promptgym.runner.summary import RunSummary
from promptgym.store.runs import RunStore
from promptgym.tasks.judge import RubricJudge, Verdict
from promptgym.tasks.prompt import Prompt
from promptgym.tasks.task import CONTENT_FREE_INPUTS, ChoiceTask, Task


def summarize(setup: Setup, store: RunStore, run_id: str, found: Search, choice: Choice, results: Scores,
              projection: Projection, extra: dict[str, Any] | None) -> RunSummary:
    config, splits, plan = setup.config, setup.splits, setup.plan
    initial, best, method_best, selection = setup.initial, choice.best, found.method_best, choice.selection
    scores = {key: result.mean for key, result in results.items()}
    test = paired_on_test(results.get((initial.id, "test")), results.get((best.id, "test")), config["seed"])
    extra = {**fields_on_test(setup.task, results.get((initial.id, "test")), results.get((best.id, "test"))),
             **(extra or {})}
    sel = selection.record() if selection else {}
    usage = store.usage(run_id)
    return RunSummary(
        run_id=run_id, method=config["method"], dataset=config["dataset"],
        initial_prompt=initial.instruction, best_prompt=best.instruction,
        initial_score=scores[(initial.id, "train")], best_score=scores[(best.id, "train")],
        test_initial=scores.get((initial.id, "test")), test_best=scores.get((best.id, "test")),
        improved_on_test=(scores.get((best.id, "test"), 0) > scores.get((initial.id, "test"), 0)),
        llm_calls=usage.calls, cached_calls=usage.cached_calls, budget=config["budget"],
        budget_used=store.charged_calls(run_id), prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens, model_seconds=round(usage.seconds, 3),
        seconds=round(time.perf_counter() - setup.started, 3), seed=config["seed"],
        train_size=len(splits.train), test_size=len(splits.test), task_model=setup.task_backend.identity,
        optimizer_model=setup.optimizer_backend.identity, candidates=len(store.candidates(run_id)),
        stats=found.ctx.stats, best_prompt_full=best.to_dict(), initial_prompt_full=initial.to_dict(),
        dev_size=sel.get("dev_size", len(splits.dev)), dev_initial=sel.get("dev_initial"), dev_best=sel.get("dev_best"),
        kept_start=sel.get("kept_start"),
        selection={**plan.record(), **sel, "calls": store.charged_calls(run_id, phase="select"),
                   **({"reasoning": choice.reasoning} if choice.reasoning else {})},
        method_best_prompt=method_best.instruction,
        test_method_best=scores.get((method_best.id, "test")),
        **test, detectable=detectable_gain(selection, plan, config, setup.dataset),
        verdict=verdict(plan, selection, test), projection=projection.to_dict(),
        calibration=calibration_record(setup.task, results, initial, best),
        answer_mode=answer_mode(setup.task, best),
        extra={**extra, **judge_record(setup, store, run_id, found.evaluator.verdicts, results, best)})


CALIBRATED = ("contextual calibration (Zhao et al., 2021): each option's probability divided by the prompt's "
              "prior for it (the mean class distribution of its content-free inputs), then renormalised")


def calibration_record(task: Task, results: Scores, initial: Prompt, best: Prompt) -> dict[str, Any] | None:
    """How the run's choice scores were calibrated and the priors of the start and the returned
    prompt (label -> probability), read from their held-out results; None when uncalibrated."""
    if not task.calibrate:
        return None

    def prior(prompt: Prompt) -> dict[str, float] | None:
        found = [r.prior for split in ("train", "test") if (r := results.get((prompt.id, split))) and r.prior]
        return found[0] if found else None

    return dict(method=CALIBRATED, content_free_inputs=list(CONTENT_FREE_INPUTS), prior_initial=prior(initial),
                prior_best=prior(best))


def judge_record(setup: Setup, store: RunStore, run_id: str, verdicts: dict[tuple[str, str], Verdict],
                 results: Scores, best: Prompt) -> dict[str, Any]:
    """``{"judge": ...}`` for a run scored by a judge, else {}: the judge model and rubric, how its
    verdicts went over the distinct answers it saw (``unparsed``: a reply with no score, scored 0;
    ``rubric_copies`` and ``empty``: scored 0 without a call; ``cut``: longer than the limit), its
    calls (role ``judge``: the search's and the held-out test's; final selection's are in
    ``selection.calls``) and ``reference_check``: the start and the returned prompt on test by a
    reference metric instead of the judge (``runner.judge_check``; None when off or without one)."""
    judge = setup.task.metric
    if not isinstance(judge, RubricJudge):
        return {}
    statuses = Counter(v.status for v in verdicts.values())
    usage = store.usage(run_id, role="judge")
    return {"judge": dict(
        model=setup.judge_backend.identity if setup.judge_backend else None, rubric=judge.source,
        rubric_sha256=judge.sha256, order=judge.order, scoring=judge.scoring, max_words=judge.max_words,
        answers=len(verdicts),
        unparsed=statuses["unparsed"], rubric_copies=statuses["rubric-copy"], empty=statuses["empty"],
        cut=sum(v.cut for v in verdicts.values()), calls=usage.calls, cached_calls=usage.cached_calls,
        reference_check=reference_check(setup.judge_check, results.get((setup.initial.id, "test")),
                                        results.get((best.id, "test")), setup.config["seed"]))}


def answer_mode(task: Task, best: Prompt) -> str | None:
    """How the returned prompt answers a choice task: ``reasoning`` (it reasons, then names an
    option) or ``direct``; None for other tasks."""
    if not isinstance(task, ChoiceTask):
        return None
    return "reasoning" if best.reasoning else "direct"


def detectable_gain(selection: Selection | None, plan: SelectionPlan, config: dict[str, Any],
                    dataset: Dataset) -> dict[str, Any] | None:
    """The kept start's "a gain under +X would not have been noticed" (``selection.detectable``),
    with what the data leaves for dev when the splits were sampled."""
    if selection is None:
        return None
    available = None if config.get("split_files") else len(dataset) - config["train_size"] - config["test_size"]
    return detectable(selection, plan, config["budget"], available)


def verdict(plan: SelectionPlan, selection: Selection | None, test: dict[str, Any]) -> str:
    """The result in words: kept your prompt / better / worse / not distinguishable."""
    if selection is not None and selection.kept_start:
        p = "" if selection.p_value is None else f" (p = {selection.p_value:.3g} on dev)"
        start, finished = selection.entrants[0], [e for e in selection.entrants[1:] if e.scores and e.dropped_after is None]
        best = max(finished, key=lambda e: e.mean, default=None)
        if best is not None and best.mean > start.mean:  # higher, but within what dev's noise allows
            return (f"kept your prompt: a candidate scored higher on the dev split ({best.mean:.3f} against "
                    f"{start.mean:.3f}) but not clearly better{p}")
        return f"kept your prompt: no candidate scored higher on the dev split{p}"
    prefix = "" if plan.enabled else f"final selection {plan.reason}; "
    if test["test_p_value"] is None:
        return prefix + "no test split: nothing held out to judge by"
    p, delta = test["test_p_value"], test["test_delta"]
    if p < 0.05:
        return prefix + f"{'better' if delta > 0 else 'worse'} than your prompt on test (p = {p:.3g})"
    return prefix + f"not distinguishable from your prompt on test (p = {p:.3g})"
