"""How a choice task on a served model is scored when ``--scoring`` is not given: by the log-
probabilities of the first answer token (``models.first_token``) where the server returns them and
they tell the options apart, else by generating an answer that names an option, as before.

The start scores the first training example that way before the search, through an evaluator on the
run's ledger: charged to the search's budget (it is a call the server answered, and the search then
finds its answer in the cache for free, so an uncharged ask would be a call past ``--budget``),
cached and in the ledger, so a resumed run decides as the first attempt did (from the cache, or from
its ledger when the answer was unusable, since such an answer is never cached), without asking the
server again.
"""

from __future__ import annotations

import json

from promptgym.errors import PromptgymError, ScoringUnavailable
from promptgym.evaluation.cache import request_key
from promptgym.evaluation.evaluator import Evaluator
from promptgym.models.base import ScoreRequest
from promptgym.models.first_token import told_apart
from promptgym.runner.search import Ledger
from promptgym.runner.setup import Setup, initial_prompt
from promptgym.store.runs import RunStore
from promptgym.tasks.task import ChoiceTask

GENERATE = "choices are answered by generation and matched to an option"
SCORED = ("options scored by the log-probabilities of the served model's first answer token "
          "(--scoring generate to answer by generation instead)")


def choose_scoring(setup: Setup, store: RunStore, run_id: str, ledger: Ledger, recorded: set[str]) -> None:
    """For a choice task on a served model that may score options from its first answer token
    (``scores_first_token``), with ``--scoring`` not given: switch ``setup``'s task and start to
    log-probability scoring if the start's first training example says it works, and say which in
    ``setup.scoring_note`` either way (the run logs it and keeps it in ``stats["scoring"]``)."""
    task, config = setup.task, setup.config
    if config["scoring"] or not getattr(setup.task_backend, "scores_first_token", False) \
            or not isinstance(task, ChoiceTask) or task.scoring != "generate" or not setup.splits.train:
        return
    scored = ChoiceTask(normalize=task.normalize, scoring="logprob", max_tokens=task.max_tokens,
                        calibrate=bool(config.get("calibrate")))
    scored.metric = task.metric
    start = initial_prompt(config, setup.dataset, scored)
    request = scored.request(start, setup.splits.train[0])
    checker = Evaluator(setup.task_backend, setup.optimizer_backend, setup.cache, ledger=ledger, origin=run_id,
                        recorded=recorded)
    problem = why_not_scored(setup, store, run_id, checker, request)
    if problem is not None and scored.calibrate:
        raise PromptgymError(f"--calibrate needs choices scored by log-probability: {problem}")
    if problem is not None:
        setup.scoring_note = f"{problem}: {GENERATE}"
        return
    setup.task, setup.initial, setup.scoring_note = scored, start, SCORED


def why_not_scored(setup: Setup, store: RunStore, run_id: str, checker: Evaluator,
                   request: ScoreRequest) -> str | None:
    """Why the served model cannot score ``request``'s options by its first answer token (None: it
    can): an unusable answer of this run before (in its ledger as a failed call), no
    log-probabilities (``ScoringUnavailable``), or scores that do not tell the options apart."""
    key = request_key(setup.task_backend.identity, request)
    if any(row["key"] == key and row["faults"] and json.loads(row["faults"]).get("failed")
           for row in store.call_rows(run_id)):
        return "the served model gave no usable log-probabilities when this run asked at its start"
    try:
        (answer,) = checker.score([request], charge=True)
    except ScoringUnavailable as exc:
        return exc.reason
    return told_apart(answer.logprobs, answer.token_counts, request.continuations)
