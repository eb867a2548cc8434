"""Issue 26, item 1: long inputs on the embedded model (SmolLM2, context 2048) with the chat layout.

Before: the long-input check counted the text of the messages plus a guess per message, not the
chat template's own tokens (SmolLM2's adds a system block of about 20), so a row cut by
``--long-inputs truncate`` still overflowed at the held-out test ("prompt of 2068 tokens exceeds the
context of 2048"); and a training row that fitted the task model overflowed the optimizer model once
APE showed it among its demonstrations ("prompt of 2205 tokens leaves no room to generate 50").
"""

from __future__ import annotations

import json
import random

import pytest
from click.testing import CliRunner

from promptgym import api
from promptgym.cli import main
from promptgym.data.dataset import Example
from promptgym.models.factory import make_backend
from promptgym.runner.checks import request_tokens
from promptgym.store.runs import RunStore
from promptgym.tasks.prompt import Prompt, get_layout
from promptgym.tasks.task import ChoiceTask

pytestmark = pytest.mark.integration

SHORT = [("An absolute delight from start to finish.", "positive"), ("I loved every minute of it.", "positive"),
         ("The staff were warm and helpful.", "positive"), ("It broke after two days.", "negative"),
         ("The worst service I have ever had.", "negative"), ("Cold food and a rude waiter.", "negative")]


def _long(seed: int) -> str:
    """About 18,000 characters of review words (some 4,000 tokens)."""
    rng = random.Random(seed)
    words = "the room was clean and the staff were kind but the breakfast was cold and the view was lovely".split()
    return " ".join(rng.choice(words) for _ in range(3700))[:18000]


def _write(path, rows) -> str:
    path.write_text("".join(json.dumps({"input": t, "target": y, "choices": ["positive", "negative"]}) + "\n"
                            for t, y in rows))
    return str(path)


def _files(tmp_path) -> tuple[str, str]:
    train = _write(tmp_path / "train.jsonl", SHORT[:5] + [(_long(0), "positive")])
    test = _write(tmp_path / "test.jsonl", [SHORT[5], (_long(1), "negative")])
    return train, test


def test_the_check_counts_what_is_sent_chat_template_included():
    backend = make_backend("embedded")
    task = ChoiceTask()
    prompt = Prompt("Is the review positive or negative?", layout=get_layout("chat"))
    example = Example("e", "A fine stay.", ("positive",), ("positive", "negative"))
    request = task.request(prompt, example)
    sent = len(backend.tokenize(backend.prompt_text(request.messages, request.text, request.answer_prefix)))
    answer = max(backend.count_tokens(c) for c in request.continuations)
    assert request_tokens(backend, task, prompt, example) == sent + answer


def test_truncate_finishes_with_a_summary_and_every_request_fits(tmp_path):
    train, test = _files(tmp_path)
    result = CliRunner().invoke(main, ["optimize", "--train", train, "--test", test, "--method", "ape",
                                       "--budget", "12", "--param", "num_subsamples=1",
                                       "--param", "prompts_per_subsample=1", "--param", "num_demos=6",
                                       "--long-inputs", "truncate", "--json", "--quiet"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["test_initial"] is not None and summary["test_best"] is not None
    run = RunStore(api.default_store_url()).get_run(summary["run_id"])
    assert run["status"] == "finished"
    # the long training row was among APE's demonstrations: its proposal request was made
    assert summary["stats"]["proposed"] >= 1


def test_without_truncate_the_error_names_the_row_before_any_run_row(tmp_path):
    train, test = _files(tmp_path)
    result = CliRunner().invoke(main, ["optimize", "--train", train, "--test", test, "--method", "ape",
                                       "--budget", "12"])
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{train}:6: the prompt takes about" in lines[0], result.stderr
    assert "context of 2048" in lines[0] and "--long-inputs truncate" in lines[0]
    assert RunStore(api.default_store_url()).list_runs() == []
