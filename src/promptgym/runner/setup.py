"""One builder of everything a run needs before its first model call, from its config: the data and
splits, the task and its reward, the starting prompt, the method, the models and cache, each checked
so that what can fail on the user's input fails here (one line naming the file, row or field). A
new run, a resume, ``predict``, ``export``, the report and the Gymnasium env all build through it,
so the same config always means the same task and the same start."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from promptgym.data.dataset import Dataset, Splits, split_dataset
from promptgym.data.examples import example_meta
from promptgym.errors import PromptgymError
from promptgym.evaluation.cache import ResponseCache
from promptgym.evaluation.selection import DEFAULT_STATISTIC, SelectionPlan
from promptgym.models.base import Backend
from promptgym.optimizers import Optimizer, get_method
from promptgym.runner.backends import backend_for, cache_url_of, preflight
from promptgym.runner.checks import (check_chat, check_judge, check_judge_chat, check_optimizer_chat, check_sandbox,
                                    fit_context)
from promptgym.runner.config import dataset_from_config, selection_plan
from promptgym.runner.judge_check import judge_check_of
from promptgym.store.runs import SELECT_ROLE, RunStore
from promptgym.tasks.build import task_for
from promptgym.tasks.judge import RubricJudge, calls_per_answer
from promptgym.tasks.metrics import ChoiceAccuracy, ExactMatch, Metric
from promptgym.tasks.prompt import Prompt, get_layout, with_options
from promptgym.tasks.rewards import LengthPenalty, load_reward
from promptgym.tasks.task import ChoiceTask, Task

NEUTRAL_CHOICE = "Read the input and choose the correct label."
NEUTRAL_GENERATION = "Read the input and give the correct answer."


@dataclass
class Setup:
    """A run ready to execute: what ``prepare`` builds from its config and ``ready`` completes."""

    config: dict[str, Any]
    dataset: Dataset
    plan: SelectionPlan
    splits: Splits
    task_backend: Backend
    task: Task
    optimizer: Optimizer  # the instance that runs the search
    initial: Prompt
    started: float  # perf_counter before loading: a run's wall time includes its setup
    optimizer_backend: Backend | None = None  # from here on set by ready()
    cache: ResponseCache | None = None
    judge_backend: Backend | None = None  # the judge model, for a judge reward (else None)
    judge_check: tuple[str, Metric] | None = None  # a judged run's reference metric on test (runner.judge_check)
    scoring_note: str | None = None  # how a served model scores choices (served_scoring), when asked


def make_optimizer(config: dict[str, Any]) -> Optimizer:
    """The run's method with its parameters (an unknown method or parameter is one line)."""
    return get_method(config["method"])(**(config.get("params") or {}))


def prepare(config: dict[str, Any], reward: Metric | None = None, optimizer: Optimizer | None = None,
            check_lengths: bool = True) -> Setup:
    """Data, splits, task model, task, start and method from a run's config, every example checked
    (``check_lengths``: against the task model's context)."""
    started = time.perf_counter()
    optimizer = optimizer or make_optimizer(config)
    dataset = dataset_from_config(config)
    task_backend = backend_for(config["task_model"])
    check_chat(task_backend, optimizer, config)
    task = task_of(config, dataset, config["scoring"] or ("logprob" if task_backend.supports_scoring else "generate"),
                   reward)
    check_judge(config, task, dataset)
    judge_backend = judge_backend_of(config, task)
    judge_check = judge_check_of(config, task)
    plan = selection_plan(config, available=len(dataset) - config["train_size"] - config["test_size"],
                          per_example=calls_per_answer(task.metric))
    splits = splits_of(config, dataset, plan)
    _check_reasoning(config, plan, task)
    _check_statistic(plan, task, config.get("reasoning", "off"))
    check_calibrate(config, dataset, task, task_backend)
    initial = initial_prompt(config, dataset, task)
    if check_lengths:
        splits = fit_context(splits, task_backend, task, initial, config.get("long_inputs", "error"), dataset)
    return Setup(config, dataset, plan, splits, task_backend, task, optimizer, initial, started,
                 judge_backend=judge_backend, judge_check=judge_check)


def ready(setup: Setup) -> None:
    """What a run needs besides its data, checked before a run row exists (and, on resume, before
    the run goes on), so that none of it leaves a ``failed`` run: the optimizer model loads and can
    chat, every HTTP endpoint answers (``preflight``), the response cache opens, and a reward that
    runs the model's code finds a working sandbox. Until these were checked here, each failed inside
    the run: a dead endpoint or an unreachable cache at its first call, a missing bubblewrap only
    after the first batch of model calls."""
    config = setup.config
    optimizer_backend = backend_for(config["optimizer_model"])
    check_optimizer_chat(optimizer_backend, setup.optimizer, config)
    preflight(setup.task_backend, optimizer_backend, *([setup.judge_backend] if setup.judge_backend else []))
    cache = ResponseCache(cache_url_of(config.get("cache_url")))
    check_sandbox(setup.task)
    setup.optimizer_backend, setup.cache = optimizer_backend, cache


def judge_backend_of(config: dict[str, Any], task: Task) -> Backend | None:
    """The judge model of a judge reward (``judge_model``, else the optimizer model), checked to
    chat; None for any other reward. A judge whose scoring is not settled (neither the user's
    ``judge_scoring`` nor a stored run's) reads the digits' log-probabilities where this model gives
    them, else generates; the settled judge goes into the config, so a resume reads it the same way."""
    if not isinstance(task.metric, RubricJudge):
        return None
    spec = config.get("judge_model") or config["optimizer_model"]
    backend = backend_for(spec)
    check_judge_chat(backend, spec)
    judge = task.metric
    if judge.scoring is None:
        judge = task.metric = judge.with_options(scoring="logprob" if backend.supports_scoring else "generate")
        config["judge"] = judge.record()
    elif judge.scoring == "logprob" and not backend.supports_scoring:
        raise PromptgymError(f"judge model '{spec}' gives no log-probabilities: use --judge-scoring generate")
    return backend


def splits_of(config: dict[str, Any], dataset: Dataset, plan: SelectionPlan) -> Splits:
    """Exact splits (the stored rows are train, dev, test in order), else seeded samples (dev then
    holds the sequential race's pool beyond its first ``plan.dev_size`` examples)."""
    if config.get("split_files"):
        rows, n_train, n_dev = dataset.examples, config["train_size"], config["dev_size"]
        return Splits(train=rows[:n_train], dev=rows[n_train:n_train + n_dev], test=rows[n_train + n_dev:])
    return split_dataset(dataset, config["train_size"], config["test_size"], plan.dev_size, config["seed"],
                         dev_rest=plan.pool_size - plan.dev_size)


def task_of(config: dict[str, Any], dataset: Dataset, scoring: str, reward: Metric | None = None) -> Task:
    """The run's task (``tasks.build.task_for``) with its metric: the run's reward (the object
    given, or its stored spec, or the dataset's own), then any length penalty."""
    return task_for(dataset, config.get("normalize") or "none", scoring, metric_of(config, dataset, reward),
                    max_tokens=_dataset_meta(config).get("max_tokens"), calibrate=calibrated(config, scoring),
                    **({"reasoning_tokens": config["reasoning_tokens"]} if config.get("reasoning_tokens") else {}))


def calibrated(config: dict[str, Any], scoring: str) -> bool:
    """Whether the run's choices are calibrated: asked for (``--calibrate``) and scored by
    log-probability. (A served model that may score by its first answer token starts as generation
    until the run's start decides, ``served_scoring``; ``check_calibrate`` refuses every other
    way of answering by generation.)"""
    return bool(config.get("calibrate")) and scoring == "logprob"


def check_calibrate(config: dict[str, Any], dataset: Dataset, task: Task, backend: Backend) -> None:
    """``--calibrate`` divides each option's probability by the prompt's prior for it: one line,
    before the run, for a task that has no options, options that differ between examples (no
    shared label set to have a prior over), or options answered by generation (no probabilities)."""
    if not config.get("calibrate"):
        return
    name = config.get("dataset")
    if not isinstance(task, ChoiceTask):
        raise PromptgymError(f"--calibrate needs a choice task (it divides each option's probability by the prompt's "
                             f"prior for it); {name} is answered in free text: drop --calibrate")
    if not dataset.labels:
        raise PromptgymError(f"--calibrate needs one label set shared by every example (the prior is over the labels); "
                             f"{name}'s examples have different options: drop --calibrate")
    if task.scoring == "logprob":
        return
    if config.get("scoring") == "generate":
        raise PromptgymError("--calibrate needs choices scored by log-probability; --scoring generate answers by "
                             "generation: drop one of the two")
    if not getattr(backend, "scores_first_token", False):
        raise PromptgymError(f"--calibrate needs choices scored by log-probability; the task model "
                             f"{config['task_model']} gives none (its choices are answered by generation)")


def metric_of(config: dict[str, Any], dataset: Dataset, reward: Metric | None) -> Metric | None:
    """The run's metric, None for the task's default (accuracy, or exact match)."""
    if reward is None and config.get("reward_unnamed"):
        raise PromptgymError(f"this run was scored by a reward with no spec ({config['reward_unnamed']}): "
                             "pass it again, promptgym.resume(run_id, reward=...)")
    own = {} if reward is not None or config.get("reward") else _dataset_meta(config)
    spec = config.get("reward") or own.get("reward")
    if config.get("judge") and reward is None:  # the rubric the run was started with, not the file now
        metric: Metric | None = RubricJudge.from_record(config["judge"])
    else:
        metric = reward or (load_reward(spec) if spec else None)
    length_penalty = config.get("length_penalty") or own.get("length_penalty")
    if isinstance(metric, RubricJudge):
        metric = judge_of(config, metric, length_penalty)
    if length_penalty:
        words, weight = length_penalty
        metric = LengthPenalty(metric or (ChoiceAccuracy() if dataset.is_choice else ExactMatch()), words, weight)
    return metric


def judge_of(config: dict[str, Any], judge: RubricJudge, length_penalty: Any = None) -> RubricJudge:
    """The judge with the run's options (``judge_max_words``, ``judge_order``, ``judge_scoring``),
    its record kept in the config (``judge``: the rubric's text, source and hash), so that a resume,
    whatever the rubric file says by then, judges by the same rubric."""
    if length_penalty:
        raise PromptgymError("--length-penalty and a judge reward: the judge has its own length guard "
                             "(answers past --judge-max-words are cut and scored down); leave --length-penalty out")
    judge = judge.with_options(config.get("judge_max_words"), config.get("judge_order"), config.get("judge_scoring"))
    config["judge"] = judge.record()
    return judge


def _dataset_meta(config: dict[str, Any]) -> dict[str, Any]:
    """A shipped example's own settings (its ``.meta.json``): its reward (e.g. code-tests), the
    length penalty that goes with that reward, the token cap of an answer."""
    name = str(config.get("dataset") or "")
    if name.startswith("example:") and not config.get("inline_dataset"):
        return example_meta(name.split(":", 1)[1])
    return {}


def initial_prompt(config: dict[str, Any], dataset: Dataset, task: Task) -> Prompt:
    """The start: the user's prompt (or the dataset's, or a neutral one) in the run's layout; for a
    choice task answered by generation, with the options line added where the layout has none
    (``chat`` becomes ``chat-options``): the model must see the label words to answer with one.
    With ``--reasoning on`` the start reasons, and so does every candidate made from it."""
    instruction = config.get("prompt") or dataset.description or (
        NEUTRAL_CHOICE if isinstance(task, ChoiceTask) else NEUTRAL_GENERATION)
    layout = get_layout(config["layout"])
    if isinstance(task, ChoiceTask) and task.scoring == "generate":
        layout = with_options(layout)
    return Prompt(instruction=instruction, layout=layout, reasoning=config.get("reasoning") == "on")


def scoring_used(config: dict[str, Any], store: RunStore, run_id: str) -> str:
    """How a run scored choices: as asked (``--scoring``), else as its ledger shows: by generating
    if the task model generated (a served model may have been asked once for log-probabilities
    first, at the start: ``served_scoring``), else by log-probability. Reasoning replies are
    generated too: with ``--reasoning search`` final selection's generations are the twins' and do
    not count (the search answered directly); with ``--reasoning on`` no direct answer was asked
    for. Either way a prompt that reasons generates whatever the scoring (``ChoiceTask``)."""
    if config.get("scoring"):
        return config["scoring"]
    if config.get("reasoning") == "on":
        return "logprob"
    kinds = {(r["role"], r["kind"]) for r in store.call_rows(run_id)}
    generated = ("task", "generate") in kinds or ((SELECT_ROLE, "generate") in kinds and not config.get("reasoning"))
    return "generate" if generated else "logprob"


def _check_reasoning(config: dict[str, Any], plan: SelectionPlan, task: Task) -> None:
    """``--reasoning`` is for choice tasks (the reply is parsed to an option); ``on`` leaves
    nothing for ``--calibrate`` to calibrate; ``search`` decides in final selection, which must
    then be on (its direct prompts may be calibrated, its reasoning twins are not)."""
    reasoning = config.get("reasoning", "off")
    if reasoning == "off":
        return
    if not isinstance(task, ChoiceTask):
        raise PromptgymError(f"--reasoning {reasoning} needs a choice task (the reasoning ends with one of the "
                             "options); this dataset has no choices: leave --reasoning off")
    if reasoning == "on" and config.get("calibrate"):
        raise PromptgymError("--calibrate divides each option's probability by the prompt's prior for it, and with "
                             "--reasoning on every prompt reasons (no option probabilities): drop one of the two")
    if reasoning == "search" and not plan.enabled:
        why = plan.reason.split(";")[0].split(": the method's best")[0]
        raise PromptgymError(f"--reasoning search decides direct vs reasoning on the dev split, in final selection, "
                             f"which is {why}: give it a dev split (--dev-size N, --select-k 1 or more, a larger "
                             "--budget) or use --reasoning on or off")


def _check_statistic(plan: SelectionPlan, task: Task, reasoning: str = "off") -> None:
    """A soft statistic needs every raced prompt's option probabilities, which neither a generated
    answer nor a reasoning reply has (``--reasoning on`` or ``search``: the probability is None)."""
    if plan.statistic != DEFAULT_STATISTIC and isinstance(task, ChoiceTask) and reasoning != "off":
        raise PromptgymError(f"--select-statistic {plan.statistic} needs each option's probability, which a "
                             f"reasoning answer does not have (--reasoning {reasoning}): use --select-statistic "
                             "accuracy")
    if plan.statistic != DEFAULT_STATISTIC and not (isinstance(task, ChoiceTask) and task.scoring == "logprob"):
        kind = "a choice task scored by generation" if isinstance(task, ChoiceTask) else "a generation task"
        raise PromptgymError(f"--select-statistic {plan.statistic} needs a choice task scored by log-probability "
                             f"(each option's probability); this run is {kind}: use --select-statistic accuracy")
