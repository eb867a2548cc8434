"""What a run says before and while it runs (issue 27, items 4 and 5): parameters a method's plan
cut to fit the budget, printed with their new values and kept in the projection and the summary's
``stats``; the held-out test's share of the projection; a first time estimate on a machine that has
timed no call; the Python API shows progress like the CLI unless ``quiet``."""

from __future__ import annotations

import io
import json

from click.testing import CliRunner

from promptgym import api
from promptgym.cli import main
from promptgym.runner.progress import RunStatus

FIRST_ESTIMATE_CALLS = 8  # promptgym.runner.progress.FIRST_ESTIMATE_CALLS

SCRIPTED = ["--task-model", "scripted", "--optimizer-model", "scripted"]
DATA = ["--dataset", "example:sentiment", "--train-size", "15", "--test-size", "20"]


def test_a_plan_cut_to_fit_the_budget_is_said_before_the_run_and_kept():
    run = ["optimize", *DATA, *SCRIPTED, "--method", "opro", "--param", "per_step=4", "--budget", "60",
           "--dev-size", "0"]  # the whole budget for the search
    dry = CliRunner().invoke(main, [*run, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "  opro's plan was cut to fit the budget: steps 200 -> 1, per_step 4 -> 2" in dry.stdout.splitlines()
    result = CliRunner().invoke(main, [*run, "--json"])
    assert result.exit_code == 0, result.output
    err = result.stderr
    assert err.index("per_step 4 -> 2") < err.index("promptgym: step 1")  # before the search
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    cut = {"steps": {"asked": 200, "used": 1}, "per_step": {"asked": 4, "used": 2}}
    assert summary["stats"]["adjusted"] == cut == summary["projection"]["adjusted"]
    assert summary["stats"]["opro"]["per_step"] == 2


def test_grips_on_a_small_budget_says_what_its_plan_became():
    result = CliRunner().invoke(main, ["optimize", *DATA, *SCRIPTED, "--method", "grips", "--budget", "80",
                                       "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "grips's plan was cut to fit the budget: num_iter 10 -> 1, candidates 5 -> 1" in result.stdout


def test_a_budget_below_the_smallest_plan_is_said():
    result = CliRunner().invoke(main, ["optimize", *DATA, *SCRIPTED, "--method", "opro", "--budget", "10",
                                       "--dev-size", "0", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["plan_short"] == {"needs": 31, "budget": 10}  # 15 for the start + 1 candidate on 15 + its proposal
    text = CliRunner().invoke(main, ["optimize", *DATA, *SCRIPTED, "--method", "opro", "--budget", "10",
                                     "--dev-size", "0", "--dry-run"]).stdout
    assert "even opro's smallest plan needs about 31 calls, more than the 10 the search has" in text


def test_the_projection_names_the_heldout_test_and_how_to_size_it():
    result = CliRunner().invoke(main, ["optimize", *DATA, *SCRIPTED, "--method", "ape", "--budget", "60",
                                       "--dry-run"])
    line = next(x for x in result.stdout.splitlines() if "held-out test" in x)
    assert "not charged to the budget" in line and "--test-size sizes it" in line


def test_a_first_time_estimate_after_the_first_calls_on_a_fresh_machine():
    now = [0.0]
    stream = io.StringIO()
    projection = {"calls": 108, "prompt_tokens": 1, "completion_tokens": 1, "seconds": None,
                  "heldout": {"calls": 40}}
    status = RunStatus(100, 0, projection, stream, live=False, clock=lambda: now[0])
    for _ in range(FIRST_ESTIMATE_CALLS):
        now[0] += 0.5
        status.on_call(cached=False, charged=True)
    (line,) = stream.getvalue().splitlines()
    assert line.startswith("promptgym: time: about 50 s to go, a first estimate from the first 8 calls (0.50 s each)")
    assert "for the 100 projected still (the held-out test's 40 included)" in line
    status.on_call(cached=False, charged=True)
    assert len(stream.getvalue().splitlines()) == 1  # once
    timed = RunStatus(100, 0, {**projection, "seconds": 30.0}, io.StringIO(), live=False)
    for _ in range(FIRST_ESTIMATE_CALLS):
        timed.on_call(cached=False, charged=True)
    assert timed.stream.getvalue() == ""  # the projection had a time already


def test_the_api_shows_progress_unless_asked_not_to(capsys):
    common = dict(method="opro", budget=60, train_size=15, test_size=20, dev_size=0, task_model="scripted",
                  optimizer_model="scripted")
    api.optimize("example:sentiment", seed=0, **common)
    err = capsys.readouterr().err
    assert "projected for opro (budget 60)" in err and "promptgym: step 1 | best " in err
    api.optimize("example:sentiment", seed=1, quiet=True, **common)
    assert capsys.readouterr().err == ""


def test_dp2o_says_which_of_its_stages_were_cut_to_fit_the_budget():
    result = CliRunner().invoke(main, ["optimize", *DATA, *SCRIPTED, "--method", "dp2o", "--budget", "150",
                                       "--dry-run"])
    assert result.exit_code == 0, result.output
    [line] = [x for x in result.stdout.splitlines() if "dp2o's plan was cut to fit the budget" in x]
    assert "rounds 3 -> 1" in line  # rounds go first (dp2o.plan_budget's order of reductions)
