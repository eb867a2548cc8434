"""``promptgym optimize --dry-run`` and the projection around a real run: no model call and no
run for a dry run; the projection printed before a run and kept in its summary; the plain status
line off a terminal, and silence with --quiet."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from promptgym import api
from promptgym.cli import main
from promptgym.models.scripted import ScriptedBackend

SCRIPTED = ["--task-model", "scripted", "--optimizer-model", "scripted"]
RUN = ["optimize", "--dataset", "example:sentiment", "--method", "opro", "--budget", "100", "--train-size", "15",
       "--test-size", "20", *SCRIPTED]


@pytest.fixture
def no_model_calls(monkeypatch):
    """Every scripted model call fails the test."""
    def refuse(self, requests, on_result):
        raise AssertionError("a dry run called the model")

    for kind in ("generate", "score", "embed"):
        monkeypatch.setattr(ScriptedBackend, kind, refuse)


def test_dry_run_makes_no_model_call_and_no_run(no_model_calls):
    result = CliRunner().invoke(main, [*RUN, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("projected for opro (budget 100): about ")
    assert "final selection: at most 50 calls" in result.stdout  # 25 dev examples x (1 + 1): half the budget
    assert api.runs() == []


def test_dry_run_json(no_model_calls):
    result = CliRunner().invoke(main, [*RUN, "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["charged_calls"] == record["search"]["calls"] + record["selection"]["calls"] <= 100
    assert record["heldout"]["calls"] == 2 * 20  # OPRO scores the start on train itself
    assert record["prompt_tokens"] > 0 and record["seconds"] is None
    assert api.runs() == []


def test_dry_run_errors_are_one_line():
    result = CliRunner().invoke(main, [*RUN[:-4], "--dry-run", "--method", "nope", *SCRIPTED])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "unknown method 'nope'" in result.stderr


def test_a_run_prints_its_projection_and_plain_progress_and_keeps_the_projection():
    result = CliRunner().invoke(main, [*RUN, "--json"])
    assert result.exit_code == 0, result.output
    assert "projected for opro (budget 100)" in result.stderr
    assert "promptgym: step 1 | best " in result.stderr  # not a terminal: a plain line
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    projection = summary["projection"]
    assert projection["selection"]["calls"] == summary["selection"]["reserve"]
    assert summary["budget_used"] <= projection["charged_calls"]


def test_quiet_prints_neither():
    result = CliRunner().invoke(main, [*RUN, "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "projected" not in result.stderr and "promptgym: step" not in result.stderr
