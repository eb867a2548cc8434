"""The Python API, with the same nouns as the CLI: ``optimize``, ``resume``, ``predict``, ``runs``,
``show`` and ``methods``.

A run: load data -> split (seeded) -> task -> evaluator (cache, budget, ledger) -> optimizer ->
held-out evaluation of the starting and the best prompt -> a ``RunSummary``, all recorded in the
run store. Resume is a replay: the run is executed again from its stored config and every model
call that completed before is answered by the cache.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator

from promptgym.data.dataset import Dataset, Example, Splits, split_dataset
from promptgym.data.loaders import load_dataset, load_split_files
from promptgym.errors import PromptgymError, ScoringUnavailable
from promptgym.evaluation.cache import ResponseCache, request_key
from promptgym.evaluation import stats
from promptgym.evaluation.evaluator import Budget, EvalResult, Evaluator
from promptgym.evaluation.selection import (DEFAULT_K, DEFAULT_LEVEL, DEFAULT_MARGIN, DEFAULT_STATISTIC, Selection,
                                            SelectionPlan, detectable, plan_selection, race)
from promptgym.models.base import Backend, ScoreRequest
from promptgym.models.factory import make_backend, redact_spec
from promptgym.models.first_token import told_apart
from promptgym.optimizers import REGISTRY, Context, Optimizer, get_method
from promptgym.optimizers.stopping import Stop
from promptgym.paths import default_cache_url, default_store_url
from promptgym.projection import Projection, project, token_counter
from promptgym.report.progress import run_status
from promptgym.store.db import without_password
from promptgym.store.lease import Lease, LeaseLost, Owner, lease_settings
from promptgym.store.recorder import RunRecorder
from promptgym.store.runs import SELECT_ROLE, RunStore
from promptgym.tasks.prompt import DEFAULT_LAYOUT, Prompt, get_layout, with_options
from promptgym.tasks.metrics import ChoiceAccuracy, ExactMatch, Metric
from promptgym.tasks.rewards import LengthPenalty, as_metric, load_reward, spec_of
from promptgym.tasks.task import ChoiceTask, GenerationTask, Task

NEUTRAL_CHOICE = "Read the input and choose the correct label."
NEUTRAL_GENERATION = "Read the input and give the correct answer."


@dataclass
class RunSummary(Mapping):
    """A finished run's outcome: the JSON contract of ``--json`` (the README's field table) and the
    result kept in the store. Reads like the dict it replaced (``summary["best_score"]``); a
    method's own held-out numbers (``heldout_report``, e.g. ``dp2o``) are in ``extra`` and follow
    the fixed fields, never replacing one."""

    run_id: str
    method: str
    dataset: str
    initial_prompt: str
    best_prompt: str
    initial_score: float
    best_score: float
    test_initial: float | None
    test_best: float | None
    improved_on_test: bool
    llm_calls: int
    cached_calls: int
    budget: int | None
    budget_used: int
    prompt_tokens: int
    completion_tokens: int
    model_seconds: float
    seconds: float
    seed: int
    train_size: int
    test_size: int
    task_model: str
    optimizer_model: str
    candidates: int
    stats: dict[str, Any]
    best_prompt_full: dict[str, Any]  # layout, verbalizers and demos too; not in --json
    initial_prompt_full: dict[str, Any]
    # Final selection (None in runs stored before it existed): the dev split, the race's record,
    # and the held-out comparison of the returned prompt with the start.
    dev_size: int | None = None
    dev_initial: float | None = None
    dev_best: float | None = None
    kept_start: bool | None = None
    selection: dict[str, Any] | None = None
    method_best_prompt: str | None = None  # the method's own pick, before the guard
    test_method_best: float | None = None
    test_delta: float | None = None
    test_interval: list[float] | None = None  # 95% paired bootstrap interval of test_delta
    test_p_value: float | None = None  # two-sided paired test (exact McNemar for 0/1 metrics)
    verdict: str | None = None
    projection: dict[str, Any] | None = None  # what the run was projected to cost (promptgym.projection)
    # (fields added later come last: the --json order is a contract)
    # share of paired bootstrap resamples of test in which the returned prompt beats the start
    # (held-out evidence, not a posterior); None when the start was returned
    test_share_better: float | None = None
    # when the start was kept: the gain the race could have detected on its dev size, and what
    # would detect half of it (``selection.detectable``; its ``sentence`` in words)
    detectable: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.extra = {k: v for k, v in self.extra.items() if k not in _SUMMARY_FIELDS}

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key) if key in _SUMMARY_FIELDS else self.extra[key]

    def __iter__(self) -> Iterator[str]:
        yield from _SUMMARY_FIELDS
        yield from self.extra

    def __len__(self) -> int:
        return len(_SUMMARY_FIELDS) + len(self.extra)

    def to_dict(self, full: bool = True) -> dict[str, Any]:
        """The JSON-able record; ``full=False`` is the ``--json`` line (without ``*_full``)."""
        return {k: v for k, v in self.items() if full or not k.endswith("_full")}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSummary:
        return cls(**{k: data.get(k) for k in _SUMMARY_FIELDS},
                   extra={k: v for k, v in data.items() if k not in _SUMMARY_FIELDS})


_SUMMARY_FIELDS = tuple(f.name for f in fields(RunSummary) if f.name != "extra")


@dataclass
class RunResult:
    run_id: str
    best_prompt: Prompt
    initial_prompt: Prompt
    summary: RunSummary

    def __getitem__(self, key: str) -> Any:
        return self.summary[key]


@dataclass
class RunDetails:
    """A stored run with its candidates (lineage) and every score, for ``show``."""

    run: dict[str, Any]
    candidates: list[dict[str, Any]]
    scores: list[dict[str, Any]]


def optimize(dataset: str | Dataset | None = None, method: str = "ape", budget: int | None = 300, seed: int = 0,
             prompt: str | None = None, train_size: int | None = None, test_size: int | None = None,
             dev_size: int | None = None,
             task_model: str = "embedded", optimizer_model: str = "embedded",
             layout: str = DEFAULT_LAYOUT, normalize: str = "none", scoring: str | None = None,
             params: dict[str, Any] | None = None, store_url: str | None = None,
             cache_url: str | None = None, quiet: bool = False,
             fields: dict[str, str] | None = None, stop: Stop | dict[str, Any] | None = None,
             select_k: int = DEFAULT_K, select_level: float = DEFAULT_LEVEL,
             select_statistic: str = DEFAULT_STATISTIC, select_margin: float = DEFAULT_MARGIN,
             reward: str | Metric | Callable[[str, Example], float] | None = None,
             length_penalty: tuple[int, float] | int | None = None,
             long_inputs: str = "error", train_file: str | None = None, dev_file: str | None = None,
             test_file: str | None = None, dry_run: bool = False) -> RunResult | Projection:
    """Optimize a prompt; returns the chosen prompt and the run's summary (also stored).

    ``dry_run=True`` returns the run's ``Projection`` (model calls, tokens, time; see
    ``promptgym.projection``) instead, without a model call and without creating a run. Before a
    real run the same projection is printed and kept in its summary.

    Progress goes to stderr as the CLI shows it (the projection, the parameters a method's plan cut to
    fit the budget, a live line with an ETA that covers the held-out test, and on a machine that has
    timed no call yet a first time estimate after the first calls); ``quiet=True`` prints nothing.

    Splits: seeded samples of ``dataset`` (``train_size`` default 30, ``test_size`` default 100),
    or exactly the rows of ``train_file`` (and ``dev_file``, ``test_file``: .jsonl/.csv, in the
    formats ``dataset`` takes), in order, when given (see ``_split_files``). Then ``dataset`` is
    optional and only supplies the task's own instruction and label set.

    Final selection: the method's top ``select_k`` candidates race the starting prompt on a dev
    split (``dev_size``; None chooses one the data and budget allow) and the start is kept unless
    a winner beats it by a paired test at ``select_level``; ``select_k=0`` or ``dev_size=0`` turn
    it off. The budget covers search and selection: selection's share is kept back up front.
    ``select_statistic`` says what the race tests: ``"accuracy"`` (the task's score, the default),
    or for a choice task scored by log-probability the right option's ``"probability"`` or its
    ``"margin"`` over the best wrong option (a signed-rank test, and the winner's dev accuracy may
    not be below the start's by more than ``select_margin``); see docs/selection.md.

    ``fields`` names the input / target / choices fields of a JSONL or CSV file
    (``{"input": "text", "target": "label"}``); by default common names are recognised.
    ``stop`` ends the search early, for any method: ``Stop(max_steps=, patience=, target=,
    max_seconds=)`` or a dict of those (see ``promptgym.optimizers.stopping``).

    ``reward`` scores each answer (``promptgym.tasks.rewards``): a spec (``"exact-match"``,
    ``"code-tests"``, ``"code-tests-all"``, ``"module:function"``, ``"path/file.py:function"``), a
    function ``reward(prediction, example) -> float`` or a metric object; by default the dataset's
    own (a shipped example's) or accuracy / exact match. ``length_penalty=(WORDS, WEIGHT)`` (or
    ``WORDS``, weight 0.5) takes up to WEIGHT off for answers longer than WORDS words. A reward
    given as an object that cannot be named by a spec (a lambda, a function in ``__main__``) is
    not stored: pass it again to ``resume``.

    ``long_inputs``: an example whose prompt does not fit the task model's context (when the
    backend tells its size) is an error naming the row (``"error"``, before anything is stored)
    or has its input cut to fit (``"truncate"``).

    A key written into a model URL (``openai:MODEL@http://user:KEY@host/v1``) is used in memory
    only: the run stores and prints ``user:***@host``; ``resume`` takes the key from
    ``OPENAI_API_KEY``."""
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
        raise PromptgymError(f"--budget must be a whole number of model calls, at least 1 (got {budget!r})")
    for name, value, least in (("train", train_size, 1), ("test", test_size, 0), ("dev", dev_size, 0)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise PromptgymError(f"--{name}-size must be a whole number, at least {least} (got {value!r})")
    if long_inputs not in LONG_INPUTS:
        raise PromptgymError(f"long_inputs '{long_inputs}': use one of {', '.join(LONG_INPUTS)}")
    if train_file is None:
        if dev_file is not None or test_file is not None:
            raise PromptgymError("--dev FILE and --test FILE need --train FILE (exact splits come from files together)")
        if dataset is None:
            raise PromptgymError("no data: give --dataset, or exact splits as files (--train FILE, "
                                 "optionally --dev FILE and --test FILE)")
        train_size = 30 if train_size is None else train_size
        test_size = 100 if test_size is None else test_size
    for spec in (task_model, optimizer_model):
        _LIVE_SPECS[redact_spec(spec)] = spec
    if cache_url:
        _LIVE_URLS[without_password(cache_url)] = cache_url
    config = dict(method=method, budget=budget, seed=seed, prompt=prompt, train_size=train_size,
                  test_size=test_size, dev_size=dev_size, task_model=redact_spec(task_model),
                  optimizer_model=redact_spec(optimizer_model), long_inputs=long_inputs,
                  layout=layout, normalize=normalize,
                  scoring=scoring, params=params or {}, fields=fields or {},
                  cache_url=without_password(cache_url) if cache_url else None,
                  stop=Stop.of(stop).to_dict(), select_k=select_k, select_level=select_level,
                  select_statistic=select_statistic, select_margin=select_margin)
    reward_obj = _reward_config(config, reward, length_penalty)
    get_method(method)(**(params or {}))  # fail fast on unknown method / parameters
    if train_file is not None:
        _split_files(config, dataset, train_file, dev_file, test_file)
    elif isinstance(dataset, Dataset):
        config["dataset"] = dataset.source or dataset.name
        config["inline_dataset"] = _dataset_to_json(dataset)
    else:
        config["dataset"] = dataset
    _selection_plan(config, available=None)  # and on a selection the budget cannot pay for
    prepared = _prepare(config, reward_obj)  # bad data fails here, before the store has a run row
    store = _store(store_url)
    if dry_run:
        optimizer_backend = _backend(config["optimizer_model"])
        optimizer = get_method(method)(**(params or {}))
        _check_optimizer_chat(optimizer_backend, optimizer, config)
        return _projection(store, config, prepared.plan, prepared.splits, prepared.task, prepared.task_backend,
                           optimizer_backend, _initial_prompt(config, prepared.dataset, prepared.task))
    _ready(config, prepared)  # a dead endpoint, cache or sandbox fails here too, before the run row
    owner = Owner.me()
    run_id = store.create_run(method, config["dataset"], config, owner=owner)
    with _leased(store, run_id, owner) as lease, _status_on_error(store, run_id, lease):
        return _execute(_setup(store, run_id, config, reward_obj, prepared), quiet=quiet, lease=lease)


def resume(run_id: str, store_url: str | None = None, quiet: bool = False,
           reward: Metric | Callable[[str, Example], float] | None = None) -> RunResult:
    """Continue a killed run: replay it; completed calls come from the cache, free. ``reward``:
    only for a run started with a reward object that has no spec (it is not stored).

    A run another process is still running (its lease is live, see ``promptgym.store.lease``) is
    refused; one whose process is gone (lease expired, or a dead pid on this host) is taken over."""
    store = _store(store_url)
    run = store.get_run(run_id)
    if run["status"] == "finished" and run["result"]:
        summary = RunSummary.from_dict(run["result"])
        return RunResult(run_id, Prompt.from_dict(summary.best_prompt_full),
                         Prompt.from_dict(summary.initial_prompt_full), summary)
    # What fails before the run can go on (its data, a dead endpoint, the cache, the sandbox) fails
    # here, before the run is claimed: it stays as it was (interrupted or failed), resumable later.
    config = run["config"]
    prepared = _prepare(config, as_metric(reward) if reward else None)
    _ready(config, prepared)
    owner = Owner.me()
    _, lease_seconds = lease_settings()
    holder = store.claim(run_id, owner, lease_seconds)
    if holder is not None:
        if holder["status"] == "finished":  # finished while we looked
            return resume(run_id, store_url=store_url, quiet=quiet, reward=reward)
        age = max(time.time() - (holder["heartbeat"] or 0), 0)
        raise PromptgymError(f"run {run_id} is being run by pid {holder['owner_pid']} on host {holder['owner_host']} "
                             f"(heartbeat {age:.0f} s ago); resume it once that process is gone "
                             f"(its lease lapses {lease_seconds:.0f} s after its last heartbeat)")
    with _leased(store, run_id, owner) as lease, _status_on_error(store, run_id, lease):
        return _execute(_setup(store, run_id, config, prepared=prepared), quiet=quiet, lease=lease)


def predict(run_id: str, inputs: list[str], store_url: str | None = None) -> list[dict[str, Any]]:
    """Answer new inputs with a finished run's result (per-input prompts for methods that store
    them, e.g. dp2o; the best prompt otherwise). Calls are cached and not charged to any budget."""
    store = _store(store_url)
    run = store.get_run(run_id)
    if run["status"] != "finished" or not run["result"]:
        raise PromptgymError(f"run '{run_id}' is {run['status']}: finish it first (promptgym resume {run_id})")
    unnamed = run["config"].get("reward_unnamed")  # nothing is scored here: any metric will do
    config = dict(run["config"], scoring=run["config"].get("scoring") or _scoring_used(store, run_id))
    setup = _setup(store, run_id, config, ExactMatch() if unnamed else None, check_lengths=False)
    task = setup.task
    labels = setup.dataset.labels if isinstance(task, ChoiceTask) else None
    if isinstance(task, ChoiceTask) and not labels:
        raise PromptgymError(f"run '{run_id}': the dataset's examples have different label sets")
    examples = [Example(f"predict-{i}", text, (labels[0] if labels else "",), labels)
                for i, text in enumerate(inputs)]  # the target is a placeholder: nothing is scored
    evaluator = Evaluator(setup.task_backend, setup.task_backend, setup.cache, Budget(None))
    ctx = Context(task=task, evaluator=evaluator, train=[],
                  initial=Prompt.from_dict(run["result"]["initial_prompt_full"]),
                  seed=run["config"]["seed"], recorder=setup.recorder)
    return setup.optimizer.predict(ctx, Prompt.from_dict(run["result"]["best_prompt_full"]), examples)


RUN_RESULT_FIELDS = ("test_initial", "test_best", "test_delta", "kept_start", "llm_calls")  # what runs() adds


def runs(store_url: str | None = None, method: str | None = None, dataset: str | None = None,
         status: str | None = None, since: float | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Stored runs, newest first: run_id, method, dataset, status, best_score, created (and the
    lease's owner_host, owner_pid, heartbeat), and from the summary of a finished run
    ``RUN_RESULT_FIELDS`` (None before it finishes). A ``running`` run whose process is gone (its
    lease expired) is listed as ``interrupted``. Filters: ``method`` (exact), ``dataset`` (a
    substring), ``status`` (as listed), ``since`` (a Unix time: created at or after), ``limit``
    (the newest N that pass)."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise PromptgymError(f"--limit must be a whole number, at least 1 (got {limit!r})")
    rows = _store(store_url).list_runs(lease=lease_settings()[1], method=method, dataset=dataset, since=since,
                                       with_result=True)
    out = []
    for row in rows:
        if status is not None and row["status"] != status:
            continue
        result = row.pop("result") or {}
        row.update({k: result.get(k) for k in RUN_RESULT_FIELDS})
        if row["test_delta"] is None and None not in (row["test_initial"], row["test_best"]):
            row["test_delta"] = row["test_best"] - row["test_initial"]  # a run stored before final selection
        out.append(row)
        if limit is not None and len(out) == limit:
            break
    return out


def show(run_id: str, store_url: str | None = None) -> RunDetails:
    """A stored run with its candidates and scores, whatever its status."""
    store = _store(store_url)
    return RunDetails(store.get_run(run_id), store.candidates(run_id), store.scores(run_id))


def report(run_id: str, out: str | Path | None = None, store_url: str | None = None) -> Path:
    """Write a run's HTML report (one self-contained file; no model call) and return its path;
    ``out`` defaults to ``promptgym-report-RUN_ID.html`` in the working directory."""
    from promptgym.report.html import write_run_report

    path = Path(out) if out is not None else Path(f"promptgym-report-{run_id}.html")
    try:
        return write_run_report(_store(store_url), run_id, path)
    except OSError as exc:
        raise PromptgymError(f"{path}: cannot write the report ({exc.strerror or exc})") from None


COMPARED_FIELDS = ("run_id", "method", "dataset", "task_model", "optimizer_model", "seed", "budget", "budget_used",
                   "llm_calls", "cached_calls", "prompt_tokens", "completion_tokens", "seconds", "initial_prompt",
                   "best_prompt", "train_size", "dev_size", "test_size", "initial_score", "best_score",
                   "dev_initial", "dev_best", "test_initial", "test_best", "test_delta", "test_interval",
                   "test_p_value", "kept_start", "verdict")


def compare(run_a: str, run_b: str, store_url: str | None = None) -> dict[str, Any]:
    """Two finished runs side by side (``a``, ``b``: their summaries' ``COMPARED_FIELDS``) and,
    when both scored their returned prompts on the same test examples, a paired comparison of
    those prompts (``paired``: B minus A, 95% paired bootstrap interval, paired p-value, as
    ``stats.compare`` gives them); otherwise ``paired`` is None and ``paired_note`` says why."""
    store = _store(store_url)
    sides, tests = [], []
    for run_id in (run_a, run_b):
        run = store.get_run(run_id)
        if run["status"] != "finished" or not run["result"]:
            raise PromptgymError(f"run '{run_id}' is {run['status']}: only finished runs can be compared "
                                 f"(finish it first: promptgym resume {run_id})")
        sides.append({k: run["result"].get(k) for k in COMPARED_FIELDS})
        rows = [r for r in store.scores(run_id)
                if r["candidate_id"] == run["best_candidate"] and r["split"] == "test"]
        tests.append(rows[-1]["per_example"] if rows else None)
    record: dict[str, Any] = {"a": sides[0], "b": sides[1], "paired": None, "paired_note": None}
    (a, b), (test_a, test_b) = sides, tests
    missing = [side["run_id"] for side, test in zip(sides, tests) if not test]
    if missing:
        record["paired_note"] = f"no paired comparison: no test scores for run {' and run '.join(missing)}"
    elif a["dataset"] != b["dataset"] or set(test_a) != set(test_b):
        shared = len(set(test_a) & set(test_b))
        record["paired_note"] = (f"no paired comparison: the test sets differ (A: {len(test_a)} examples of "
                                 f"{a['dataset']}, B: {len(test_b)} of {b['dataset']}, {shared} example ids in common)")
    else:
        ids = sorted(test_a)
        c = stats.compare([test_a[i] for i in ids], [test_b[i] for i in ids], "two-sided", seed=0)
        record["paired"] = c.as_dict()
    return record


def export(run_id: str, fmt: str = "json", store_url: str | None = None) -> str:
    """A finished run's returned prompt (``best_prompt_full``) ready to paste into code: ``json``
    (the prompt, label words, its template and how the model is asked), ``txt`` (the rendered
    prompt with ``{input}``) or ``python`` (a standalone snippet that builds the exact request)."""
    from promptgym.export import FORMATS, export_prompt

    if fmt not in FORMATS:
        raise PromptgymError(f"export format '{fmt}': use one of {', '.join(FORMATS)}")
    run = _store(store_url).get_run(run_id)
    if run["status"] != "finished" or not run["result"]:
        raise PromptgymError(f"run '{run_id}' is {run['status']}: only a finished run has a returned prompt "
                             f"(finish it first: promptgym resume {run_id})")
    config = run["config"]
    dataset = _dataset_from_config(config)
    scoring = config.get("scoring") or _scoring_used(_store(store_url), run_id)
    unnamed = ExactMatch() if config.get("reward_unnamed") else None  # nothing is scored here
    task = _make_task(dataset, config, scoring, unnamed)
    labels = list(dataset.labels) if isinstance(task, ChoiceTask) and dataset.labels else None
    return export_prompt(Prompt.from_dict(run["result"]["best_prompt_full"]), task, labels, fmt,
                         dict(run_id=run_id, method=run["method"], dataset=run["dataset"]))


def _scoring_used(store: RunStore, run_id: str) -> str:
    """How a run scored choices when it left it to the model (``--scoring`` not given): by
    generating if the task model generated (a served model may have been asked once for
    log-probabilities first, at the start), else by log-probability."""
    kinds = {(r["role"], r["kind"]) for r in store.call_rows(run_id)}
    return "generate" if ("task", "generate") in kinds or (SELECT_ROLE, "generate") in kinds else "logprob"


def methods() -> dict[str, str]:
    """The registered methods, name -> one-line summary."""
    return {name: REGISTRY[name].summary for name in sorted(REGISTRY)}


def method_parameters(method: str) -> list[dict[str, str]]:
    """A method's parameters as text: name, what it accepts, default, the paper's value ("-" when
    the paper gives none) and a one-line description."""
    return [dict(name=name, accepts=p.accepts(), default=p.default_value(), paper=p.paper_value(),
                 help=p.help) for name, p in get_method(method).parameters.items()]


@dataclass
class _Setup:
    """What optimize, resume and predict all build from a run's stored config."""

    store: RunStore
    run_id: str
    config: dict[str, Any]
    dataset: Dataset
    splits: Splits
    task_backend: Backend
    task: Task
    cache: ResponseCache
    optimizer: Optimizer
    recorder: RunRecorder
    plan: SelectionPlan
    started: float  # perf_counter before loading: a run's wall time includes its setup
    optimizer_backend: Backend | None = None  # checked by _ready; None: made (and checked) by _execute


LONG_INPUTS = ("error", "truncate")
_LIVE_SPECS: dict[str, str] = {}  # stored (redacted) model spec -> the one given, key and all: memory only
_LIVE_URLS: dict[str, str] = {}  # stored cache URL (no password) -> the one given: memory only


def _cache_url(config: dict[str, Any]) -> str:
    """The run's cache URL with its password: the one given in this process, else PROMPTGYM_CACHE if
    it names the same database, else the stored one (the password then comes from PGPASSWORD or
    ~/.pgpass); no cache URL in the config means the default cache."""
    stored = config.get("cache_url")
    if not stored:
        return default_cache_url()
    from_env = os.environ.get("PROMPTGYM_CACHE")
    if stored not in _LIVE_URLS and from_env and without_password(from_env) == stored:
        return from_env
    return _LIVE_URLS.get(stored, stored)


def _backend(spec: str) -> Backend:
    live = _LIVE_SPECS.get(spec, spec)
    return _fanned_out(live, make_backend(live))


def _fanned_out(spec: str, backend: Backend) -> Backend:
    """An HTTP model's batches spread over Ray tasks, when ``PROMPTGYM_RAY_FANOUT`` (a chunk size)
    is set and this process is part of a Ray job (a cell on ``--executor ray``); else ``backend``."""
    import os

    chunk = os.environ.get("PROMPTGYM_RAY_FANOUT", "").strip()
    if not chunk or not spec.startswith("openai:") or "ray" not in sys.modules:
        return backend
    import ray

    if not ray.is_initialized():
        return backend
    from promptgym.models.ray_fanout import RayFanOut

    try:
        size = int(chunk)
    except ValueError:
        raise PromptgymError(f"PROMPTGYM_RAY_FANOUT must be a chunk size, a whole number (got {chunk!r})") from None
    return RayFanOut(spec, backend, chunk=size)


@dataclass
class _Prepared:
    dataset: Dataset
    plan: SelectionPlan
    splits: Splits
    task_backend: Backend
    task: Task
    started: float
    optimizer_backend: Backend | None = None  # from here on set by _ready
    cache: ResponseCache | None = None


def _prepare(config: dict[str, Any], reward: Metric | None, check_lengths: bool = True) -> _Prepared:
    """Data, splits, task model and task from a run's config, every example checked: what can fail
    on the user's input fails here (one line naming the file, row or field)."""
    started = time.perf_counter()
    dataset = _dataset_from_config(config)
    plan = _selection_plan(config, available=len(dataset) - config["train_size"] - config["test_size"])
    if config.get("split_files"):  # exact splits: the stored rows are train, dev, test in order
        rows, n_train, n_dev = dataset.examples, config["train_size"], config["dev_size"]
        splits = Splits(train=rows[:n_train], dev=rows[n_train:n_train + n_dev], test=rows[n_train + n_dev:])
    else:
        splits = split_dataset(dataset, config["train_size"], config["test_size"], plan.dev_size, config["seed"])
    task_backend = _backend(config["task_model"])
    _check_chat(task_backend, config)
    scoring = config["scoring"] or ("logprob" if task_backend.supports_scoring else "generate")
    task = _make_task(dataset, config, scoring, reward)
    if plan.statistic != DEFAULT_STATISTIC and not (isinstance(task, ChoiceTask) and task.scoring == "logprob"):
        kind = "a choice task scored by generation" if isinstance(task, ChoiceTask) else "a generation task"
        raise PromptgymError(f"--select-statistic {plan.statistic} needs a choice task scored by log-probability "
                             f"(each option's probability); this run is {kind}: use --select-statistic accuracy")
    if check_lengths:
        splits = _fit_context(splits, task_backend, task, _initial_prompt(config, dataset, task),
                              config.get("long_inputs", "error"), dataset)
    return _Prepared(dataset, plan, splits, task_backend, task, started)


def _ready(config: dict[str, Any], prepared: _Prepared) -> None:
    """What a run needs besides its data, checked before a run row exists (and, on resume, before
    the run goes on), so that none of it leaves a ``failed`` run: the optimizer model loads and can
    chat, every HTTP endpoint answers (``_preflight``), the response cache opens, and a reward that
    runs the model's code finds a working sandbox. Until these moved here, each failed inside the
    run: a dead endpoint or an unreachable cache at its first call, a missing bubblewrap only after
    the first batch of model calls."""
    optimizer_backend = _backend(config["optimizer_model"])
    _check_optimizer_chat(optimizer_backend, get_method(config["method"])(**config["params"]), config)
    _preflight(prepared.task_backend, optimizer_backend)
    cache = ResponseCache(_cache_url(config))
    _check_sandbox(prepared.task)
    prepared.optimizer_backend, prepared.cache = optimizer_backend, cache


def _check_sandbox(task: Task) -> None:
    """A code reward runs the model's answers in the sandbox (``promptgym.sandbox``): start it once
    on a trivial test, so that a missing bwrap, or one that cannot make namespaces here, is its one
    line now (``SandboxUnavailable``) and not a failed run after the first answers were paid for."""
    from promptgym.tasks.code import CodeTask, CodeTestsMetric

    if not isinstance(task, CodeTask):
        return
    metric = task.metric
    while not isinstance(metric, CodeTestsMetric) and hasattr(metric, "base"):  # a length penalty's base
        metric = metric.base
    if isinstance(metric, CodeTestsMetric):
        from promptgym.sandbox import run_tests

        run_tests("", ["assert True"], metric.limits, python=metric.python)


def _check_chat(task_backend: Backend, config: dict[str, Any]) -> None:
    """A task model without a chat template (a base model: ``gemma3-270m``) takes raw text only:
    a chat layout, or a method that switches to one (GRIPS's format edits), fails here, before a
    run is stored, instead of at the first model call."""
    if getattr(task_backend, "chat_template", True):
        return
    model = config["task_model"]
    if get_layout(config["layout"]).chat:
        raise PromptgymError(f"task model '{model}' has no chat template (a base model): use --layout plain")
    if getattr(get_method(config["method"])(**config["params"]), "edits_layout", False):
        raise PromptgymError(f"task model '{model}' has no chat template (a base model), and {config['method']}'s "
                             "format edits switch to chat layouts: pass --param format_edits=false")


def _check_optimizer_chat(backend: Backend, optimizer: Optimizer, config: dict[str, Any]) -> None:
    """Methods write prompts by chatting with the optimizer model: a model without a chat template
    cannot (one line before any call; GRIPS without ``sub`` edits never asks it)."""
    if not getattr(backend, "chat_template", True) and getattr(optimizer, "uses_optimizer_model", True):
        raise PromptgymError(f"optimizer model '{config['optimizer_model']}' has no chat template (a base model), "
                             "so it cannot write prompts as an optimizer model: choose a chat model "
                             "(e.g. --optimizer-model embedded)")


def _initial_prompt(config: dict[str, Any], dataset: Dataset, task: Task) -> Prompt:
    """The start: the user's prompt (or the dataset's, or a neutral one) in the run's layout; for a
    choice task answered by generation, with the options line added where the layout has none
    (``chat`` becomes ``chat-options``): the model must see the label words to answer with one."""
    instruction = config["prompt"] or dataset.description or (
        NEUTRAL_CHOICE if isinstance(task, ChoiceTask) else NEUTRAL_GENERATION)
    layout = get_layout(config["layout"])
    if isinstance(task, ChoiceTask) and task.scoring == "generate":
        layout = with_options(layout)
    return Prompt(instruction=instruction, layout=layout)


def _served_scoring(setup: _Setup, checker: Evaluator) -> tuple[Task, str | None]:
    """``--scoring`` not given, a choice task and a served task model that may score options from
    the first answer token (``scores_first_token``): the start scores the first training example
    that way (``checker``: not charged; cached and in the ledger, so the search finds it). If the
    server gave log-probabilities that tell the options apart, the run scores by log-probability;
    else it answers by generation, as before. Returns the task and the line the run logs (and keeps
    in ``stats["scoring"]``)."""
    task, config = setup.task, setup.config
    if config["scoring"] or not getattr(setup.task_backend, "scores_first_token", False) \
            or not isinstance(task, ChoiceTask) or task.scoring != "generate" or not setup.splits.train:
        return task, None
    scored = ChoiceTask(normalize=task.normalize, scoring="logprob", max_tokens=task.max_tokens)
    scored.metric = task.metric
    request = scored.request(_initial_prompt(config, setup.dataset, scored), setup.splits.train[0])
    problem = _why_not_scored(setup, checker, request)
    if problem is not None:
        return task, f"{problem}: choices are answered by generation and matched to an option"
    return scored, ("options scored by the log-probabilities of the served model's first answer token "
                    "(--scoring generate to answer by generation instead)")


def _why_not_scored(setup: _Setup, checker: Evaluator, request: ScoreRequest) -> str | None:
    """Why the served model cannot score ``request``'s options by its first answer token (None: it
    can). A resumed run decides as before: a usable answer is in the cache, an unusable one (never
    cached) in its ledger as a failed call."""
    key = request_key(setup.task_backend.identity, request)
    if any(row["key"] == key and row["faults"] and json.loads(row["faults"]).get("failed")
           for row in setup.store.call_rows(setup.run_id)):
        return "the served model gave no usable log-probabilities when this run asked at its start"
    try:
        (answer,) = checker.score([request], charge=False)
    except ScoringUnavailable as exc:
        return exc.reason
    return told_apart(answer.logprobs, answer.token_counts, request.continuations)


ANSWER_CHECK_EXAMPLES = 10  # training examples the start answers before the search (generated choices)
ANSWER_CHECK_LEAST = 0.2  # share of those answers that must name an option, else the run stops


def _answer_check(evaluator: Evaluator, task: Task, initial: Prompt, train: list[Example],
                  log: Callable[[str], None]) -> dict[str, Any] | None:
    """A choice task answered by generation: the start answers the first ``ANSWER_CHECK_EXAMPLES``
    training examples (not charged; the search finds them in the cache) before the search, and a
    run in which fewer than ``ANSWER_CHECK_LEAST`` of the answers name an option stops there with
    one line, instead of spending its budget on scores of 0 (a served model that answers in free
    text). Returns the check's record (``stats["answer_check"]``), None when there is nothing to check."""
    if not (isinstance(task, ChoiceTask) and task.scoring == "generate") or not train:
        return None
    result = evaluator.run_task(task, initial, train[:ANSWER_CHECK_EXAMPLES], charge=False)
    matched = sum(1 for p in result.predictions if p != "")
    share = matched / len(result.predictions)
    record = dict(examples=len(result.predictions), matched=matched, share=round(share, 3), layout=initial.layout.name)
    if share < ANSWER_CHECK_LEAST:
        sample = " ".join(str(getattr(result.responses[0], "text", "")).split())[:80]
        raise PromptgymError(
            f"the task model's answers name an option in {matched} of the first {len(result.predictions)} training "
            f"examples (the prompt shows the options, layout {initial.layout.name}; an answer: {sample!r}): the search "
            "would score every prompt about 0, so it was not started; use a model that follows the instruction, "
            "score by log-probability (--scoring logprob, a backend that has it) or change the prompt (--prompt)")
    log(f"answer check: {matched} of the first {len(result.predictions)} training answers name an option "
        f"(layout {initial.layout.name})")
    return record


def _request_tokens(backend: Backend, task: Task, prompt: Prompt, example: Example) -> int:
    """The tokens one example's request takes with ``prompt``: what the backend really sends (the
    embedded model: its own chat template, system block included, and tokenizer, as
    ``projection.token_counter`` counts it; else ``count_tokens`` and a rough chat overhead) and
    room for the answer (the longest option, or the generation limit)."""
    request = task.request(prompt, example)
    if isinstance(request, ScoreRequest):
        answer = max((backend.count_tokens(c) for c in request.continuations), default=0)
    else:
        answer = request.max_tokens
    return token_counter(backend)(request) + answer


CANDIDATE_ROOM = 1 / 8  # of the task model's context, kept free of a row for the prompts a method writes


def _fit_context(splits: Splits, backend: Backend, task: Task, prompt: Prompt, mode: str,
                 dataset: Dataset) -> Splits:
    """Every example must fit the task model's context with the starting prompt and room to spare
    (checked only when the backend tells ``context_limit`` and ``count_tokens``): else an error
    naming the row, or (``truncate``) its input cut until it fits. The room, ``CANDIDATE_ROOM`` of
    the context (256 of SmolLM2's 2048 tokens), is for the candidates a method writes: longer than
    the start (an instruction of up to 80 words, a generated demonstration), they are sent with the
    same rows during the search, final selection and the held-out test, and a row that fitted only
    the start overflowed there and ended the run. (What a method shows of a row inside its
    meta-prompts is cut apart: ``Context.shown``.)"""
    limit = getattr(backend, "context_limit", None)
    if not limit or not hasattr(backend, "count_tokens"):
        return splits
    room = int(limit * CANDIDATE_ROOM)
    fits = limit - room

    def fit(example: Example) -> Example:
        need = _request_tokens(backend, task, prompt, example)
        if need <= fits:
            return example
        where = example.where or f"{dataset.source or dataset.name}: example {example.id}"
        if mode != "truncate":
            raise PromptgymError(f"{where}: the prompt takes about {need} tokens, more than the {fits} a row may take "
                                 f"of the task model's context of {limit} ({room} are kept for the longer prompts a "
                                 "method writes; shorten the input, or pass --long-inputs truncate)")
        text = example.input
        while text:
            keep = max(0, min(len(text) - 1, int(len(text) * fits / need) - 1))
            text = text[:keep]
            candidate = Example(example.id, text, example.targets, example.choices, where=example.where)
            need = _request_tokens(backend, task, prompt, candidate)
            if need <= fits:
                return candidate
        raise PromptgymError(f"{where}: the prompt does not fit the {fits} tokens a row may take of the task model's "
                             f"context of {limit} even with the input cut to nothing (shorten the instruction or "
                             "the options)")

    return Splits(train=[fit(e) for e in splits.train], dev=[fit(e) for e in splits.dev],
                  test=[fit(e) for e in splits.test])


def _setup(store: RunStore, run_id: str, config: dict[str, Any], reward: Metric | None = None,
           prepared: _Prepared | None = None, check_lengths: bool = True) -> _Setup:
    p = prepared or _prepare(config, reward, check_lengths)
    dataset, plan, splits, task_backend, started = p.dataset, p.plan, p.splits, p.task_backend, p.started
    return _Setup(store=store, run_id=run_id, config=config, dataset=dataset, splits=splits,
                  task_backend=task_backend,
                  task=p.task,
                  cache=p.cache or ResponseCache(_cache_url(config)),
                  optimizer_backend=p.optimizer_backend,
                  optimizer=get_method(config["method"])(**config["params"]),
                  recorder=RunRecorder(store, run_id), plan=plan, started=started)


def _reward_config(config: dict[str, Any], reward: Any, length_penalty: Any) -> Metric | None:
    """Check the reward up front and store it in ``config`` as a spec (``reward``) and the length
    penalty as ``[words, weight]``; returns the live object when it has no spec (kept in memory
    for this run only, ``reward_unnamed`` in the config)."""
    if isinstance(reward, LengthPenalty):
        if length_penalty is not None:
            raise PromptgymError("reward: give the length penalty once (the reward already has one)")
        length_penalty = (reward.target_words, reward.weight)
        reward = reward.base
    live: Metric | None = None
    if isinstance(reward, str):
        config["reward"] = spec_of(load_reward(reward))  # fails fast on a bad spec
    elif reward is not None:
        live = as_metric(reward)
        config["reward"] = spec_of(live)
        if config["reward"] is None:
            config["reward_unnamed"] = live.name
    if length_penalty is not None:
        words, weight = (length_penalty, None) if isinstance(length_penalty, int) else tuple(length_penalty)
        probe = LengthPenalty(ExactMatch(), words, 0.5 if weight is None else weight)  # validates
        config["length_penalty"] = [probe.target_words, probe.weight]
    return live if config.get("reward_unnamed") else None


def _make_task(dataset: Dataset, config: dict[str, Any], scoring: str, reward: Metric | None) -> Task:
    """The task and its metric: the run's reward (or the dataset's default), then any length
    penalty; a code reward makes a CodeTask (longer answers, no stop at blank lines)."""
    from promptgym.tasks.code import CodeTask, CodeTestsMetric

    if reward is None and config.get("reward_unnamed"):
        raise PromptgymError(f"this run was scored by a reward with no spec ({config['reward_unnamed']}): "
                             "pass it again, promptgym.resume(run_id, reward=...)")
    spec = config.get("reward") or _dataset_reward(config)
    metric = reward or (load_reward(spec) if spec else None)
    base = metric
    if config.get("length_penalty"):
        words, weight = config["length_penalty"]
        metric = LengthPenalty(metric or (ChoiceAccuracy() if dataset.is_choice else ExactMatch()), words, weight)
    if isinstance(base, CodeTestsMetric):
        return CodeTask(metric=metric)
    if dataset.is_choice:
        task = ChoiceTask(normalize=config["normalize"], scoring=scoring)
        if metric is not None:
            task.metric = metric
        return task
    return GenerationTask(metric=metric)


def _dataset_reward(config: dict[str, Any]) -> str | None:
    """A shipped example's own reward (its ``.meta.json``), e.g. code-tests."""
    name = str(config.get("dataset") or "")
    if name.startswith("example:") and not config.get("inline_dataset"):
        from promptgym.data.examples import example_meta

        return example_meta(name.split(":", 1)[1]).get("reward")
    return None


def _selection_plan(config: dict[str, Any], available: int | None) -> SelectionPlan:
    """The run's final-selection plan (``available`` None: before the data is loaded, only the
    user's own choices are checked). Runs stored before final selection existed have no
    ``select_k`` and replay without it. Exact splits without a dev file: off, and it says why."""
    files = config.get("split_files")
    if files and not files.get("dev") and config.get("select_k", 0):
        return SelectionPlan(0, config["select_k"], config.get("select_level", DEFAULT_LEVEL), 0,
                             "off (no --dev file): the method's best is returned unguarded",
                             config.get("select_statistic", DEFAULT_STATISTIC),
                             config.get("select_margin", DEFAULT_MARGIN))
    try:
        return plan_selection(available if available is not None else 10**9, config["budget"],
                              config["dev_size"], config.get("select_k", 0),
                              config.get("select_level", DEFAULT_LEVEL),
                              config.get("select_statistic", DEFAULT_STATISTIC),
                              config.get("select_margin", DEFAULT_MARGIN))
    except ValueError as exc:
        raise PromptgymError(str(exc)) from None


def _store(url: str | None) -> RunStore:
    return RunStore(url or default_store_url())


def _dataset_to_json(dataset: Dataset) -> dict[str, Any]:
    return dict(name=dataset.name, description=dataset.description, source=dataset.source,
                examples=[dict(id=e.id, input=e.input, targets=list(e.targets),
                               choices=list(e.choices) if e.choices else None, where=e.where)
                          for e in dataset.examples])


def _split_files(config: dict[str, Any], dataset: str | Dataset | None, train: str, dev: str | None,
                 test: str | None) -> None:
    """Exact splits (``--train/--dev/--test FILE``) into ``config``: the rows inline (train, dev,
    test in order, as ``inline_dataset``; a resume never rereads the files, so an edited file
    cannot change a run) and the split sizes the files give. A size the user also gave must agree
    with its file. ``dataset``, if given, supplies only the task's instruction and label set."""
    given = {name: config[f"{name}_size"] for name in ("train", "dev", "test")}
    source: Dataset | None = None
    if isinstance(dataset, Dataset):
        source = dataset
    elif dataset is not None:
        source = _dataset_from_config({"dataset": dataset, "fields": config["fields"]})
    fields = config["fields"]
    splits = load_split_files(train, dev, test, input_field=fields.get("input"), target_field=fields.get("target"),
                              choices_field=fields.get("choices"), labels=source.labels if source else None,
                              labels_from=(source.source or source.name) if source else "")
    for name, path, rows in (("train", train, splits.train), ("dev", dev, splits.dev), ("test", test, splits.test)):
        if given[name] is None or given[name] == len(rows):
            continue
        if path is None:
            raise PromptgymError(f"--{name}-size {given[name]} needs a {name} split: give --{name} FILE "
                                 "(with --train FILE the splits are the files' rows)")
        raise PromptgymError(f"--{name}-size {given[name]} conflicts with --{name} {path} ({len(rows)} rows): "
                             f"the splits are the files' rows; leave --{name}-size out")
    config.update(train_size=len(splits.train), dev_size=len(splits.dev), test_size=len(splits.test),
                  split_files=dict(train=train, dev=dev, test=test))
    name = dataset if isinstance(dataset, str) else (source.source or source.name) if source else train
    config["dataset"] = name
    config["inline_dataset"] = _dataset_to_json(Dataset(
        name=source.name if source else Path(train).stem, description=source.description if source else None,
        source=train, examples=[*splits.train, *splits.dev, *splits.test]))


def _dataset_from_config(config: dict[str, Any]) -> Dataset:
    inline = config.get("inline_dataset")
    if inline:
        return Dataset(name=inline["name"], description=inline["description"], source=inline["source"],
                       examples=[Example(e["id"], e["input"], tuple(e["targets"]),
                                         tuple(e["choices"]) if e["choices"] else None, where=e.get("where", ""))
                                 for e in inline["examples"]])
    fields = config.get("fields") or {}
    return load_dataset(config["dataset"], input_field=fields.get("input"),
                        target_field=fields.get("target"), choices_field=fields.get("choices"))


@contextmanager
def _leased(store: RunStore, run_id: str, owner: Owner) -> Iterator[Lease]:
    """Hold the run's lease (already written to its row) with a heartbeat while the body runs."""
    heartbeat, _ = lease_settings()
    lease = Lease(store, run_id, owner, heartbeat=heartbeat).start()
    try:
        yield lease
    finally:
        lease.release()


@contextmanager
def _status_on_error(store: RunStore, run_id: str, lease: Lease) -> Iterator[None]:
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


def _execute(setup: _Setup, quiet: bool, lease: Lease | None = None) -> RunResult:
    store, run_id, config, splits, task = setup.store, setup.run_id, setup.config, setup.splits, setup.task
    plan = setup.plan
    optimizer_backend = setup.optimizer_backend
    if optimizer_backend is None:  # not checked by _ready (a caller of _execute of its own)
        optimizer_backend = _backend(config["optimizer_model"])
        _check_optimizer_chat(optimizer_backend, setup.optimizer, config)
        _preflight(setup.task_backend, optimizer_backend)
    token = lease.owner.token if lease is not None else None

    def ledger(rows: list[dict[str, Any]], role: str | None = None) -> None:
        if lease is not None and lease.lost:  # e.g. this process was stopped past its lease
            raise LeaseLost(store.lost_message(run_id))
        # add_calls re-checks the lease in its own transaction: the heartbeat may not have beaten yet
        store.add_calls(run_id, rows if role is None else [{**r, "role": role} for r in rows], token=token)

    # the run's own calls so far: a cached answer of this run with no row here lost it to a kill
    recorded = {r["key"] for r in store.call_rows(run_id) if not r["cached"]}
    task, scoring_note = _served_scoring(setup, Evaluator(setup.task_backend, optimizer_backend, setup.cache,
                                                          ledger=ledger, origin=run_id, recorded=recorded))
    initial = _initial_prompt(config, setup.dataset, task)
    optimizer, recorder = setup.optimizer, setup.recorder
    # The search spends the budget less what final selection keeps back; it meets the same meter
    # on resume because selection's calls are counted apart (ledger role "select").
    limit = None if config["budget"] is None else config["budget"] - plan.reserve
    budget = Budget(limit, spent=store.charged_calls(run_id, phase="search"))
    log = (lambda m: None) if quiet else (lambda m: print(m, file=sys.stderr))
    projection = _projection(store, config, plan, splits, task, setup.task_backend, optimizer_backend, initial)
    for line in projection.lines():
        log(line)
    if scoring_note:
        log(f"scoring: {scoring_note}")
    with run_status(quiet, config["budget"], store.charged_calls(run_id), projection.to_dict()) as status:
        on_call = status.on_call if status else None
        evaluator = Evaluator(setup.task_backend, optimizer_backend, setup.cache, budget,
                              ledger=ledger, on_call=on_call, origin=run_id, recorded=recorded)
        # dev is final selection's, unless the method selects on a dev set itself (or the user
        # asked for a dev split with selection off, as before final selection existed)
        method_dev = splits.dev if optimizer.searches_on_dev or not plan.enabled else []
        unseen = [e.id for e in splits.test] + [e.id for e in splits.dev if not method_dev]
        ctx = Context(task=task, evaluator=evaluator, train=splits.train, dev=method_dev,
                      initial=initial, seed=config["seed"], recorder=recorder,
                      forbidden_ids=frozenset(unseen), log=log)
        if status:
            ctx.on_step = status.on_step
        recorder.candidate(initial, [], "initial")
        if scoring_note:
            ctx.stats["scoring"] = scoring_note
        checked = _answer_check(evaluator, task, initial, splits.train, log)
        if checked:
            ctx.stats["answer_check"] = checked
        method_best = optimizer.run(ctx, stop=Stop.of(config.get("stop")))
        selection = None
        if plan.enabled:
            if status:
                status.phase("final selection")
            selector = Evaluator(setup.task_backend, optimizer_backend, setup.cache,
                                 Budget(config["budget"], spent=store.charged_calls(run_id)),
                                 ledger=lambda rows: ledger(rows, SELECT_ROLE),
                                 on_call=on_call, origin=run_id, recorded=recorded)
            finalists = list({p.id: p for p in [method_best, *optimizer.ranking(ctx)]
                              if p.id != initial.id}.values())[:plan.k]  # the method's best first
            raced: dict[str, list[EvalResult]] = {}
            selection = race(initial, finalists, splits.dev, _race_scorer(selector, task, raced),
                             level=plan.level, seed=config["seed"], statistic=plan.statistic, margin=plan.margin)
            for rounds in raced.values():  # one row per finalist: every dev example it was scored on
                recorder.score(rounds[0].prompt, SELECT_ROLE, _joined(rounds))
            best = selection.chosen
        else:
            best = method_best
        # Held-out numbers: outside the search budget, never shown to the optimizer.
        # (prompt id, split) -> result; the method's own pick only on test, and each prompt once
        results: dict[tuple[str, str], EvalResult] = {}
        if status:
            status.phase("held-out test")
        for prompt, splits_of in ((initial, ("train", "test")), (best, ("train", "test")), (method_best, ("test",))):
            for split in splits_of:
                examples = splits.train if split == "train" else splits.test
                if examples and (prompt.id, split) not in results:
                    result = evaluator.run_task(task, prompt, examples, charge=False)
                    recorder.score(prompt, "train-final" if split == "train" else split, result)
                    results[(prompt.id, split)] = result
        extra = optimizer.heldout_report(ctx, evaluator, splits.test)  # method-specific held-out numbers
    scores = {key: result.mean for key, result in results.items()}
    test = _test_comparison(results.get((initial.id, "test")), results.get((best.id, "test")), config["seed"])
    sel = selection.record() if selection else {}
    usage = store.usage(run_id)
    summary = RunSummary(
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
        optimizer_model=optimizer_backend.identity, candidates=len(store.candidates(run_id)),
        stats=ctx.stats, best_prompt_full=best.to_dict(), initial_prompt_full=initial.to_dict(),
        dev_size=len(splits.dev), dev_initial=sel.get("dev_initial"), dev_best=sel.get("dev_best"),
        kept_start=sel.get("kept_start"),
        selection={**plan.record(), **sel, "calls": store.charged_calls(run_id, phase="select")},
        method_best_prompt=method_best.instruction,
        test_method_best=scores.get((method_best.id, "test")),
        **test, detectable=_detectable(selection, plan, config, setup.dataset),
        verdict=_verdict(plan, selection, test), projection=projection.to_dict(), extra=extra or {})
    if not store.finish_run(run_id, best.id, summary.best_score, summary.to_dict(), token=token):
        raise LeaseLost(store.lost_message(run_id))  # everything came from the cache, yet too late
    return RunResult(run_id, best, initial, summary)


def _projection(store: RunStore, config: dict[str, Any], plan: SelectionPlan, splits: Splits, task: Task,
                task_backend: Backend, optimizer_backend: Backend, initial: Prompt) -> Projection:
    """The run's projection: its search rehearsed by a fresh instance of its method on the data the
    run will see; speeds and completion lengths from this store's past calls of the same models, and
    what its past runs of the method with these models spent of their projections."""
    optimizer = get_method(config["method"])(**config["params"])
    method_dev = splits.dev if optimizer.searches_on_dev or not plan.enabled else []
    limit = None if config["budget"] is None else config["budget"] - plan.reserve
    return project(optimizer, task, splits.train, method_dev, splits.dev if plan.enabled else [], splits.test,
                   initial, seed=config["seed"], search_limit=limit, budget=config["budget"], reserve=plan.reserve,
                   stop=Stop.of(config.get("stop")), task_backend=task_backend, optimizer_backend=optimizer_backend,
                   history=store.timed_calls(config["task_model"], config["optimizer_model"]),
                   past_runs=[run["result"] for run in store.finished_runs(config["method"])
                              if (run["config"]["task_model"], run["config"]["optimizer_model"])
                              == (config["task_model"], config["optimizer_model"])])


def _preflight(*backends: Backend) -> None:
    """HTTP backends check their endpoint answers before any work (a dead one fails in seconds
    with one line, not after the retries' backoff in the middle of the search). A pool with some
    endpoints down starts, with one warning line on stderr (once for the same warning)."""
    warnings: list[str] = []
    for backend in {id(b): b for b in backends}.values():
        check = getattr(backend, "preflight", None)
        warning = check() if check is not None else None
        if warning and warning not in warnings:
            warnings.append(warning)
            print(f"promptgym: warning: {warning}", file=sys.stderr, flush=True)


def _race_scorer(selector: Evaluator, task: Task, raced: dict[str, list[EvalResult]]):
    """Final selection's scoring: charged, one call per example; each round's result is kept in
    ``raced`` (by prompt id) for the store, and handed to the race whole (scores and soft evidence)."""
    def score(prompt: Prompt, examples: list[Example]) -> EvalResult:
        result = selector.run_task(task, prompt, examples)
        raced.setdefault(prompt.id, []).append(result)
        return result
    return score


def _joined(rounds: list[EvalResult]) -> EvalResult:
    return EvalResult(rounds[0].prompt, [e for r in rounds for e in r.examples],
                      [x for r in rounds for x in r.scores], [x for r in rounds for x in r.predictions],
                      probability=[x for r in rounds for x in _padded(r.probability, r)],
                      margin=[x for r in rounds for x in _padded(r.margin, r)])


def _padded(values: list, result: EvalResult) -> list:
    return values if len(values) == len(result.examples) else [None] * len(result.examples)


def _detectable(selection: Selection | None, plan: SelectionPlan, config: dict[str, Any],
                dataset: Dataset) -> dict[str, Any] | None:
    """The kept start's "a gain under +X would not have been noticed" (``selection.detectable``),
    with what the data leaves for dev when the splits were sampled."""
    if selection is None:
        return None
    available = None if config.get("split_files") else len(dataset) - config["train_size"] - config["test_size"]
    return detectable(selection, plan, config["budget"], available)


def _test_comparison(initial: EvalResult | None, best: EvalResult | None, seed: int) -> dict[str, Any]:
    """The returned prompt against the start on test: delta, 95% paired interval, two-sided p."""
    if initial is None or best is None:
        return dict(test_delta=None, test_interval=None, test_p_value=None, test_share_better=None)
    if best.prompt.id == initial.prompt.id:
        return dict(test_delta=0.0, test_interval=[0.0, 0.0], test_p_value=1.0, test_share_better=None)
    c = stats.compare(initial.scores, best.scores, "two-sided", seed)
    return dict(test_delta=c.delta, test_interval=[c.low, c.high], test_p_value=c.p_value,
                test_share_better=stats.share_better(initial.scores, best.scores, seed))


def _verdict(plan: SelectionPlan, selection: Selection | None, test: dict[str, Any]) -> str:
    """The result in words: kept your prompt / better / worse / not distinguishable."""
    if selection is not None and selection.kept_start:
        p = "" if selection.p_value is None else f" (p = {selection.p_value:.3g} on dev)"
        return f"kept your prompt: no candidate beat it on the dev split{p}"
    prefix = "" if plan.enabled else f"final selection {plan.reason}; "
    if test["test_p_value"] is None:
        return prefix + "no test split: nothing held out to judge by"
    p, delta = test["test_p_value"], test["test_delta"]
    if p < 0.05:
        return prefix + f"{'better' if delta > 0 else 'worse'} than your prompt on test (p = {p:.3g})"
    return prefix + f"not distinguishable from your prompt on test (p = {p:.3g})"
