"""Bad input, fuzzed (issue 13, item 4): every loader and the CLI either work or fail with one line
naming the file, row or field; never a traceback, and never a run row for input that fails
validation. Kept small (tens of examples per target, a deadline) so the suite stays fast.

The counts per target are in docs/reliability.md ("Bad input and secrets")."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from promptgym import api
from promptgym.cli import main
from promptgym.data.bigbench import _parse_examples, _read_task_json
from promptgym.data.dataset import Dataset, Example
from promptgym.data.loaders import load_dataset
from promptgym.errors import DataError, PromptgymError
from promptgym.models.scripted import ScriptedBackend
from promptgym.runner.backends import using
from promptgym.store.runs import RunStore

FUZZ = settings(max_examples=80, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
FUZZ_CLI = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SCRIPTED = ["--task-model", "scripted", "--optimizer-model", "scripted"]

# Text that has broken prompt formatting elsewhere: str.format fields, %-specifiers, Jinja, rich markup.
NASTY = ["{", "}", "{}", "{0}", "{input}", "{{input}}", "%s", "%(x)s", "{% if x %}", "{{ 7*7 }}", "[bold]",
         "[/]", "\\", "\x00", "\u2028", "\r", "\t", "é", "😀", "\ufeff", '"', "|", ",", "\n",
         "\ud800", "a|b|", "a|a", " |b"]
texts = st.one_of(st.text(max_size=40), st.lists(st.sampled_from(NASTY + ["a", "b", " "]), max_size=8).map("".join))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True), texts)
values = st.one_of(scalars, st.lists(scalars, max_size=4), st.dictionaries(st.sampled_from(["a", "b"]), scalars, max_size=2))
KEYS = ["input", "target", "choices", "text", "label", "options", "question", "answer", "extra"]
CHOICES = [None] * 4 + ["a|b", "a|b", ["a", "b"], "a|b|", "a|a", "b|c", "{0}|[x]", " |a", "a"]
rows = st.one_of(
    st.dictionaries(st.sampled_from(KEYS), values, max_size=5),  # anything
    st.fixed_dictionaries({"input": texts, "target": st.sampled_from(["a", "b", "a", "b", "c", "", " a", "{0}"])},
                          optional={"choices": st.sampled_from(CHOICES)}),  # mostly well-formed
)


def _loads_or_one_line(path: Path) -> Dataset | None:
    """The loader's contract: a Dataset, or a DataError of one line that names the file."""
    try:
        dataset = load_dataset(str(path))
    except DataError as exc:
        event("one-line error")
        message = str(exc)
        assert "\n" not in message.strip(), message
        assert str(path) in message, message
        return None
    for e in dataset.examples:  # what loads is usable: text the store can write, choices that make sense
        (e.input + "".join(e.targets)).encode("utf-8")
        if e.choices is not None:
            assert len(e.choices) >= 2 and all(c for c in e.choices) and len(set(e.choices)) == len(e.choices)
            assert e.target in e.choices
    event("loaded")
    return dataset


@FUZZ
@given(lines=st.lists(st.one_of(rows.map(json.dumps), rows.map(lambda r: json.dumps(r, ensure_ascii=False)),
                                st.text(max_size=30)), max_size=8))
def test_jsonl_rows_fuzzed(tmp_path, lines):
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    _loads_or_one_line(path)


@FUZZ
@given(data=st.binary(max_size=200), suffix=st.sampled_from([".jsonl", ".csv", ".tsv"]))
def test_raw_bytes_fuzzed(tmp_path, data, suffix):
    path = tmp_path / f"data{suffix}"
    path.write_bytes(data)
    _loads_or_one_line(path)


@FUZZ
@given(header=st.lists(st.sampled_from(KEYS + [""]), min_size=0, max_size=4),
       cells=st.lists(st.lists(texts, max_size=5), max_size=6))
def test_csv_rows_fuzzed(tmp_path, header, cells):
    import csv

    path = tmp_path / "data.csv"
    with path.open("w", newline="", encoding="utf-8", errors="surrogatepass") as handle:
        writer = csv.writer(handle)
        if header:
            writer.writerow(header)
        writer.writerows(cells)
    _loads_or_one_line(path)


task_json = st.one_of(
    st.dictionaries(st.sampled_from(["examples", "description", "task_prefix"]),
                    st.one_of(values, st.lists(st.one_of(values, st.fixed_dictionaries(
                        {"input": scalars}, optional={"target": values, "target_scores": st.one_of(
                            values, st.dictionaries(texts, st.one_of(st.integers(0, 1), scalars), max_size=4))}
                    )), max_size=5)), max_size=3),
    values)


@FUZZ
@given(task=task_json)
def test_bigbench_task_json_fuzzed(tmp_path, task):
    path = tmp_path / "task.json"
    path.write_text(json.dumps(task), encoding="utf-8", errors="surrogatepass")
    try:
        parsed = _read_task_json(path, "bigbench:fuzz (fuzz/task.json)")
        examples = _parse_examples(parsed, "bigbench:fuzz", prefix="")
    except DataError as exc:
        assert "\n" not in str(exc) and "bigbench:fuzz" in str(exc)
        return
    for e in examples:
        if e.choices is not None:
            assert e.target in e.choices and len(set(e.choices)) == len(e.choices)


def test_bigbench_bad_bytes_and_json_name_the_task_file(tmp_path):
    path = tmp_path / "task.json"
    path.write_bytes(b'{"examples": [\xff]}')
    with pytest.raises(DataError, match=r"bigbench:x \(x/task.json\): not UTF-8"):
        _read_task_json(path, "bigbench:x (x/task.json)")
    path.write_text("[" * 100_000)
    with pytest.raises(DataError, match="not valid JSON"):
        _read_task_json(path, "bigbench:x (x/task.json)")
    with pytest.raises(DataError, match="example 0: field 'target_scores' lists the option 'a' twice"):
        _parse_examples({"examples": [{"input": "q", "target_scores": {"a": 1, " a": 0}}]}, "bigbench:x", "")


# -- the findings, one test each ----------------------------------------------------------------------

def _write_jsonl(tmp_path, rows: list[dict], name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.mark.parametrize("choices, message", [
    ("a|b|", "data.jsonl:2: field 'choices' has an empty option (option 3 of 3)"),
    (["a", "b", " "], "data.jsonl:2: field 'choices' has an empty option (option 3 of 3)"),
    ("a|b|a", "data.jsonl:2: field 'choices' lists the option 'a' twice"),
    ("a|b| b", "data.jsonl:2: field 'choices' lists the option 'b' twice"),
    ({"a": 1}, "data.jsonl:2: field 'choices' must be a list or 'a|b|c', got dict"),
])
def test_bad_options_name_the_row(tmp_path, choices, message):
    path = _write_jsonl(tmp_path, [{"input": "x", "target": "a", "choices": "a|b"},
                                   {"input": "y", "target": "a", "choices": choices}])
    with pytest.raises(DataError) as info:
        load_dataset(str(path))
    assert str(info.value).endswith(message)


def test_non_utf8_names_the_line(tmp_path):
    for suffix, line, body in ((".jsonl", 2, b'{"input": "a", "target": "b"}\n{"input": "\xff", "target": "b"}\n'),
                               (".csv", 3, b"input,target\na,b\n\xe9t\xe9,b\n")):
        path = tmp_path / f"data{suffix}"
        path.write_bytes(body)
        with pytest.raises(DataError, match=rf"data\{suffix}:{line}: not UTF-8 text"):
            load_dataset(str(path))


def test_lone_surrogate_and_deep_nesting_are_data_errors(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"input": "a\\ud800", "target": "b"}\n')
    with pytest.raises(DataError, match=r"data.jsonl:1: field 'input' holds a character that is not valid Unicode"):
        load_dataset(str(path))
    path.write_text('{"input": ' + "[" * 50_000 + "\n")
    with pytest.raises(DataError, match=r"data.jsonl:1: not valid JSON"):
        load_dataset(str(path))


# -- through the CLI -------------------------------------------------------------------------------

def _run_rows(store_url: str) -> int:
    return len(RunStore(store_url).list_runs())


def _cli(store: str, *args: str):
    return CliRunner().invoke(main, ["--store", store, *args])


def _assert_clean(result) -> None:
    """Exit 0 with a JSON line, or one error line; never a traceback."""
    out = result.stdout + result.stderr
    assert "Traceback" not in out
    if result.exit_code == 0:
        json.loads(result.stdout.strip().splitlines()[-1])
    else:
        assert isinstance(result.exception, SystemExit), repr(result.exception)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("promptgym: error:"), result.stderr


row_text = st.lists(st.sampled_from([t for t in NASTY if t != "\ud800"] + ["good", "bad", "x" * 50, "fine"] * 3), min_size=1, max_size=6).map("".join)
DEFECTS = [None] * 8 + ["empty option", "duplicate option", "target not in choices", "empty target", "empty input",
                        "one label", "not utf-8", "not json", "huge input", "missing field"]


@FUZZ_CLI
@given(n=st.sampled_from([20, 12, 30, 3, 1, 0]), texts_=st.lists(row_text, min_size=30, max_size=30), with_choices=st.booleans(),
       defect=st.sampled_from(DEFECTS), at=st.integers(0, 29),
       budget=st.sampled_from([12, 20, 40, 5] * 4 + [2, 1, 0, -3]), train=st.sampled_from([3, 5, 1, 2] * 4 + [0, -1]),
       test=st.sampled_from([3, 0, 1, 5] * 4 + [40, -1]), dev=st.sampled_from([None, 0] * 4 + [1, 3, -1]),
       method=st.sampled_from(["ape", "grips", "opro"]))
def test_cli_optimize_fuzzed(tmp_path, n, texts_, with_choices, defect, at, budget, train, test, dev, method):
    """Any data (nasty text, one injected defect or none), sizes and budgets: JSON or one error
    line; a run row only for a run that started."""
    path = tmp_path / "fuzz.jsonl"
    lines = []
    for i in range(n):
        row = {"input": f"r{i} {texts_[i]}", "target": "good" if defect == "one label" or i % 2 else "bad"}
        if with_choices:
            row["choices"] = "good|bad"
        if i == at % max(n, 1):
            row = {"empty option": {**row, "choices": "good|bad|"}, "duplicate option": {**row, "choices": "good|good|bad"},
                   "target not in choices": {**row, "choices": "ugly|worse"}, "empty target": {**row, "target": " "},
                   "empty input": {**row, "input": ""}, "huge input": {**row, "input": "x " * 50_000},
                   "missing field": {"input": row["input"]}}.get(defect, row)
        lines.append(json.dumps(row).encode())
        if i == at % max(n, 1) and defect == "not utf-8":
            lines[-1] = lines[-1].replace(b'"input": "', b'"input": "\xff')
        if i == at % max(n, 1) and defect == "not json":
            lines[-1] = lines[-1][:-1]
    path.write_bytes(b"\n".join(lines))
    store = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    before = _run_rows(store)
    args = ["optimize", "--dataset", str(path), *SCRIPTED, "--method", method, "--budget", str(budget),
            "--train-size", str(train), "--test-size", str(test), "--json", "--quiet"]
    if dev is not None:
        args += ["--dev-size", str(dev)]
    result = _cli(store, *args)
    _assert_clean(result)
    event("ran" if result.exit_code == 0 else "one-line error")  # --hypothesis-show-statistics
    after = _run_rows(store)
    if result.exit_code == 0:
        assert after == before + 1
    else:
        assert after == before, f"a failed validation left a run row: {result.stderr}"
        rows = RunStore(store).list_runs()
        assert not any(r["status"] == "running" for r in rows)


def test_bad_data_leaves_no_run_row(tmp_path):
    store = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    path = _write_jsonl(tmp_path, [{"input": f"r{i}", "target": "a", "choices": "a|b|"} for i in range(40)])
    for _ in range(3):  # three typos, no 'failed' rows
        result = _cli(store, "optimize", "--dataset", str(path), *SCRIPTED, "--train-size", "5", "--test-size", "5")
        _assert_clean(result)
        assert "data.jsonl:1: field 'choices' has an empty option" in result.stderr
    too_few = _cli(store, "optimize", "--dataset", str(path.with_name("missing.jsonl")), *SCRIPTED)
    assert "missing.jsonl: no such file" in too_few.stderr
    assert _run_rows(store) == 0


def test_api_rejects_nonsense_sizes_without_a_run_row(tmp_path):
    store = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    data = Dataset("d", [Example(str(i), f"text {i}", ("a" if i % 2 else "b",), ("a", "b")) for i in range(20)])
    for kwargs in (dict(budget=0), dict(budget=-5), dict(test_size=-1), dict(dev_size=-1), dict(train_size=0),
                   dict(train_size=15, test_size=10), dict(long_inputs="maybe")):
        args = dict(train_size=5, test_size=5, task_model="scripted", optimizer_model="scripted", store_url=store)
        with pytest.raises(PromptgymError):
            api.optimize(data, **{**args, **kwargs})
    assert _run_rows(store) == 0


# -- long inputs: checked against the task model's context before the search ------------------------

def _long_data(tmp_path) -> Path:
    rows = [{"input": f"Review {i}: fine.", "target": "good" if i % 2 else "bad"} for i in range(30)]
    rows[17]["input"] = "word " * 3000  # ~15,000 characters: ~5,000 tokens by chars/3
    return _write_jsonl(tmp_path, rows)


def test_long_input_is_an_error_naming_the_row_before_any_run_row(tmp_path, monkeypatch):
    monkeypatch.setattr(ScriptedBackend, "context_limit", 2048)
    store = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    path = _long_data(tmp_path)
    result = _cli(store, "optimize", "--dataset", str(path), *SCRIPTED, "--train-size", "10", "--test-size", "18",
                  "--dev-size", "0", "--budget", "20")
    _assert_clean(result)
    assert result.exit_code != 0
    assert f"{path}:18: the prompt takes about" in result.stderr
    assert "context of 2048" in result.stderr and "--long-inputs truncate" in result.stderr
    assert _run_rows(store) == 0


def test_long_input_truncated_on_request_and_resume_agrees(tmp_path, monkeypatch):
    monkeypatch.setattr(ScriptedBackend, "context_limit", 2048)
    store = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    path = _long_data(tmp_path)
    args = ["optimize", "--dataset", str(path), *SCRIPTED, "--train-size", "10", "--test-size", "18",
            "--dev-size", "0", "--budget", "20", "--long-inputs", "truncate", "--json", "--quiet"]
    result = _cli(store, *args)
    _assert_clean(result)
    assert result.exit_code == 0, result.stderr
    run_id = json.loads(result.stdout.strip().splitlines()[-1])["run_id"]
    assert RunStore(store).get_run(run_id)["config"]["long_inputs"] == "truncate"
    seen: list[int] = []
    original = ScriptedBackend.score

    def spy(self, requests, on_result):
        seen.extend(len("".join(c for _, c in r.messages or ()) + (r.text or "")) for r in requests)
        return original(self, requests, on_result)

    monkeypatch.setattr(ScriptedBackend, "score", spy)
    RunStore(store).set_status(run_id, "interrupted")
    resumed = _cli(store, "resume", run_id, "--json", "--quiet")
    assert resumed.exit_code == 0, resumed.stderr
    assert all(n < 2048 * 3 for n in seen)


def test_no_context_limit_means_no_check(tmp_path):
    store = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    result = _cli(store, "optimize", "--dataset", str(_long_data(tmp_path)), *SCRIPTED, "--train-size", "10",
                  "--test-size", "18", "--dev-size", "0", "--budget", "10", "--json", "--quiet")
    assert result.exit_code == 0, result.stderr


# -- model output and data are literal text in the terminal report ----------------------------------------

def test_markup_in_prompts_and_output_is_printed_literally(tmp_path, monkeypatch):
    nasty = "[bold red]{input}[/] {0} %s [link=http://x]y[/link]"
    backend = ScriptedBackend(reply=lambda request: nasty)
    store = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    path = _write_jsonl(tmp_path, [{"input": f"[i]{{x}}[/i] {i}", "target": "good" if i % 2 else "bad"}
                                   for i in range(30)], name="[red]data.jsonl")
    with using({"scripted": backend}):
        result = _cli(store, "optimize", "--dataset", str(path), *SCRIPTED, "--train-size", "10", "--test-size", "10",
                      "--dev-size", "0", "--budget", "12", "--prompt", "[bold]Classify[/bold] {input}", "--quiet")
    assert result.exit_code == 0, result.stderr
    flat = " ".join(result.stdout.split())
    assert "[bold]Classify[/bold]" in flat and "[red]data.jsonl" in flat
    run_id = RunStore(store).list_runs()[0]["run_id"]
    shown = " ".join(_cli(store, "show", run_id).stdout.split())
    assert "[bold]Classify[/bold]" in shown
    listed = _cli(store, "runs", "--json").stdout
    assert "[red]data.jsonl" in listed
    from rich.console import Console

    from promptgym.report import tables

    monkeypatch.setattr(tables, "console", Console(width=600))  # wide enough not to cut the path
    assert "[red]data.jsonl" in _cli(store, "runs").stdout


def test_escaping_keeps_brackets_for_every_string():
    from io import StringIO

    from rich.console import Console

    from promptgym.report import tables

    @given(st.text(alphabet=string.ascii_letters + "[]/=\\ ", max_size=30))
    @settings(max_examples=60, deadline=1000)
    def check(text):
        buffer = StringIO()
        tables.console = Console(file=buffer, width=400)
        tables.runs_table([dict(run_id="r", created=0, method="ape", dataset=text, status="finished",
                                best_score=None)])
        assert text.strip() in buffer.getvalue()

    saved = tables.console
    try:
        check()
    finally:
        tables.console = saved
