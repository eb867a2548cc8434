"""The Python API, with the same nouns as the CLI: ``optimize(...)`` and ``resume(run_id)``.

A run: load data -> split (seeded) -> task -> evaluator (cache, budget, ledger) -> optimizer ->
held-out evaluation of the starting and the best prompt -> result, all recorded in the run store.
Resume is a replay: the run is executed again from its stored config and every model call that
completed before is answered by the cache.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from promptgym.data.dataset import Dataset, Example, split_dataset
from promptgym.data.loaders import load_dataset
from promptgym.errors import PromptgymError
from promptgym.evaluation.cache import ResponseCache
from promptgym.evaluation.evaluator import Budget, EvalResult, Evaluator
from promptgym.models.factory import make_backend
from promptgym.optimizers.base import Context, Recorder, get_method
from promptgym.optimizers.stopping import Stop
from promptgym.paths import default_cache_url, default_store_url
from promptgym.store.runs import RunStore
from promptgym.tasks.prompt import DEFAULT_LAYOUT, Prompt, get_layout
from promptgym.tasks.task import ChoiceTask, task_for

NEUTRAL_CHOICE = "Read the input and choose the correct label."
NEUTRAL_GENERATION = "Read the input and give the correct answer."


@dataclass
class RunResult:
    run_id: str
    best_prompt: Prompt
    initial_prompt: Prompt
    summary: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.summary[key]


class StoreRecorder(Recorder):
    def __init__(self, store: RunStore, run_id: str):
        self.store, self.run_id = store, run_id

    def candidate(self, prompt: Prompt, parents: list[str], operation: str) -> None:
        self.store.add_candidate(self.run_id, prompt.id, prompt.to_dict(), parents, operation)

    def score(self, prompt: Prompt, split: str, result: EvalResult) -> None:
        self.store.add_score(
            self.run_id, prompt.id, split, result.mean,
            {e.id: s for e, s in zip(result.examples, result.scores)},
            {e.id: p for e, p in zip(result.examples, result.predictions)})

    def put_artifact(self, name: str, data: Any) -> None:
        self.store.put_artifact(self.run_id, name, data)

    def get_artifact(self, name: str) -> Any | None:
        return self.store.get_artifact(self.run_id, name)


def optimize(dataset: str | Dataset, method: str = "ape", budget: int | None = 300, seed: int = 0,
             prompt: str | None = None, train_size: int = 30, test_size: int = 100, dev_size: int = 0,
             task_model: str = "embedded", optimizer_model: str = "embedded",
             layout: str = DEFAULT_LAYOUT, normalize: str = "none", scoring: str | None = None,
             params: dict[str, Any] | None = None, store_url: str | None = None,
             cache_url: str | None = None, quiet: bool = True,
             fields: dict[str, str] | None = None, stop: Stop | dict[str, Any] | None = None) -> RunResult:
    """Optimize a prompt; returns the best prompt and the JSON-able summary (also stored).

    ``fields`` names the input / target / choices fields of a JSONL or CSV file
    (``{"input": "text", "target": "label"}``); by default common names are recognised.
    ``stop`` ends the search early, for any method: ``Stop(max_steps=, patience=, target=,
    max_seconds=)`` or a dict of those (see ``promptgym.optimizers.stopping``)."""
    config = dict(method=method, budget=budget, seed=seed, prompt=prompt, train_size=train_size,
                  test_size=test_size, dev_size=dev_size, task_model=task_model,
                  optimizer_model=optimizer_model, layout=layout, normalize=normalize,
                  scoring=scoring, params=params or {}, cache_url=cache_url, fields=fields or {},
                  stop=Stop.of(stop).to_dict())
    if isinstance(dataset, Dataset):
        config["dataset"] = dataset.source or dataset.name
        config["inline_dataset"] = _dataset_to_json(dataset)
    else:
        config["dataset"] = dataset
    get_method(method)(**(params or {}))  # fail fast on unknown method / parameters
    store = RunStore(store_url or default_store_url())
    run_id = store.create_run(method, config["dataset"], config)
    with _status_on_error(store, run_id):
        return _execute(store, run_id, config, quiet=quiet)


def resume(run_id: str, store_url: str | None = None, quiet: bool = True) -> RunResult:
    """Continue a killed run: replay it; completed calls come from the cache, free."""
    store = RunStore(store_url or default_store_url())
    run = store.get_run(run_id)
    if run["status"] == "finished" and run["result"]:
        best = Prompt.from_dict(run["result"]["best_prompt_full"])
        initial = Prompt.from_dict(run["result"]["initial_prompt_full"])
        return RunResult(run_id, best, initial, run["result"])
    store.set_status(run_id, "running")
    with _status_on_error(store, run_id):
        return _execute(store, run_id, run["config"], quiet=quiet)


def predict(run_id: str, inputs: list[str], store_url: str | None = None) -> list[dict[str, Any]]:
    """Answer new inputs with a finished run's result (per-input prompts for methods that store
    them, e.g. dp2o; the best prompt otherwise). Calls are cached and not charged to any budget."""
    store = RunStore(store_url or default_store_url())
    run = store.get_run(run_id)
    if run["status"] != "finished" or not run["result"]:
        raise PromptgymError(f"run '{run_id}' is {run['status']}: finish it first (promptgym resume {run_id})")
    config = run["config"]
    dataset = _dataset_from_config(config)
    backend = make_backend(config["task_model"])
    scoring = config["scoring"] or ("logprob" if backend.supports_scoring else "generate")
    task = task_for(dataset, normalize=config["normalize"], scoring=scoring)
    best = Prompt.from_dict(run["result"]["best_prompt_full"])
    initial = Prompt.from_dict(run["result"]["initial_prompt_full"])
    labels = dataset.labels if isinstance(task, ChoiceTask) else None
    if isinstance(task, ChoiceTask) and not labels:
        raise PromptgymError(f"run '{run_id}': the dataset's examples have different label sets")
    examples = [Example(f"predict-{i}", text, (labels[0] if labels else "",), labels)
                for i, text in enumerate(inputs)]  # the target is a placeholder: nothing is scored
    cache = ResponseCache(config.get("cache_url") or default_cache_url())
    evaluator = Evaluator(backend, backend, cache, Budget(None))
    ctx = Context(task=task, evaluator=evaluator, train=[], initial=initial, seed=config["seed"],
                  recorder=StoreRecorder(store, run_id))
    return get_method(config["method"])(**config["params"]).predict(ctx, best, examples)


def _dataset_to_json(dataset: Dataset) -> dict[str, Any]:
    return dict(name=dataset.name, description=dataset.description, source=dataset.source,
                examples=[dict(id=e.id, input=e.input, targets=list(e.targets),
                               choices=list(e.choices) if e.choices else None) for e in dataset.examples])


def _dataset_from_config(config: dict[str, Any]) -> Dataset:
    inline = config.get("inline_dataset")
    if inline:
        return Dataset(name=inline["name"], description=inline["description"], source=inline["source"],
                       examples=[Example(e["id"], e["input"], tuple(e["targets"]),
                                         tuple(e["choices"]) if e["choices"] else None)
                                 for e in inline["examples"]])
    fields = config.get("fields") or {}
    return load_dataset(config["dataset"], input_field=fields.get("input"),
                        target_field=fields.get("target"), choices_field=fields.get("choices"))


@contextmanager
def _status_on_error(store: RunStore, run_id: str) -> Iterator[None]:
    """A run that stops early says so in the store (a bad dataset path must not look 'running')."""
    try:
        yield
    except KeyboardInterrupt:
        store.set_status(run_id, "interrupted")
        raise
    except Exception:
        store.set_status(run_id, "failed")
        raise


def _execute(store: RunStore, run_id: str, config: dict[str, Any], quiet: bool) -> RunResult:
    started = time.perf_counter()
    dataset = _dataset_from_config(config)
    splits = split_dataset(dataset, config["train_size"], config["test_size"], config["dev_size"], config["seed"])
    task_backend = make_backend(config["task_model"])
    optimizer_backend = make_backend(config["optimizer_model"])
    scoring = config["scoring"] or ("logprob" if task_backend.supports_scoring else "generate")
    task = task_for(dataset, normalize=config["normalize"], scoring=scoring)
    instruction = config["prompt"] or dataset.description or (
        NEUTRAL_CHOICE if isinstance(task, ChoiceTask) else NEUTRAL_GENERATION)
    initial = Prompt(instruction=instruction, layout=get_layout(config["layout"]))
    optimizer = get_method(config["method"])(**config["params"])
    budget = Budget(config["budget"], spent=store.charged_calls(run_id))
    cache = ResponseCache(config.get("cache_url") or default_cache_url())
    recorder = StoreRecorder(store, run_id)
    log = (lambda m: None) if quiet else (lambda m: print(m, file=sys.stderr))
    with _progress(quiet, budget) as on_call:
        evaluator = Evaluator(task_backend, optimizer_backend, cache, budget,
                              ledger=lambda rows: store.add_calls(run_id, rows), on_call=on_call)
        ctx = Context(task=task, evaluator=evaluator, train=splits.train, dev=splits.dev,
                      initial=initial, seed=config["seed"], recorder=recorder,
                      forbidden_ids=frozenset(e.id for e in splits.test), log=log)
        recorder.candidate(initial, [], "initial")
        best = optimizer.run(ctx, stop=Stop.of(config.get("stop")))
        # Held-out numbers: outside the search budget, never shown to the optimizer.
        scores = {}
        for name, prompt in (("initial", initial), ("best", best)):
            for split, examples in (("train", splits.train), ("test", splits.test)):
                if not examples:
                    continue
                result = evaluator.run_task(task, prompt, examples, charge=False)
                recorder.score(prompt, split if split == "test" else "train-final", result)
                scores[(name, split)] = result.mean
        extra = optimizer.heldout_report(ctx, evaluator, splits.test)  # method-specific held-out numbers
    usage = store.usage(run_id)
    summary = dict(
        run_id=run_id, method=config["method"], dataset=config["dataset"],
        initial_prompt=initial.instruction, best_prompt=best.instruction,
        initial_score=scores[("initial", "train")], best_score=scores[("best", "train")],
        test_initial=scores.get(("initial", "test")), test_best=scores.get(("best", "test")),
        improved_on_test=(scores.get(("best", "test"), 0) > scores.get(("initial", "test"), 0)),
        llm_calls=usage.calls, cached_calls=usage.cached_calls, budget=config["budget"],
        budget_used=store.charged_calls(run_id), prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens, model_seconds=round(usage.seconds, 3),
        seconds=round(time.perf_counter() - started, 3), seed=config["seed"],
        train_size=len(splits.train), test_size=len(splits.test), task_model=task_backend.identity,
        optimizer_model=optimizer_backend.identity, candidates=len(store.candidates(run_id)),
        stats=ctx.stats, best_prompt_full=best.to_dict(), initial_prompt_full=initial.to_dict())
    summary.update({k: v for k, v in (extra or {}).items() if k not in summary})
    store.finish_run(run_id, best.id, summary["best_score"], summary)
    return RunResult(run_id, best, initial, summary)


@contextmanager
def _progress(quiet: bool, budget: Budget) -> Iterator:
    """A rich progress bar of model calls against the budget; silent when quiet or not a TTY."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, transient=False) as progress:
        bar = progress.add_task("model calls", total=budget.limit, completed=budget.spent)
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
