"""What is checked before a run starts, so that it fails in one line before a run row exists (or,
on resume, before the run goes on) rather than inside the run: a task model without a chat template
asked for a chat layout, an optimizer model that cannot chat, a code reward without a working
sandbox, and rows too long for the task model's context (an error naming the row, or the input cut
to fit)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from promptgym.data.dataset import Dataset, Example, Splits
from promptgym.errors import PromptgymError
from promptgym.models.base import Backend, ScoreRequest
from promptgym.optimizers import Optimizer
from promptgym.projection import token_counter
from promptgym.sandbox import run_tests
from promptgym.tasks.code import CodeTask, CodeTestsMetric
from promptgym.tasks.judge import RubricJudge
from promptgym.tasks.prompt import Prompt, get_layout
from promptgym.tasks.task import ChoiceTask, Task


def check_chat(task_backend: Backend, optimizer: Optimizer, config: dict[str, Any]) -> None:
    """A task model without a chat template (a base model: ``gemma3-270m``) takes raw text only:
    a chat layout, or a method that switches to one (GRIPS's format edits), fails here, before a
    run is stored, instead of at the first model call."""
    if getattr(task_backend, "chat_template", True):
        return
    model = config["task_model"]
    if get_layout(config["layout"]).chat:
        raise PromptgymError(f"task model '{model}' has no chat template (a base model): use --layout plain")
    if optimizer.edits_layout:
        raise PromptgymError(f"task model '{model}' has no chat template (a base model), and {config['method']}'s "
                             "format edits switch to chat layouts: pass --param format_edits=false")


def check_optimizer_chat(backend: Backend, optimizer: Optimizer, config: dict[str, Any]) -> None:
    """Methods write prompts by chatting with the optimizer model: a model without a chat template
    cannot (one line before any call; GRIPS without ``sub`` edits never asks it)."""
    if not getattr(backend, "chat_template", True) and optimizer.uses_optimizer_model:
        raise PromptgymError(f"optimizer model '{config['optimizer_model']}' has no chat template (a base model), "
                             "so it cannot write prompts as an optimizer model: choose a chat model "
                             "(e.g. --optimizer-model embedded)")


JUDGE_OPTIONS = (("judge_model", "--judge-model"), ("judge_max_words", "--judge-max-words"),
                 ("judge_order", "--judge-order"), ("judge_scoring", "--judge-scoring"),
                 ("judge_check", "--judge-check"))


def check_judge(config: dict[str, Any], task: Task, dataset: Dataset) -> None:
    """A judge scores free text: a dataset with options (a choice task) cannot have one, and the
    judge's options without a judge reward would do nothing, so each is one line."""
    judged = isinstance(task.metric, RubricJudge)
    if judged and isinstance(task, ChoiceTask):
        raise PromptgymError(f"a judge reward scores free-text answers, and {dataset.source or dataset.name} has "
                             "options (a choice task, scored by accuracy): drop --reward judge:..., or use data "
                             "without choices")
    given = [flag for key, flag in JUDGE_OPTIONS if config.get(key) is not None]
    if given and not judged:
        raise PromptgymError(f"{given[0]} needs a judge reward: --reward judge:RUBRIC.md")


def check_judge_chat(backend: Backend, spec: str) -> None:
    """The judge is asked in chat messages: a model without a chat template cannot judge."""
    if not getattr(backend, "chat_template", True):
        raise PromptgymError(f"judge model '{spec}' has no chat template (a base model), so it cannot judge: "
                             "choose a chat model (e.g. --judge-model embedded)")


def check_sandbox(task: Task) -> None:
    """A code reward runs the model's answers in the sandbox (``promptgym.sandbox``): start it once
    on a trivial test, so that a missing bwrap, or one that cannot make namespaces here, is its one
    line now (``SandboxUnavailable``) and not a failed run after the first answers were paid for."""
    if not isinstance(task, CodeTask):
        return
    metric = task.metric
    while not isinstance(metric, CodeTestsMetric) and hasattr(metric, "base"):  # a length penalty's base
        metric = metric.base
    if isinstance(metric, CodeTestsMetric):
        run_tests("", ["assert True"], metric.limits, python=metric.python)


def request_tokens(backend: Backend, task: Task, prompt: Prompt, example: Example) -> int:
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


def fit_context(splits: Splits, backend: Backend, task: Task, prompt: Prompt, mode: str,
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
        need = request_tokens(backend, task, prompt, example)
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
            candidate = replace(example, input=text)
            need = request_tokens(backend, task, prompt, candidate)
            if need <= fits:
                return candidate
        raise PromptgymError(f"{where}: the prompt does not fit the {fits} tokens a row may take of the task model's "
                             f"context of {limit} even with the input cut to nothing (shorten the instruction or "
                             "the options)")

    return Splits(train=[fit(e) for e in splits.train], dev=[fit(e) for e in splits.dev],
                  test=[fit(e) for e in splits.test])
