"""The Python API, with the same nouns as the CLI: ``optimize``, ``resume``, ``predict``, ``runs``,
``show``, ``report``, ``compare``, ``export`` and ``methods``.

A run: load data -> split (seeded) -> task -> evaluator (cache, budget, ledger) -> optimizer ->
final selection -> held-out evaluation of the starting and the returned prompt -> a ``RunSummary``,
all recorded in the run store. Resume is a replay: the run is executed again from its stored config
and every model call that completed before is answered by the cache. How a run is built and
executed is the runner's (``promptgym.runner``); this module holds the public verbs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from promptgym.data.dataset import Dataset, Example
from promptgym.data.fields import InputTemplate
from promptgym.data.rows import BOTH_INPUTS, dataset_from_rows, inputs_from_fields, render_inputs
from promptgym.errors import PromptgymError
from promptgym.evaluation import stats
from promptgym.evaluation.cache import ResponseCache
from promptgym.evaluation.evaluator import Budget, Evaluator
from promptgym.evaluation.selection import DEFAULT_K, DEFAULT_LEVEL, DEFAULT_MARGIN, DEFAULT_STATISTIC
from promptgym.export import FORMATS, export_prompt
from promptgym.models.base import Backend
from promptgym.optimizers import Context, get_method, method_summaries
from promptgym.optimizers.stopping import Stop
from promptgym.paths import default_store_url
from promptgym.projection import Projection
from promptgym.report.html import write_run_report
from promptgym.runner import execute
from promptgym.runner.backends import cache_url_of, remember_cache_url, remember_spec, using
from promptgym.runner.config import (LONG_INPUTS, REASONING, dataset_from_config, dataset_to_json, reward_config,
                                     selection_plan, split_files)
from promptgym.runner.setup import make_optimizer, prepare, ready, scoring_used, task_of
from promptgym.runner.summary import RunResult, RunSummary
from promptgym.store.lease import lease_settings
from promptgym.runner.recorder import RunRecorder
from promptgym.store.runs import RunStore
from promptgym.tasks.metrics import ExactMatch, Metric
from promptgym.tasks.prompt import DEFAULT_LAYOUT, Prompt
from promptgym.tasks.rewards import as_metric
from promptgym.tasks.task import DEFAULT_REASONING_TOKENS, ChoiceTask

__all__ = ["optimize", "resume", "predict", "runs", "show", "report", "compare", "export", "methods",
           "method_parameters", "RunResult", "RunSummary", "RunDetails"]


@dataclass
class RunDetails:
    """A stored run with its candidates (lineage) and every score, for ``show``."""

    run: dict[str, Any]
    candidates: list[dict[str, Any]]
    scores: list[dict[str, Any]]


def optimize(dataset: str | Dataset | Sequence[Mapping[str, Any]] | None = None, method: str = "ape",
             budget: int | None = 300, seed: int = 0,
             prompt: str | None = None, train_size: int | None = None, test_size: int | None = None,
             dev_size: int | None = None,
             task_model: str = "embedded", optimizer_model: str = "embedded",
             layout: str = DEFAULT_LAYOUT, normalize: str = "none", scoring: str | None = None,
             params: dict[str, Any] | None = None, store_url: str | None = None,
             cache_url: str | None = None, quiet: bool = False,
             fields: dict[str, str] | None = None, stop: Stop | dict[str, Any] | None = None,
             select_k: int = DEFAULT_K, select_level: float = DEFAULT_LEVEL,
             select_statistic: str = DEFAULT_STATISTIC, select_margin: float = DEFAULT_MARGIN,
             select_sequential: bool = False,
             reward: str | Metric | Callable[[str, Example], float] | None = None,
             length_penalty: tuple[int, float] | int | None = None,
             long_inputs: str = "error", train_file: str | None = None, dev_file: str | None = None,
             test_file: str | None = None, dry_run: bool = False,
             backends: Mapping[str, Backend] | None = None,
             input_template: str | None = None, calibrate: bool = False, judge_model: str | None = None,
             judge_max_words: int | None = None, judge_order: str | None = None,
             judge_scoring: str | None = None, judge_check: str | None = None, reasoning: str = "off",
             reasoning_tokens: int | None = None) -> RunResult | Projection:
    """Optimize a prompt; returns the chosen prompt and the run's summary (also stored).

    ``dry_run=True`` returns the run's ``Projection`` (model calls, tokens, time; see
    ``promptgym.projection``) instead, without a model call and without creating a run. Before a
    real run the same projection is printed and kept in its summary.

    Progress goes to stderr as the CLI shows it (the projection, the parameters a method's plan cut to
    fit the budget, a live line with an ETA that covers the held-out test, and on a machine that has
    timed no call yet a first time estimate after the first calls); ``quiet=True`` prints nothing.

    Splits: seeded samples of ``dataset`` (``train_size`` default 30, ``test_size`` default 100),
    or exactly the rows of ``train_file`` (and ``dev_file``, ``test_file``: .jsonl/.csv, in the
    formats ``dataset`` takes), in order, when given (see ``runner.config.split_files``). Then ``dataset`` is
    optional and only supplies the task's own instruction and label set.

    Final selection: the method's top ``select_k`` candidates race the starting prompt on a dev
    split (``dev_size``; None chooses one the data and budget allow) and the start is kept unless
    a winner beats it by a paired test at ``select_level``; ``select_k=0`` or ``dev_size=0`` turn
    it off. The budget covers search and selection: selection's share is kept back up front.
    ``select_statistic`` says what the race tests: ``"accuracy"`` (the task's score, the default),
    or for a choice task scored by log-probability the right option's ``"probability"`` or its
    ``"margin"`` over the best wrong option (a signed-rank test, and the winner's dev accuracy may
    not be below the start's by more than ``select_margin``); see docs/selection.md.
    ``select_sequential=True`` races on dev drawn while the race is undecided, from the examples in
    neither train nor test, and stops as soon as an anytime-valid test decides, within the same
    reserve (``selection.race_sequential``).

    ``fields`` names the input / target / choices fields of a JSONL or CSV file
    (``{"input": "text", "target": "label"}``); by default common names are recognised.
    ``input_template`` renders each input from several named fields instead, a Jinja2 template
    (``"Question: {{ question }}\nContext: {{ context }}"``) over the rows of a file, an ``hf:``
    dataset, a list of dicts given as ``dataset`` or a ``Dataset`` whose examples carry ``fields``.
    It is stored with the run (``resume``, ``predict`` and ``export`` render the same text) and is
    not part of the prompt: the search never changes it.
    ``stop`` ends the search early, for any method: ``Stop(max_steps=, patience=, target=,
    max_seconds=)`` or a dict of those (see ``promptgym.optimizers.stopping``).

    ``reward`` scores each answer (``promptgym.tasks.rewards``): a spec (``"exact-match"``,
    ``"code-tests"``, ``"code-tests-all"``, ``"module:function"``, ``"path/file.py:function"``), a
    function ``reward(prediction, example) -> float`` or a metric object; by default the dataset's
    own (a shipped example's) or accuracy / exact match. ``length_penalty=(WORDS, WEIGHT)`` (or
    ``WORDS``, weight 0.5) takes up to WEIGHT off for answers longer than WORDS words. A reward
    given as an object that cannot be named by a spec (a lambda, a function in ``__main__``) is
    not stored: pass it again to ``resume``.

    ``calibrate=True`` calibrates a choice task's option scores (contextual calibration, Zhao et
    al., 2021): each prompt's label prior is read from three content-free inputs ("N/A", "",
    "[MASK]"; 3 calls the first time a prompt is scored, charged like its other calls) and divided
    out of every example's option probabilities before the answer is picked. Only for a choice task
    whose examples share one label set, scored by log-probability (else one line saying why).

    ``reward="judge:RUBRIC.md"`` (or a ``tasks.judge.RubricJudge``) has a judge model score each
    answer against your rubric (``promptgym.tasks.judge``): ``judge_model`` is any model spec
    (default: the optimizer model); its calls are cached, charged to the budget in the search and
    final selection (not in the held-out test) and in the ledger with role ``judge``.
    ``judge_max_words`` cuts and scores down longer answers (default: twice the longest reference);
    ``judge_order`` ``"balanced"`` (one call per answer) or ``"both"`` (reference and answer shown
    in both orders, averaged); ``judge_scoring`` ``"logprob"`` (the expected score under the judge's
    probabilities of the digits; the default where the judge model gives them) or ``"generate"``
    (a greedy reply, read tolerantly; unreadable replies score 0 and are counted). The rubric's
    text is stored with the run. ``judge_check`` (default ``"rouge-l"``, ``"token-f1"`` without the
    ``metrics`` extra; any free-text reward spec; ``"none"``: off) scores the start's and the
    returned prompt's held-out answers against the references, with no model call, into
    ``summary["judge"]["reference_check"]``: a returned prompt the references score clearly lower
    is reported (``flagged``), never swapped.

    ``reasoning`` (choice tasks): ``"off"`` answers directly (options scored, or ``scoring``);
    ``"on"``: the start and every candidate reason first, then end with "Answer: <option>" (generated,
    up to ``reasoning_tokens`` tokens, default 256, and parsed to an option; no option named is
    wrong); ``"search"``: the search runs direct, and final selection also races the reasoning twins
    of the method's best and of the start on dev, so the mode the run returns is decided on dev
    (``summary["answer_mode"]``, ``summary["selection"]["reasoning"]``). See docs/data.md.

    ``long_inputs``: an example whose prompt does not fit the task model's context (when the
    backend tells its size) is an error naming the row (``"error"``, before anything is stored)
    or has its input cut to fit (``"truncate"``).

    A key written into a model URL (``openai:MODEL@http://user:KEY@host/v1``) is used in memory
    only: the run stores and prints ``user:***@host``; ``resume`` takes the key from
    ``OPENAI_API_KEY``.

    ``backends`` maps a model spec to a ``Backend`` object (``promptgym.models.base``) that stands
    for it in this call: ``optimize(..., task_model="mine", optimizer_model="mine",
    backends={"mine": MyBackend()})`` runs on your own client. The run stores the spec; pass the
    same mapping to ``resume`` and ``predict``. A backend's ``identity`` keys its cached answers."""
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
        raise PromptgymError(f"--budget must be a whole number of model calls, at least 1 (got {budget!r})")
    for name, value, least in (("train", train_size, 1), ("test", test_size, 0), ("dev", dev_size, 0)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise PromptgymError(f"--{name}-size must be a whole number, at least {least} (got {value!r})")
    if long_inputs not in LONG_INPUTS:
        raise PromptgymError(f"long_inputs '{long_inputs}': use one of {', '.join(LONG_INPUTS)}")
    _check_reasoning_options(reasoning, reasoning_tokens)
    dataset = _rows_dataset(dataset, fields or {}, input_template)
    if train_file is None:
        if dev_file is not None or test_file is not None:
            raise PromptgymError("--dev FILE and --test FILE need --train FILE (exact splits come from files together)")
        if dataset is None:
            raise PromptgymError("no data: give --dataset, or exact splits as files (--train FILE, "
                                 "optionally --dev FILE and --test FILE)")
        train_size = 30 if train_size is None else train_size
        test_size = 100 if test_size is None else test_size
    config = dict(method=method, budget=budget, seed=seed, prompt=prompt, train_size=train_size,
                  test_size=test_size, dev_size=dev_size, task_model=remember_spec(task_model),
                  optimizer_model=remember_spec(optimizer_model), long_inputs=long_inputs,
                  layout=layout, normalize=normalize,
                  scoring=scoring, params=params or {}, fields=fields or {},
                  cache_url=remember_cache_url(cache_url) if cache_url else None,
                  stop=Stop.of(stop).to_dict(), select_k=select_k, select_level=select_level,
                  select_statistic=select_statistic, select_margin=select_margin,
                  **({"select_sequential": True} if select_sequential else {}),
                  **({"input_template": input_template} if input_template is not None else {}),
                  **({"calibrate": True} if calibrate else {}),
                  **{key: value for key, value in (
                      ("judge_model", remember_spec(judge_model) if judge_model else None),
                      ("judge_max_words", judge_max_words), ("judge_order", judge_order),
                      ("judge_scoring", judge_scoring), ("judge_check", judge_check)) if value is not None},
                  **({"reasoning": reasoning, "reasoning_tokens": reasoning_tokens or DEFAULT_REASONING_TOKENS}
                     if reasoning != "off" else {}))
    reward_obj = reward_config(config, reward, length_penalty)
    optimizer = make_optimizer(config)  # fail fast on unknown method / parameters
    if train_file is not None:
        split_files(config, dataset, train_file, dev_file, test_file)
    elif isinstance(dataset, Dataset):
        config["dataset"] = dataset.source or dataset.name
        config["inline_dataset"] = dataset_to_json(dataset)
    else:
        config["dataset"] = dataset
    selection_plan(config, available=None)  # and on a selection the budget cannot pay for
    with using(backends):
        setup = prepare(config, reward_obj, optimizer)  # bad data fails here, before the store has a run row
        store = _store(store_url)
        if dry_run:
            return execute.dry_run(store, setup)
        ready(setup)  # a dead endpoint, cache or sandbox fails here too, before the run row
        return execute.start(store, setup, quiet=quiet)


def _rows_dataset(dataset: Any, fields: dict[str, str], input_template: str | None) -> Any:
    """The ``dataset`` argument with rows given in Python made a ``Dataset``, and a ``Dataset``'s
    inputs rendered by the input template; the template checked (and not given with an input field)."""
    if input_template is None:
        return dataset_from_rows(dataset, **_field_names(fields)) if isinstance(dataset, (list, tuple)) else dataset
    if fields.get("input"):
        raise PromptgymError(BOTH_INPUTS)
    InputTemplate.parse(input_template)
    if isinstance(dataset, (list, tuple)):
        return dataset_from_rows(dataset, **_field_names(fields), input_template=input_template)
    return render_inputs(dataset, input_template) if isinstance(dataset, Dataset) else dataset


def _field_names(fields: dict[str, str]) -> dict[str, str | None]:
    return {f"{k}_field": fields.get(k) for k in ("input", "target", "choices")}


def _check_reasoning_options(reasoning: str, reasoning_tokens: int | None) -> None:
    if reasoning not in REASONING:
        raise PromptgymError(f"--reasoning '{reasoning}': use one of {', '.join(REASONING)}")
    if reasoning_tokens is None:
        return
    if isinstance(reasoning_tokens, bool) or not isinstance(reasoning_tokens, int) or reasoning_tokens < 1:
        raise PromptgymError(f"--reasoning-tokens must be a whole number, at least 1 (got {reasoning_tokens!r})")
    if reasoning == "off":
        raise PromptgymError("--reasoning-tokens needs --reasoning on or search")


def resume(run_id: str, store_url: str | None = None, quiet: bool = False,
           reward: Metric | Callable[[str, Example], float] | None = None,
           backends: Mapping[str, Backend] | None = None) -> RunResult:
    """Continue a killed run: replay it; completed calls come from the cache, free. ``reward``:
    only for a run started with a reward object that has no spec (it is not stored); ``backends``:
    as given to ``optimize``.

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
    with using(backends):
        setup = prepare(run["config"], as_metric(reward) if reward else None)
        ready(setup)
        result = execute.take_over(store, run_id, setup, quiet=quiet)
    if result is None:  # finished while we looked: its stored result
        return resume(run_id, store_url=store_url, quiet=quiet, reward=reward)
    return result


def predict(run_id: str, inputs: Sequence[str] | Sequence[Mapping[str, Any]], store_url: str | None = None,
            backends: Mapping[str, Backend] | None = None) -> list[dict[str, Any]]:
    """Answer new inputs with a finished run's result (per-input prompts for methods that store
    them, e.g. dp2o; the best prompt otherwise). Calls are cached and not charged to any budget.
    ``backends``: as given to ``optimize``. A run with an input template takes each input as a
    dict of its fields (``{"question": ..., "context": ...}``), rendered by the run's template;
    each answer then has the ``fields`` too."""
    store = _store(store_url)
    run = store.get_run(run_id)
    if run["status"] != "finished" or not run["result"]:
        raise PromptgymError(f"run '{run_id}' is {run['status']}: finish it first (promptgym resume {run_id})")
    config = dict(run["config"], scoring=scoring_used(run["config"], store, run_id))  # as the run scored
    unnamed = config.get("reward_unnamed")  # nothing is scored here: any metric will do
    with using(backends):
        setup = prepare(config, ExactMatch() if unnamed else None, check_lengths=False)
    task = setup.task
    labels = setup.dataset.labels if isinstance(task, ChoiceTask) else None
    if isinstance(task, ChoiceTask) and not labels:
        raise PromptgymError(f"run '{run_id}': the dataset's examples have different label sets")
    examples = [Example(f"predict-{i}", text, (labels[0] if labels else "",), labels, fields=named)
                for i, (text, named) in enumerate(_predict_inputs(run_id, config, inputs))]  # placeholder targets
    cache = ResponseCache(cache_url_of(config.get("cache_url")))
    evaluator = Evaluator(setup.task_backend, setup.task_backend, cache, Budget(None))
    ctx = Context(task=task, evaluator=evaluator, train=[],
                  initial=Prompt.from_dict(run["result"]["initial_prompt_full"]),
                  seed=config["seed"], recorder=RunRecorder(store, run_id))
    answers = setup.optimizer.predict(ctx, Prompt.from_dict(run["result"]["best_prompt_full"]), examples)
    if config.get("input_template") is not None:
        for answer, example in zip(answers, examples):
            answer["fields"] = dict(example.fields)
    return answers


def _predict_inputs(run_id: str, config: dict[str, Any],
                    inputs: Sequence[Any]) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    """(input text, fields) of each new input: rendered by the run's input template, if it has one."""
    if isinstance(inputs, (str, bytes, Mapping)):
        raise PromptgymError(f"inputs: expected a list of inputs, got one {type(inputs).__name__}")
    if config.get("input_template") is not None:
        return inputs_from_fields(config["input_template"], inputs)
    for i, text in enumerate(inputs, start=1):
        if not isinstance(text, str):
            raise PromptgymError(f"input {i}: run '{run_id}' takes text inputs (it has no input template), "
                                 f"got {type(text).__name__}")
    return [(text, ()) for text in inputs]


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
    if fmt not in FORMATS:
        raise PromptgymError(f"export format '{fmt}': use one of {', '.join(FORMATS)}")
    store = _store(store_url)
    run = store.get_run(run_id)
    if run["status"] != "finished" or not run["result"]:
        raise PromptgymError(f"run '{run_id}' is {run['status']}: only a finished run has a returned prompt "
                             f"(finish it first: promptgym resume {run_id})")
    config = run["config"]
    dataset = dataset_from_config(config)
    unnamed = ExactMatch() if config.get("reward_unnamed") else None  # nothing is scored here
    task = task_of(config, dataset, scoring_used(config, store, run_id), unnamed)
    labels = list(dataset.labels) if isinstance(task, ChoiceTask) and dataset.labels else None
    template = config.get("input_template")
    return export_prompt(Prompt.from_dict(run["result"]["best_prompt_full"]), task, labels, fmt,
                         dict(run_id=run_id, method=run["method"], dataset=run["dataset"],
                              calibration=run["result"].get("calibration")),
                         InputTemplate.parse(template) if template is not None else None)


def methods() -> dict[str, str]:
    """The methods, built-in and from installed packages (``promptgym.methods`` entry points), name ->
    one-line summary."""
    return method_summaries()


def method_parameters(method: str) -> list[dict[str, str]]:
    """A method's parameters as text: name, what it accepts, default, the paper's value ("-" when
    the paper gives none) and a one-line description."""
    return [dict(name=name, accepts=p.accepts(), default=p.default_value(), paper=p.paper_value(),
                 help=p.help) for name, p in get_method(method).parameters.items()]


def _store(url: str | None) -> RunStore:
    return RunStore(url or default_store_url())
