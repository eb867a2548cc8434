"""The search: the method runs on the train (and its own dev) split under the budget less what
final selection keeps back, every call written to the run's ledger while this process holds the
run's lease. A choice task answered by generation first has its start answer a few training
examples, so that a model that never names an option stops the run before it spends the budget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from promptgym.data.dataset import Example
from promptgym.errors import PromptgymError
from promptgym.evaluation.evaluator import Budget, Evaluator
from promptgym.optimizers import Context
from promptgym.optimizers.stopping import Stop
from promptgym.runner.progress import RunStatus
from promptgym.runner.setup import Setup
from promptgym.store.lease import Lease, LeaseLost
from promptgym.runner.recorder import RunRecorder
from promptgym.store.runs import RunStore
from promptgym.tasks.prompt import Prompt
from promptgym.tasks.task import ChoiceTask, Task

ANSWER_CHECK_EXAMPLES = 10  # training examples the start answers before the search (generated choices)
ANSWER_CHECK_LEAST = 0.2  # share of those answers that must name an option, else the run stops

Ledger = Callable[..., None]  # ledger(rows, role=None): the run's calls, written under its lease


@dataclass
class Search:
    """What the search leaves: the evaluator it spent through, the method's context and its pick."""

    evaluator: Evaluator
    ctx: Context
    method_best: Prompt


def ledger_of(store: RunStore, run_id: str, lease: Lease | None) -> Ledger:
    """Writes a batch's calls to the run's ledger (with ``role``: final selection's), refusing once
    this process has lost the run's lease (e.g. it was stopped past it and the run taken over)."""
    token = lease.owner.token if lease is not None else None

    def ledger(rows: list[dict[str, Any]], role: str | None = None) -> None:
        if lease is not None and lease.lost:
            raise LeaseLost(store.lost_message(run_id))
        # add_calls re-checks the lease in its own transaction: the heartbeat may not have beaten yet
        store.add_calls(run_id, rows if role is None else [{**r, "role": role} for r in rows], token=token)

    return ledger


def method_dev(setup: Setup) -> list[Example]:
    """The dev split is final selection's, unless the method selects on a dev set itself (or the
    user asked for a dev split with selection off, as before final selection existed); a method
    sees at most its first ``plan.dev_size`` examples (the rest is the sequential race's pool)."""
    plan = setup.plan
    return setup.splits.dev[:plan.dev_size] if setup.optimizer.searches_on_dev or not plan.enabled else []


def search(setup: Setup, store: RunStore, run_id: str, recorder: RunRecorder, ledger: Ledger,
           recorded: set[str], status: RunStatus | None, log: Callable[[str], None]) -> Search:
    """Run the method. It meets the same meter on resume: the search's charged calls so far (final
    selection's are counted apart, ledger role ``select``)."""
    config, splits = setup.config, setup.splits
    limit = None if config["budget"] is None else config["budget"] - setup.plan.reserve
    budget = Budget(limit, spent=store.charged_calls(run_id, phase="search"))
    evaluator = Evaluator(setup.task_backend, setup.optimizer_backend, setup.cache, budget, ledger=ledger,
                          on_call=status.on_call if status else None, origin=run_id, recorded=recorded,
                          judge_model=setup.judge_backend)
    dev = method_dev(setup)
    unseen = [e.id for e in splits.test] + [e.id for e in splits.dev[len(dev):]]
    ctx = Context(task=setup.task, evaluator=evaluator, train=splits.train, dev=dev, initial=setup.initial,
                  seed=config["seed"], recorder=recorder, forbidden_ids=frozenset(unseen), log=log)
    if status:
        ctx.on_step = status.on_step
    recorder.candidate(setup.initial, [], "initial")
    if setup.scoring_note:
        ctx.stats["scoring"] = setup.scoring_note
    checked = answer_check(evaluator, setup.task, setup.initial, splits.train, log)
    if checked:
        ctx.stats["answer_check"] = checked
    method_best = setup.optimizer.run(ctx, stop=Stop.of(config.get("stop")))
    return Search(evaluator, ctx, method_best)


def answer_check(evaluator: Evaluator, task: Task, initial: Prompt, train: list[Example],
                 log: Callable[[str], None]) -> dict[str, Any] | None:
    """A choice task answered by generation: the start answers the first ``ANSWER_CHECK_EXAMPLES``
    training examples before the search, and a run in which fewer than ``ANSWER_CHECK_LEAST`` of the
    answers name an option stops there with one line, instead of spending its budget on scores of 0
    (a served model that answers in free text). The check is charged to the search's budget (as many
    examples as it has left): the search finds these answers in the cache for free, so uncharged
    they would be calls past ``--budget``. A start that reasons (``--reasoning on``) is checked the
    same way: its replies must end with an option. Returns the check's record
    (``stats["answer_check"]``), None when there is nothing to check."""
    if not (isinstance(task, ChoiceTask) and (task.scoring == "generate" or initial.reasoning)) or not train:
        return None
    n = int(min(ANSWER_CHECK_EXAMPLES, len(train), evaluator.budget.remaining))
    if n == 0:
        return None
    result = evaluator.run_task(task, initial, train[:n], charge=True)
    matched = sum(1 for p in result.predictions if p != "")
    share = matched / len(result.predictions)
    record = dict(examples=len(result.predictions), matched=matched, share=round(share, 3), layout=initial.layout.name)
    if share < ANSWER_CHECK_LEAST:
        sample = " ".join(str(getattr(result.responses[0], "text", "")).split())[:80]
        raise PromptgymError(
            f"the task model's answers name an option in {matched} of the first {len(result.predictions)} training "
            f"examples (the prompt shows the options, layout {initial.layout.name}; an answer: {sample!r}): the search "
            "would score every prompt about 0, so it was not started; use a model that follows the instruction, "
            + ("answer directly (--reasoning off)" if initial.reasoning else
               "score by log-probability (--scoring logprob, a backend that has it)")
            + " or change the prompt (--prompt)")
    log(f"answer check: {matched} of the first {len(result.predictions)} training answers name an option "
        f"(layout {initial.layout.name})")
    return record
