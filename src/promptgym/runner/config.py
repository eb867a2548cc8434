"""A run's stored config and what is read back from it: the dataset (inline rows or a spec), exact
splits from files, the reward as a spec, and final selection's plan. A resume, ``predict``,
``export``, the report and the Gymnasium env rebuild a run from these, so a run is the same
wherever it is rebuilt."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from promptgym.data.dataset import Dataset, Example
from promptgym.data.loaders import load_dataset, load_split_files
from promptgym.errors import PromptgymError
from promptgym.evaluation.selection import (DEFAULT_LEVEL, DEFAULT_MARGIN, DEFAULT_STATISTIC, SelectionPlan,
                                            plan_selection)
from promptgym.tasks.judge import RubricJudge
from promptgym.tasks.metrics import ExactMatch, Metric
from promptgym.tasks.rewards import LengthPenalty, as_metric, load_reward, spec_of
from promptgym.tasks.task import CONTENT_FREE_INPUTS

LONG_INPUTS = ("error", "truncate")  # what a row too long for the task model's context becomes
REASONING = ("off", "on", "search")  # a choice task's answers: direct, reasoning, or raced on dev (setup.py)
TWINS = 2  # --reasoning search: the reasoning twins of the method's best and of the start


def reward_config(config: dict[str, Any], reward: Any, length_penalty: Any) -> Metric | None:
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
        reward = load_reward(reward)  # fails fast on a bad spec
    if isinstance(reward, RubricJudge):  # stored whole (the rubric's text too): a resume needs no file
        config["reward"], config["judge"] = reward.spec, reward.record()
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


def selection_plan(config: dict[str, Any], available: int | None, per_example: int = 1) -> SelectionPlan:
    """The run's final-selection plan (``available`` None: before the data is loaded, only the
    user's own choices are checked; ``per_example``: the calls a scored example costs, a judge's
    included). Runs stored before final selection existed have no
    ``select_k`` and replay without it. Exact splits without a dev file: off, and it says why."""
    files = config.get("split_files")
    if files and not files.get("dev") and config.get("select_k", 0):
        return SelectionPlan(0, config["select_k"], config.get("select_level", DEFAULT_LEVEL), 0,
                             "off (no --dev file): the method's best is returned unguarded",
                             config.get("select_statistic", DEFAULT_STATISTIC),
                             config.get("select_margin", DEFAULT_MARGIN))
    try:
        plan = plan_selection(available if available is not None else 10**9, config["budget"],
                              config["dev_size"], config.get("select_k", 0),
                              config.get("select_level", DEFAULT_LEVEL),
                              config.get("select_statistic", DEFAULT_STATISTIC),
                              config.get("select_margin", DEFAULT_MARGIN), config.get("select_sequential", False),
                              per_example, TWINS if config.get("reasoning") == "search" else 0)
    except ValueError as exc:
        raise PromptgymError(str(exc)) from None
    return with_priors(plan, config) if config.get("calibrate") and plan.enabled else plan


def with_priors(plan: SelectionPlan, config: dict[str, Any]) -> SelectionPlan:
    """Final selection's reserve under calibration: the race may have to read a prompt's label
    prior too (the start's, when the method never scored it), so it keeps the content-free calls of
    every entrant besides their dev calls; mostly they come from the cache, unspent."""
    extra = (plan.k + 1) * len(CONTENT_FREE_INPUTS)
    budget = config["budget"]
    if budget is not None and plan.reserve + extra >= budget:
        raise PromptgymError(f"--budget {budget} cannot pay for final selection with --calibrate ({plan.k + 1} prompts "
                             f"x ({plan.dev_size} dev + {len(CONTENT_FREE_INPUTS)} content-free) = "
                             f"{plan.reserve + extra} calls): raise --budget, or lower --dev-size or --select-k "
                             "(0 turns selection off)")
    return replace(plan, reserve=plan.reserve + extra)


def dataset_to_json(dataset: Dataset) -> dict[str, Any]:
    """Inline rows; an example's ``fields`` (an input rendered by an input template) only where it has them."""
    return dict(name=dataset.name, description=dataset.description, source=dataset.source,
                examples=[dict(id=e.id, input=e.input, targets=list(e.targets),
                               choices=list(e.choices) if e.choices else None, where=e.where,
                               **({"fields": [list(f) for f in e.fields]} if e.fields else {}))
                          for e in dataset.examples])


def split_files(config: dict[str, Any], dataset: str | Dataset | None, train: str, dev: str | None,
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
        source = dataset_from_config({"dataset": dataset, "fields": config["fields"],
                                      "input_template": config.get("input_template")})
    fields = config["fields"]
    splits = load_split_files(train, dev, test, input_field=fields.get("input"), target_field=fields.get("target"),
                              choices_field=fields.get("choices"), labels=source.labels if source else None,
                              labels_from=(source.source or source.name) if source else "",
                              input_template=config.get("input_template"))
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
    config["inline_dataset"] = dataset_to_json(Dataset(
        name=source.name if source else Path(train).stem, description=source.description if source else None,
        source=train, examples=[*splits.train, *splits.dev, *splits.test]))


def dataset_from_config(config: dict[str, Any]) -> Dataset:
    inline = config.get("inline_dataset")
    if inline:
        return Dataset(name=inline["name"], description=inline["description"], source=inline["source"],
                       examples=[Example(e["id"], e["input"], tuple(e["targets"]),
                                         tuple(e["choices"]) if e["choices"] else None, where=e.get("where", ""),
                                         fields=tuple((str(k), str(v)) for k, v in e.get("fields", ())))
                                 for e in inline["examples"]])
    fields = config.get("fields") or {}
    return load_dataset(config["dataset"], input_field=fields.get("input"),
                        target_field=fields.get("target"), choices_field=fields.get("choices"),
                        input_template=config.get("input_template"))
