"""A run from start to finish: search -> final selection -> held-out evaluation -> summary, under
the run's lease, with its projection printed first and its live status on stderr. ``start`` runs a
new run, ``take_over`` continues a stored one (resume is a replay: every call that completed before
is answered by the cache), ``dry_run`` only projects one."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Iterator

from promptgym.errors import PromptgymError
from promptgym.optimizers.stopping import Stop
from promptgym.projection import Projection, project
from promptgym.runner.backends import backend_for
from promptgym.runner.checks import check_optimizer_chat
from promptgym.runner.final_selection import select
from promptgym.runner.heldout import evaluate_heldout
from promptgym.runner.progress import run_status
from promptgym.runner.search import ledger_of, method_dev, search
from promptgym.runner.served_scoring import choose_scoring
from promptgym.runner.setup import Setup, make_optimizer, ready
from promptgym.runner.summarize import summarize
from promptgym.runner.summary import RunResult
from promptgym.store.lease import Lease, LeaseLost, Owner, lease_settings
from promptgym.runner.recorder import RunRecorder
from promptgym.store.runs import RunStore


def start(store: RunStore, setup: Setup, quiet: bool = False) -> RunResult:
    """A new run of a ready setup: its row (holding its lease), then the run."""
    config, owner = setup.config, Owner.me()
    run_id = store.create_run(config["method"], config["dataset"], config, owner=owner)
    with leased(store, run_id, owner) as lease, status_on_error(store, run_id, lease):
        return execute(setup, store, run_id, quiet=quiet, lease=lease)


def take_over(store: RunStore, run_id: str, setup: Setup, quiet: bool = False) -> RunResult | None:
    """Continue a stored run that no live process holds; None when it finished while we looked.
    One that another process is still running (its lease is live) is a one-line error."""
    owner = Owner.me()
    _, lease_seconds = lease_settings()
    holder = store.claim(run_id, owner, lease_seconds)
    if holder is not None:
        if holder["status"] == "finished":
            return None
        age = max(time.time() - (holder["heartbeat"] or 0), 0)
        raise PromptgymError(f"run {run_id} is being run by pid {holder['owner_pid']} on host {holder['owner_host']} "
                             f"(heartbeat {age:.0f} s ago); resume it once that process is gone "
                             f"(its lease lapses {lease_seconds:.0f} s after its last heartbeat)")
    with leased(store, run_id, owner) as lease, status_on_error(store, run_id, lease):
        return execute(setup, store, run_id, quiet=quiet, lease=lease)


def dry_run(store: RunStore, setup: Setup) -> Projection:
    """The run's projection, without a model call and without a run row."""
    setup.optimizer_backend = backend_for(setup.config["optimizer_model"])
    check_optimizer_chat(setup.optimizer_backend, setup.optimizer, setup.config)
    return project_run(store, setup)


def execute(setup: Setup, store: RunStore, run_id: str, quiet: bool = False, lease: Lease | None = None) -> RunResult:
    """The run's phases, each in its own module; the summary is stored only while this process
    still holds the run's lease."""
    if setup.optimizer_backend is None:
        ready(setup)
    log = (lambda m: None) if quiet else (lambda m: print(m, file=sys.stderr))
    recorder, ledger = RunRecorder(store, run_id), ledger_of(store, run_id, lease)
    # the run's own calls so far: a cached answer of this run with no row here lost it to a kill
    recorded = {r["key"] for r in store.call_rows(run_id) if not r["cached"]}
    choose_scoring(setup, store, run_id, ledger, recorded)  # a served model's choices: log-probs or generation
    projection = project_run(store, setup)
    for line in projection.lines():
        log(line)
    if setup.scoring_note:
        log(f"scoring: {setup.scoring_note}")
    with run_status(quiet, setup.config["budget"], store.charged_calls(run_id), projection.to_dict()) as status:
        found = search(setup, store, run_id, recorder, ledger, recorded, status, log)
        choice = select(setup, store, run_id, found, recorder, ledger, recorded, status)
        if status:
            status.phase("held-out test")
        results = evaluate_heldout(found.evaluator, setup.task, setup.splits, recorder, setup.initial, choice.best,
                                   found.method_best)
        extra = setup.optimizer.heldout_report(found.ctx, found.evaluator, setup.splits.test)  # the method's own
    summary = summarize(setup, store, run_id, found, choice, results, projection, extra)
    if not store.finish_run(run_id, choice.best.id, summary.best_score, summary.to_dict(),
                            token=lease.owner.token if lease is not None else None):
        raise LeaseLost(store.lost_message(run_id))  # everything came from the cache, yet too late
    return RunResult(run_id, choice.best, setup.initial, summary)


def project_run(store: RunStore, setup: Setup) -> Projection:
    """The run's projection: its search rehearsed by a fresh instance of its method (the run's own
    must start untouched) on the data the run will see; speeds and completion lengths from this
    store's past calls of the same models, and what its past runs of the method with these models
    spent of their projections."""
    config, plan, splits = setup.config, setup.plan, setup.splits
    limit = None if config["budget"] is None else config["budget"] - plan.reserve
    return project(make_optimizer(config), setup.task, splits.train, method_dev(setup),
                   splits.dev if plan.enabled else [], splits.test, setup.initial, seed=config["seed"],
                   search_limit=limit, budget=config["budget"], reserve=plan.reserve,
                   stop=Stop.of(config.get("stop")), task_backend=setup.task_backend,
                   optimizer_backend=setup.optimizer_backend,
                   history=store.timed_calls(config["task_model"], config["optimizer_model"]),
                   past_runs=[run["result"] for run in store.finished_runs(config["method"])
                              if (run["config"]["task_model"], run["config"]["optimizer_model"])
                              == (config["task_model"], config["optimizer_model"])])


@contextmanager
def leased(store: RunStore, run_id: str, owner: Owner) -> Iterator[Lease]:
    """Hold the run's lease (already written to its row) with a heartbeat while the body runs."""
    heartbeat, _ = lease_settings()
    lease = Lease(store, run_id, owner, heartbeat=heartbeat).start()
    try:
        yield lease
    finally:
        lease.release()


@contextmanager
def status_on_error(store: RunStore, run_id: str, lease: Lease) -> Iterator[None]:
    """A run that stops early says so in the store (a bad dataset path must not look 'running'),
    but only while this process still holds its lease, checked in the statement that writes: a
    process stopped past its lease whose run was resumed elsewhere (and maybe finished) leaves the
    status to the process that took it over."""
    try:
        yield
    except KeyboardInterrupt as exc:
        store.set_status(run_id, "interrupted", token=lease.owner.token)
        exc.run_id = run_id  # type: ignore[attr-defined]  # the CLI's message names it
        raise
    except LeaseLost:
        raise
    except Exception:
        store.set_status(run_id, "failed", token=lease.owner.token)
        raise
