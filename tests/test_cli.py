"""The CLI contract: methods listing, one-line errors, the JSON result, replay, runs, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from promptgym import api
from promptgym.cli import main
from promptgym.store.runs import RunStore

try:  # tests/integration may or may not be a package
    from integration.fake_openai_server import FakeOpenAIServer
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).parent / "integration"))
    from fake_openai_server import FakeOpenAIServer  # type: ignore[no-redef]

CONTRACT = {"method", "dataset", "initial_prompt", "best_prompt", "initial_score", "best_score", "test_initial",
            "test_best", "llm_calls", "cached_calls", "prompt_tokens", "completion_tokens", "seconds", "run_id"}
LABELS = ("positive", "negative", "neutral", "ambivalent")
SCRIPTED = ["--task-model", "scripted", "--optimizer-model", "scripted"]


@pytest.fixture
def dataset(tmp_path) -> str:
    path = tmp_path / "reviews.jsonl"
    with path.open("w") as handle:
        for i in range(140):  # the default split needs 30 train + 100 test
            handle.write(json.dumps({"input": f"Review {i}: the stay was {LABELS[i % 4]}.",
                                     "target": LABELS[i % 4]}) + "\n")
    return str(path)


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def _last_json(result) -> object:
    assert result.exit_code == 0, result.stderr + result.stdout
    return json.loads(result.stdout.strip().splitlines()[-1])


def _assert_one_line_error(result, contains: str) -> None:
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit)  # not an uncaught exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("promptgym: error:")
    assert contains in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_methods_lists_ape_first_on_its_line():
    result = _invoke("methods")
    assert result.exit_code == 0
    ape = [line for line in result.stdout.splitlines() if line.startswith("ape")]
    assert len(ape) == 1
    name, _, summary = ape[0].partition("\t")
    assert name == "ape" and "Automatic Prompt Engineer" in summary


def test_methods_params_lists_what_each_parameter_accepts_its_default_and_the_papers_value():
    listed = _invoke("methods", "--params", "protegi")
    assert listed.exit_code == 0 and listed.stdout == _invoke("methods", "protegi").stdout
    lines = listed.stdout.splitlines()
    assert lines[0].startswith("protegi: ProTeGi") and lines[1].split()[:5] == [
        "parameter", "accepts", "default", "paper", "description"]
    temperature = next(line for line in lines if line.startswith("temperature "))
    assert temperature.split()[:7] == ["temperature", "a", "number", ">=", "0", "0.7", "1.0"]
    assert len(lines) == 2 + 17
    _assert_one_line_error(_invoke("methods", "nosuch"), "unknown method 'nosuch'")


def test_bad_param_value_is_one_line_and_starts_no_run(dataset):
    result = _invoke("optimize", "--dataset", dataset, *SCRIPTED, "--method", "opro", "--param", "steps=x")
    _assert_one_line_error(result, "method 'opro': parameter 'steps' must be an integer >= 1, got 'x'")
    assert _last_json(_invoke("runs", "--json")) == []


def test_param_values_from_the_command_line_are_coerced(dataset):
    args = ["optimize", "--dataset", dataset, *SCRIPTED, "--method", "gpo", "--budget", "20",
            "--train-size", "8", "--test-size", "4", "--json"]
    as_typed = _last_json(_invoke(*args, "--param", "momentum=False", "--param", "temperature=1",
                                  "--param", "epochs=1.0"))
    canonical = _last_json(_invoke(*args, "--param", "momentum=false", "--param", "temperature=1.0",
                                   "--param", "epochs=1"))
    assert canonical["llm_calls"] == 0  # the same requests: all answered by the cache
    assert canonical["best_prompt"] == as_typed["best_prompt"]


def test_method_parameters_in_brackets_are_the_same_as_param(dataset):
    args = ["optimize", "--dataset", dataset, *SCRIPTED, "--budget", "400", "--train-size", "20",
            "--test-size", "4", "--dev-size", "0", "--json"]
    bracketed = _last_json(_invoke(*args, "--method", "opro[candidate_eval=halving,steps=2]"))
    assert bracketed["method"] == "opro" and bracketed["stats"]["candidate_eval"]["raced"]["pools"] >= 1
    with_param = _last_json(_invoke(*args, "--method", "opro", "--param", "candidate_eval=halving",
                                    "--param", "steps=2"))
    assert with_param["llm_calls"] == 0 and with_param["best_prompt"] == bracketed["best_prompt"]  # all cached
    _assert_one_line_error(_invoke(*args, "--method", "opro[steps]"), "--method 'opro[steps]': expected KEY=VALUE")
    _assert_one_line_error(_invoke(*args, "--method", "opro[candidate_eval=thompson]"),
                           "parameter 'candidate_eval' must be one of full, halving, rejects")


def test_missing_dataset_file(tmp_path):
    missing = str(tmp_path / "nope.jsonl")
    result = _invoke("optimize", "--dataset", missing, *SCRIPTED, "--budget", "5")
    _assert_one_line_error(result, f"{missing}: no such file")
    # the aborted run does not pretend to be running
    assert [r["status"] for r in RunStore(f"sqlite:///{Path(os.environ['PROMPTGYM_HOME']) / 'runs.sqlite'}")
            .list_runs()] in ([], ["failed"])


def test_malformed_row(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"input": "a", "target": "b"}\n{"input": "c", target: "d"}\n')
    _assert_one_line_error(_invoke("optimize", "--dataset", str(path), *SCRIPTED), f"{path}:2:")


def test_unknown_method(dataset):
    result = _invoke("optimize", "--dataset", dataset, *SCRIPTED, "--method", "nosuch")
    _assert_one_line_error(result, "unknown method 'nosuch'")
    assert "ape" in result.stderr  # lists what is known


def test_unknown_param(dataset):
    result = _invoke("optimize", "--dataset", dataset, *SCRIPTED, "--param", "bogus=3")
    _assert_one_line_error(result, "bogus")


def test_malformed_param(dataset):
    _assert_one_line_error(_invoke("optimize", "--dataset", dataset, *SCRIPTED, "--param", "novalue"),
                           "KEY=VALUE")


def test_unknown_run_id():
    _assert_one_line_error(_invoke("resume", "deadbeef", "--json"), "no run 'deadbeef'")


def test_error_in_a_real_process_is_one_line(tmp_path):
    env = dict(os.environ, PROMPTGYM_HOME=str(tmp_path / "home"))
    proc = subprocess.run([sys.executable, "-m", "promptgym.cli", "optimize", "--dataset", str(tmp_path / "x.csv"),
                           *SCRIPTED], capture_output=True, text=True, env=env)
    assert proc.returncode != 0
    assert proc.stderr.splitlines() == [f"promptgym: error: {tmp_path / 'x.csv'}: no such file"]


def test_optimize_replay_runs_and_resume(dataset):
    # budget 60: 20 for final selection (10 dev x 2), 40 for the search, which ends before the budget
    # binds (cached answers are free, so a bound run could go further when repeated)
    args = ["optimize", *SCRIPTED, "--dataset", dataset, "--method", "ape", "--budget", "60", "--json"]
    first = _last_json(_invoke(*args))
    assert CONTRACT <= set(first)
    assert first["method"] == "ape" and first["dataset"] == dataset
    # the numbers printed are the run's stored scores: of the candidates recorded, on the splits said
    details = api.show(first["run_id"])
    by_id = {c["candidate_id"]: c for c in details.candidates}
    stored = {(by_id[r["candidate_id"]]["instruction"], r["split"]): r["score"] for r in details.scores}
    start, best = first["initial_prompt"], first["best_prompt"]
    assert [c["instruction"] for c in details.candidates if c["operation"] == "initial"] == [start]
    assert (stored[(start, "train-final")], stored[(start, "test")]) == (first["initial_score"], first["test_initial"])
    assert (stored[(best, "train-final")], stored[(best, "test")]) == (first["best_score"], first["test_best"])
    assert len(next(r for r in details.scores if r["split"] == "test")["per_example"]) == first["test_size"] == 100
    # APE returns its own best candidate (the starting prompt is not in its pool), so best_score
    # may be below initial_score; the verdict field must agree with the held-out numbers.
    assert first["improved_on_test"] == (first["test_best"] > first["test_initial"])
    assert first["llm_calls"] > 0 and first["prompt_tokens"] > 0
    assert first["budget_used"] <= 60
    assert isinstance(first["run_id"], str) and first["seconds"] >= 0

    # the same run again: every call is answered by the cache
    second = _last_json(_invoke(*args))
    assert second["llm_calls"] == 0
    assert second["cached_calls"] >= first["llm_calls"]
    assert second["prompt_tokens"] == 0 and second["completion_tokens"] == 0
    assert second["run_id"] != first["run_id"]
    for key in ("best_prompt", "best_score", "test_initial", "test_best"):
        assert second[key] == first[key]

    listed = _last_json(_invoke("runs", "--json"))
    assert [r["run_id"] for r in listed] == [second["run_id"], first["run_id"]]
    # the original fields first, unchanged; then the held-out columns of the table
    assert list(listed[1]) == ["run_id", "method", "dataset", "status", "best_score",
                               "test_initial", "test_best", "test_delta", "kept_start", "llm_calls"]
    assert listed[1] == {"run_id": first["run_id"], "method": "ape", "dataset": dataset,
                         "status": "finished", "best_score": first["best_score"],
                         "test_initial": first["test_initial"], "test_best": first["test_best"],
                         "test_delta": first["test_delta"], "kept_start": first["kept_start"],
                         "llm_calls": first["llm_calls"]}

    resumed = _last_json(_invoke("resume", first["run_id"], "--json"))
    assert resumed == first

    shown = _invoke("show", first["run_id"])
    assert shown.exit_code == 0 and "initial" in shown.stdout and first["run_id"] in shown.stdout


def test_json_fields_and_their_order_are_the_contract(dataset):
    summary = _last_json(_invoke("optimize", *SCRIPTED, "--dataset", dataset, "--budget", "10",
                                 "--train-size", "6", "--test-size", "4", "--json"))
    assert list(summary) == [
        "run_id", "method", "dataset", "initial_prompt", "best_prompt", "initial_score", "best_score",
        "test_initial", "test_best", "improved_on_test", "llm_calls", "cached_calls", "budget",
        "budget_used", "prompt_tokens", "completion_tokens", "model_seconds", "seconds", "seed",
        "train_size", "test_size", "task_model", "optimizer_model", "candidates", "stats", "dev_size",
        "dev_initial", "dev_best", "kept_start", "selection", "method_best_prompt", "test_method_best",
        "test_delta", "test_interval", "test_p_value", "verdict", "projection", "test_share_better",
        "detectable", "calibration", "answer_mode"]
    assert summary["answer_mode"] == "direct"  # a choice task answered without reasoning


def test_stoppers_from_the_cli_reach_the_run_and_resume_stops_the_same_way(dataset):
    args = ["optimize", *SCRIPTED, "--dataset", dataset, "--method", "opro", "--budget", "200",
            "--train-size", "6", "--test-size", "10", "--max-steps", "2", "--json"]
    first = _last_json(_invoke(*args))
    assert first["stats"]["stopped_by"] == "max_steps" and first["stats"]["steps"] == 2
    assert first["stats"]["opro"]["steps_run"] == 2
    store = RunStore(f"sqlite:///{Path(os.environ['PROMPTGYM_HOME']) / 'runs.sqlite'}")
    assert store.get_run(first["run_id"])["config"]["stop"] == {"max_steps": 2}
    store.set_status(first["run_id"], "interrupted")
    resumed = _last_json(_invoke("resume", first["run_id"], "--json"))
    assert resumed["stats"]["stopped_by"] == "max_steps" and resumed["best_prompt"] == first["best_prompt"]
    assert resumed["llm_calls"] == first["llm_calls"]
    bad = _invoke("optimize", *SCRIPTED, "--dataset", dataset, "--max-steps", "0")
    assert bad.exit_code != 0 and "--max-steps" in bad.stderr


def test_resume_of_an_interrupted_run_replays_it(dataset):
    args = ["optimize", *SCRIPTED, "--dataset", dataset, "--budget", "40", "--train-size", "10",
            "--test-size", "20", "--json"]
    first = _last_json(_invoke(*args))
    store = RunStore(f"sqlite:///{Path(os.environ['PROMPTGYM_HOME']) / 'runs.sqlite'}")
    store.set_status(first["run_id"], "interrupted")  # as if killed before it finished
    resumed = _last_json(_invoke("resume", first["run_id"], "--json"))
    assert CONTRACT <= set(resumed)
    assert resumed["run_id"] == first["run_id"]
    assert resumed["best_prompt"] == first["best_prompt"] and resumed["test_best"] == first["test_best"]
    assert resumed["llm_calls"] == first["llm_calls"]  # no new model call, the replay was free
    assert resumed["budget_used"] == first["budget_used"] <= 40
    assert store.get_run(first["run_id"])["status"] == "finished"


def test_field_names_can_be_given_for_jsonl(tmp_path):
    data = tmp_path / "custom.jsonl"
    data.write_text("".join(json.dumps({"q": f"text {i}", "y": ["pos", "neg"][i % 2]}) + "\n" for i in range(8)))
    base = ["optimize", "--dataset", str(data), "--task-model", "scripted", "--optimizer-model", "scripted",
            "--budget", "10", "--train-size", "4", "--test-size", "2", "--json", "--quiet"]
    missing = CliRunner().invoke(main, base)
    assert missing.exit_code == 2 and "custom.jsonl:1: missing input field" in missing.output
    assert "--input-field" in missing.output
    ok = CliRunner().invoke(main, base + ["--input-field", "q", "--target-field", "y"])
    assert ok.exit_code == 0, ok.output
    summary = json.loads(ok.output.strip().splitlines()[-1])
    assert summary["dataset"] == str(data) and summary["test_size"] == 2


def _set_created(run_id: str, when: str) -> None:
    """Back-date a run (local time), as if it had been started then."""
    import datetime as dt

    from sqlalchemy import update

    from promptgym.store.runs import runs as runs_table

    store = RunStore(f"sqlite:///{Path(os.environ['PROMPTGYM_HOME']) / 'runs.sqlite'}")
    with store.engine.begin() as conn:
        conn.execute(update(runs_table).where(runs_table.c.run_id == run_id)
                     .values(created=dt.datetime.fromisoformat(when).timestamp()))


def test_runs_filters_and_limit(dataset, tmp_path):
    base = ["optimize", *SCRIPTED, "--budget", "20", "--train-size", "6", "--test-size", "6", "--dev-size", "0",
            "--json", "--quiet"]
    other = tmp_path / "other-set.jsonl"
    other.write_text(Path(dataset).read_text())
    ape = _last_json(_invoke(*base, "--dataset", dataset, "--method", "ape"))
    opro = _last_json(_invoke(*base, "--dataset", dataset, "--method", "opro", "--param", "steps=1"))
    late = _last_json(_invoke(*base, "--dataset", str(other), "--method", "ape"))
    boom = tmp_path / "boom.py"  # a reward that fails mid-run (a missing model now fails before the run row)
    boom.write_text("def reward(prediction, example):\n    raise ValueError('boom')\n")
    failed = _invoke(*base, "--dataset", str(other), "--method", "ape", "--reward", f"{boom}:reward")
    assert failed.exit_code != 0
    _set_created(ape["run_id"], "2026-01-05T12:00:00")
    _set_created(opro["run_id"], "2026-02-01T00:00:00")
    _set_created(late["run_id"], "2026-03-01T09:00:00")

    def ids(*args: str) -> list[str]:
        return [r["run_id"] for r in _last_json(_invoke("runs", "--json", *args))]

    everything = ids()
    assert len(everything) == 4 and everything[1:] == [late["run_id"], opro["run_id"], ape["run_id"]]
    assert ids("--method", "opro") == [opro["run_id"]]
    assert ids("--method", "op") == []  # the method is matched exactly
    assert ids("--dataset", "other-set") == [everything[0], late["run_id"]]  # a substring of the dataset
    assert ids("--dataset", "reviews", "--method", "ape") == [ape["run_id"]]
    assert ids("--status", "failed") == [everything[0]]
    assert ids("--status", "finished", "--limit", "2") == [late["run_id"], opro["run_id"]]
    assert ids("--since", "2026-02-01", "--status", "finished") == [late["run_id"], opro["run_id"]]
    assert ids("--since", "2026-02-02", "--status", "finished") == [late["run_id"]]
    assert ids("--limit", "1", "--dataset", "%") == []  # no SQL wildcard in the substring
    bad = _invoke("runs", "--since", "2026-13-01")
    assert bad.exit_code != 0 and len(bad.stderr.splitlines()) == 1 and "--since" in bad.stderr
    assert _invoke("runs", "--limit", "0").exit_code != 0
    assert _invoke("runs", "--status", "done").exit_code != 0


def test_runs_table_shows_test_start_to_returned_delta_kept_start_and_calls(dataset):
    from io import StringIO

    from rich.console import Console

    from promptgym.report import tables

    summary = _last_json(_invoke("optimize", *SCRIPTED, "--dataset", dataset, "--budget", "80",
                                 "--train-size", "6", "--test-size", "10", "--dev-size", "10", "--json", "--quiet"))
    assert summary["kept_start"] is not None  # final selection ran: the column says yes or no
    saved, buffer = tables.console, StringIO()
    tables.console = Console(file=buffer, width=300)
    try:
        assert _invoke("runs").exit_code == 0
    finally:
        tables.console = saved
    header, row = [line for line in buffer.getvalue().splitlines() if "│" in line or "┃" in line][:2]
    assert [c.strip() for c in header.strip("┃").split("┃")][-4:] == ["test start -> returned", "delta",
                                                                     "kept start", "calls"]
    cells = [c.strip() for c in row.strip("│").split("│")]
    assert cells[0] == summary["run_id"]
    assert cells[-4:] == [f"{summary['test_initial']:.3f} -> {summary['test_best']:.3f}",
                          f"{summary['test_delta']:+.3f}", "yes" if summary["kept_start"] else "no",
                          str(summary["llm_calls"])]


# -- issue 26: outside cases, one line each ------------------------------------------------------

@pytest.mark.parametrize("seed", ["-1", "-100"])
def test_a_negative_seed_is_one_line(dataset, seed):
    """Issue 26: ``--seed -1`` was a numpy ValueError traceback ("expected non-negative integer")."""
    result = _invoke("optimize", *SCRIPTED, "--dataset", dataset, "--seed", seed, "--budget", "10")
    _assert_one_line_error(result, f"Invalid value for '--seed': {seed} is not in the range x>=0")


@pytest.mark.parametrize("case", ["file", "below a file", "impossible"])
def test_promptgym_home_that_cannot_be_a_directory_is_one_line(dataset, tmp_path, monkeypatch, case):
    """Issue 26: PROMPTGYM_HOME at a file or an impossible path was a FileExistsError /
    NotADirectoryError traceback from mkdir."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    home = {"file": afile, "below a file": afile / "home", "impossible": Path("/proc/promptgym-home")}[case]
    monkeypatch.setenv("PROMPTGYM_HOME", str(home))
    expected = {"file": f"PROMPTGYM_HOME={home}: not a directory (point PROMPTGYM_HOME at a directory)",
                "below a file": f"PROMPTGYM_HOME={home}: cannot create the directory (a part of the path is a file)",
                "impossible": f"PROMPTGYM_HOME={home}: cannot create the directory ("}[case]
    for args in (("runs",), ("optimize", *SCRIPTED, "--dataset", dataset, "--budget", "10")):
        _assert_one_line_error(_invoke(*args), expected)
    assert afile.read_text() == "x"


def _budget_paragraph() -> str:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = readme.index("**Budget.**")
    return " ".join(readme[start:readme.index("\n\n", start)].split())


@pytest.mark.parametrize("budget", [1, 40])
def test_the_calls_a_run_sends_are_what_the_budget_paragraph_says(tmp_path, budget):
    """Issue 26: ``--budget 1`` still sent ~31 requests: the training scores of the start and the
    returned prompt are made after the search, uncharged, and the README said only the held-out
    test was. The README now says what is not charged and the bound; the requests at the server
    are checked against it."""
    pytest.importorskip("openai")
    from support import SENTIMENT, sentiment_reply

    said = _budget_paragraph()
    assert "training scores of your prompt and the returned one" in said
    assert "at most budget + 2 x train size + 3 x test size calls" in said
    assert "are charged like the search's, so nothing before the held-out test escapes the budget" in said
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps({"input": t, "target": y}) + "\n" for t, y in SENTIMENT))
    with FakeOpenAIServer(reply=sentiment_reply) as server:  # every call, task and optimizer, goes here
        spec = f"openai:fake-model@{server.base_url}"
        summary = _last_json(_invoke("optimize", "--dataset", str(data), "--method", "ape", "--budget", str(budget),
                                     "--train-size", "6", "--test-size", "5", "--task-model", spec,
                                     "--optimizer-model", spec, "--json", "--quiet"))
        sent = len(server.received)
    assert sent == summary["llm_calls"] and summary["budget_used"] <= budget
    assert sent <= budget + 2 * 6 + 3 * 5
    if budget == 1:  # the start's call asking for log-probabilities is the budget's one call (the fake
        # server gives none), then your prompt scored on all 5 test and 6 train examples
        assert (summary["budget_used"], sent) == (1, 1 + 5 + 6)
