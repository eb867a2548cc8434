"""Config files (``--config FILE``): every option as a TOML key, the same call as the flags, flags
override, and one-line errors naming the file and the key."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from promptgym.cli import main

ROOT = Path(__file__).resolve().parents[1]


class _Summary:
    def to_dict(self, full: bool = True) -> dict:
        return {"captured": True}


@pytest.fixture
def optimize_calls(monkeypatch) -> list[dict]:
    """api.optimize replaced by one that records its keyword arguments (no run is made)."""
    from promptgym import api

    calls: list[dict] = []

    def capture(**kwargs):
        calls.append(kwargs)
        return SimpleNamespace(summary=_Summary())

    monkeypatch.setattr(api, "optimize", capture)
    monkeypatch.setattr("promptgym.report.summary_table", lambda summary: None)
    return calls


@pytest.fixture
def bench_calls(monkeypatch) -> list[dict]:
    import promptgym.bench

    calls: list[dict] = []

    def capture(out, **kwargs):
        calls.append(dict(out=out, **kwargs))
        return {"methods": [], "meta": {}}

    monkeypatch.setattr(promptgym.bench, "bench", capture)
    return calls


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Config files by a relative name, as a user gives them (and as the messages then show them)."""
    monkeypatch.chdir(tmp_path)


def _write(tmp_path: Path, text: str, name: str = "run.toml") -> str:
    (tmp_path / name).write_text(text)
    return name


def _one_line_error(result, expected: str) -> None:
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit)
    assert result.stderr.strip().splitlines() == [f"promptgym: error: {expected}"], result.stderr
    assert "Traceback" not in result.stderr + result.stdout


FLAGS = ["--dataset", "data.jsonl", "--method", "opro", "--budget", "120", "--seed", "3", "--prompt", "Say it.",
         "--train-size", "12", "--dev-size", "0", "--select-k", "2", "--select-level", "0.05", "--select-statistic", "margin",
         "--select-margin", "0.02", "--select-sequential", "--test-size", "7",
         "--task-model", "scripted", "--optimizer-model", "scripted", "--layout", "plain", "--normalize", "mean",
         "--scoring", "generate", "--calibrate", "--reasoning", "on", "--reasoning-tokens", "80", "--reward", "accuracy",
         "--judge-model", "scripted", "--judge-max-words", "9", "--judge-order", "both",
         "--judge-scoring", "generate", "--judge-check", "token-f1", "--length-penalty", "5", "--length-weight", "0.25",
         "--long-inputs", "truncate", "--input-field", "q", "--target-field", "y", "--choices-field", "c",
         "--max-steps", "4", "--patience", "2", "--target", "0.9", "--max-seconds", "30",
         "--param", "steps=3", "--param", 'meta="x y"', "--cache-url", "sqlite:///c.sqlite", "--json", "--quiet",
         "--input-template", "{{ q }}\\n{{ c }}"]
TOML = """\
dataset = "data.jsonl"
method = "opro"
budget = 120
seed = 3
prompt = "Say it."
train-size = 12
dev_size = 0
select-k = 2
select_level = 0.05
select-statistic = "margin"
select_margin = 0.02
select-sequential = true
test-size = 7
task-model = "scripted"
optimizer_model = "scripted"
layout = "plain"
normalize = "mean"
scoring = "generate"
calibrate = true
reasoning = "on"
reasoning-tokens = 80
reward = "accuracy"
judge-model = "scripted"
judge_max_words = 9
judge-order = "both"
judge_scoring = "generate"
judge-check = "token-f1"
length-penalty = 5
length-weight = 0.25
long-inputs = "truncate"
input-field = "q"
target_field = "y"
choices-field = "c"
max-steps = 4
patience = 2
target = 0.9
max_seconds = 30
cache_url = "sqlite:///c.sqlite"
json = true
quiet = true
dry-run = false
input-template = "{{ q }}\\n{{ c }}"

[params]
steps = 3
meta = "x y"
"""


def test_every_optimize_key_makes_the_same_api_call_as_its_flag(tmp_path, optimize_calls):
    assert _invoke("optimize", *FLAGS).exit_code == 0
    result = _invoke("optimize", "--config", _write(tmp_path, TOML))
    assert result.exit_code == 0, result.stderr
    from_flags, from_file = optimize_calls
    assert from_file == from_flags
    assert from_file["params"] == {"steps": 3, "meta": "x y"} and from_file["stop"]["max_steps"] == 4
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"captured": True}  # json = true took effect


def test_the_toml_keys_cover_every_optimize_option():
    """No option is left out of the file: each one's long name is a key in the test file above."""
    optimize = main.commands["optimize"]
    keys = {line.split(" = ")[0].replace("_", "-") for line in TOML.splitlines() if " = " in line}
    names = {opt[2:] for p in optimize.params for opt in p.opts if opt.startswith("--")}
    assert names - keys == {"config", "param", "train", "dev", "test"}  # [params] table; the files below


def test_split_file_keys(tmp_path, optimize_calls):
    text = 'train = "a.jsonl"\ndev = "b.jsonl"\ntest = "c.jsonl"\n'
    assert _invoke("optimize", "--config", _write(tmp_path, text)).exit_code == 0
    assert _invoke("optimize", "--train", "a.jsonl", "--dev", "b.jsonl", "--test", "c.jsonl").exit_code == 0
    assert optimize_calls[0] == optimize_calls[1]
    assert (optimize_calls[0]["train_file"], optimize_calls[0]["test_file"]) == ("a.jsonl", "c.jsonl")


def test_command_line_flags_override_the_file(tmp_path, optimize_calls):
    path = _write(tmp_path, TOML)
    assert _invoke("optimize", "--config", path, "--budget", "9", "--method", "ape", "--param", "steps=5").exit_code == 0
    call = optimize_calls[0]
    assert (call["budget"], call["method"]) == (9, "ape")
    assert call["params"] == {"steps": 5, "meta": "x y"}  # per key: the command line's wins
    assert call["seed"] == 3  # not given on the command line: the file's
    # a flag given with its default value still overrides the file
    assert _invoke("optimize", "--config", path, "--normalize", "none").exit_code == 0
    assert optimize_calls[1]["normalize"] == "none"


def test_defaults_stay_for_keys_the_file_leaves_out(tmp_path, optimize_calls):
    assert _invoke("optimize", "--config", _write(tmp_path, 'dataset = "d.jsonl"\n')).exit_code == 0
    assert _invoke("optimize", "--dataset", "d.jsonl").exit_code == 0
    assert optimize_calls[0] == optimize_calls[1]


def test_unknown_key_names_the_file_and_the_key(tmp_path, optimize_calls):
    path = _write(tmp_path, 'dataset = "d.jsonl"\nbudgett = 3\n')
    result = _invoke("optimize", "--config", path)
    assert result.exit_code != 0 and optimize_calls == []
    line = result.stderr.strip()
    assert line.startswith(f"promptgym: error: {path}: budgett: unknown key; known keys: budget, ")
    assert "\n" not in line and "[params]" in line
    _one_line_error(_invoke("optimize", "--config", _write(tmp_path, "param = ['steps=3']\n")),
                    "run.toml: param: unknown key (method parameters go in a [params] table); "
                    + line.split("; ", 1)[1].removeprefix("promptgym: error: "))


@pytest.mark.parametrize("text, expected", [
    ('budget = "abc"', 'budget: expected an integer >= 1, got "abc"'),
    ("budget = 0", "budget: expected an integer >= 1, got 0"),
    ("budget = 2.5", "budget: expected an integer >= 1, got 2.5"),
    ("train_size = true", "train_size: expected an integer >= 1, got true"),
    ("select-level = 1", "select-level: expected a number > 0 and < 1, got 1"),
    ('normalize = "max"', 'normalize: expected one of: mean, none, got "max"'),
    ("method = 3", "method: expected a string, got 3"),
    ('json = "yes"', 'json: expected true or false, got "yes"'),
    ("params = 3", 'params: expected a table of method parameters ([params] with KEY = VALUE lines), got 3'),
])
def test_wrong_type_names_the_file_the_key_and_what_it_accepts(tmp_path, optimize_calls, text, expected):
    path = _write(tmp_path, text + "\n")
    _one_line_error(_invoke("optimize", "--config", path), f"{path}: {expected}")
    assert optimize_calls == []


def test_a_key_in_both_spellings_is_one_line(tmp_path, optimize_calls):
    path = _write(tmp_path, "train-size = 3\ntrain_size = 4\n")
    _one_line_error(_invoke("optimize", "--config", path), f"{path}: train_size: given twice (also as train-size); keep one")
    assert optimize_calls == []


def test_toml_syntax_error_names_the_file_and_line(tmp_path, optimize_calls):
    path = _write(tmp_path, 'dataset = "d.jsonl"\nbudget = 3\nseed = = 1\n')
    result = _invoke("optimize", "--config", path)
    _one_line_error(result, result.stderr.strip().removeprefix("promptgym: error: "))
    assert result.stderr.startswith(f"promptgym: error: {path}:3: invalid TOML: ")


def test_missing_config_file(tmp_path, optimize_calls):
    missing = "nope.toml"
    _one_line_error(_invoke("optimize", "--config", missing), f"{missing}: no such file")


def test_params_table_reaches_the_method_and_a_bad_one_is_the_methods_error(tmp_path):
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps({"input": f"Review {i}", "target": ["good", "bad"][i % 2]}) + "\n"
                            for i in range(20)))
    path = _write(tmp_path, f'dataset = "{data}"\nmethod = "opro"\nbudget = 40\ntrain-size = 6\ntest-size = 4\n'
                            'dev-size = 0\ntask-model = "scripted"\noptimizer-model = "scripted"\njson = true\n'
                            'quiet = true\n[params]\nsteps = 1\n')
    result = _invoke("optimize", "--config", path)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["stats"]["opro"]["steps_run"] == 1
    bad = _write(tmp_path, f'dataset = "{data}"\ntask-model = "scripted"\nmethod = "opro"\n[params]\nsteps = "x"\n',
                 "bad.toml")
    _one_line_error(_invoke("optimize", "--config", bad),
                    "method 'opro': parameter 'steps' must be an integer >= 1, got 'x'")


def test_cache_url_in_a_config_file_is_the_runs_cache(tmp_path):
    """Issue 26: the README offers ``cache_url`` in a config file; config rejected it as unknown."""
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps({"input": f"Review {i}", "target": ["good", "bad"][i % 2]}) + "\n"
                            for i in range(20)))
    cache = tmp_path / "elsewhere" / "answers.sqlite"
    cache.parent.mkdir()
    path = _write(tmp_path, f'dataset = "{data}"\ncache_url = "sqlite:///{cache}"\nbudget = 10\ntrain-size = 4\n'
                            'test-size = 4\ndev-size = 0\ntask-model = "scripted"\noptimizer-model = "scripted"\n'
                            'json = true\nquiet = true\n')
    first = _invoke("optimize", "--config", path)
    assert first.exit_code == 0, first.stderr
    assert cache.exists() and not (tmp_path / "home" / "cache.sqlite").exists()
    again = json.loads(_invoke("optimize", "--config", path).stdout.strip().splitlines()[-1])
    assert again["llm_calls"] == 0 and again["cached_calls"] > 0  # the same cache answered the re-run


@pytest.mark.parametrize("value", ["1979-05-27", "1979-05-27T07:32:00Z", "07:32:00", "[1, [2, 1979-05-27]]",
                                   "{ when = 1979-05-27 }"])
def test_a_toml_date_in_params_is_one_line(tmp_path, optimize_calls, value):
    """Issue 26: a TOML date in [params] was a TypeError traceback (datetime not JSON serializable)."""
    path = _write(tmp_path, f'dataset = "d.jsonl"\n[params]\nwhen = {value}\n')
    result = _invoke("optimize", "--config", path)
    line = result.stderr.strip()
    _one_line_error(result, line.removeprefix("promptgym: error: "))
    assert line.startswith(f"promptgym: error: {path}: params.when: a method parameter is a string, number, "
                           "true/false, array or table; got the TOML ")
    assert line.endswith("(quote it to pass it as a string)") and optimize_calls == []


@pytest.mark.parametrize("where", ["top", "params"])
def test_a_deeply_nested_toml_array_is_one_line(tmp_path, optimize_calls, where):
    """Issue 26: an array nested a few thousand deep was a RecursionError traceback (tomllib parses
    by recursion)."""
    deep = "[" * 5000 + "]" * 5000
    text = f"x = {deep}\n" if where == "top" else f'dataset = "d.jsonl"\n[params]\nx = {deep}\n'
    path = _write(tmp_path, text)
    expected = f"{path}: invalid TOML: arrays or inline tables nested too deeply"
    _one_line_error(_invoke("optimize", "--config", path), expected)
    _one_line_error(_invoke("bench", "--config", path), expected)
    assert optimize_calls == []


def test_bench_config_makes_the_same_call_as_its_flags(tmp_path, bench_calls):
    flags = ["--preset", "quick", "--methods", "ape,opro", "--datasets", "a.jsonl,b.jsonl", "--seeds", "0,1",
             "--budget", "50", "--train-size", "5", "--dev-size", "10", "--test-size", "8", "--select-k", "2",
             "--select-level", "0.2", "--task-model", "scripted,embedded", "--optimizer-model", "scripted",
             "--layout", "plain", "--out", str(tmp_path / "b"), "--retry-failed", "--json"]
    text = (f'preset = "quick"\nmethods = ["ape", "opro"]\ndatasets = "a.jsonl,b.jsonl"\nseeds = [0, 1]\n'
            f'budget = 50\ntrain-size = 5\ndev_size = 10\ntest-size = 8\nselect-k = 2\nselect-level = 0.2\n'
            f'task-model = ["scripted", "embedded"]\noptimizer-model = "scripted"\nlayout = "plain"\n'
            f'out = "{tmp_path / "b"}"\nretry-failed = true\njson = true\n')
    assert _invoke("bench", *flags).exit_code == 0
    result = _invoke("bench", "--config", _write(tmp_path, text, "bench.toml"))
    assert result.exit_code == 0, result.stderr
    from_flags, from_file = bench_calls
    from_flags.pop("on_cell"), from_file.pop("on_cell")
    assert from_file == from_flags
    assert from_file["seeds"] == [0, 1] and from_file["task_models"] == ["scripted", "embedded"]
    assert _invoke("bench", "--config", "bench.toml", "--budget", "7").exit_code == 0
    assert bench_calls[2]["budget"] == 7


def test_bench_config_errors(tmp_path, bench_calls):
    path = _write(tmp_path, "[params]\nsteps = 1\n", "bench.toml")
    result = _invoke("bench", "--config", path)
    assert result.exit_code != 0 and "bench.toml: params: unknown key; known keys: " in result.stderr
    path = _write(tmp_path, "seeds = [0, true]\n", "bench.toml")
    _one_line_error(_invoke("bench", "--config", path), f"{path}: seeds: expected a string, got [0, true]")
    assert bench_calls == []


def test_the_shipped_example_config_is_valid(optimize_calls):
    result = _invoke("optimize", "--config", str(ROOT / "examples" / "run.toml"))
    assert result.exit_code == 0, result.stderr
    call = optimize_calls[0]
    assert call["dataset"] == "example:sentiment" and call["params"]
