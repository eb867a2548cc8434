"""Exact splits from files (``--train/--dev/--test FILE``): the splits are the files' rows, in order;
the run stores them and resumes; bad rows and conflicting sizes are one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from promptgym import api
from promptgym.cli import main
from promptgym.data.dataset import Dataset, Example
from promptgym.data.loaders import load_split_files
from promptgym.errors import DataError, PromptgymError
from promptgym.runner.setup import NEUTRAL_CHOICE
from promptgym.store.runs import RunStore

LABELS = ("positive", "negative", "neutral", "ambivalent")
SCRIPTED = dict(task_model="scripted", optimizer_model="scripted")


def _write(path: Path, n: int, start: int = 0, choices: bool = False) -> str:
    rows = []
    for i in range(start, start + n):
        row = {"input": f"Review {i}: the stay was {LABELS[i % 4]}.", "target": LABELS[i % 4]}
        if choices:
            row["choices"] = "|".join(LABELS)
        rows.append(json.dumps(row))
    path.write_text("\n".join(rows) + "\n")
    return str(path)


@pytest.fixture
def files(tmp_path) -> dict[str, str]:
    return {"train": _write(tmp_path / "train.jsonl", 8), "dev": _write(tmp_path / "dev.jsonl", 5, start=100),
            "test": _write(tmp_path / "test.jsonl", 6, start=200)}


def _inputs(path: str) -> list[str]:
    return [json.loads(line)["input"] for line in Path(path).read_text().splitlines()]


def test_splits_are_exactly_the_files_rows_in_order(files):
    result = api.optimize(method="ape", budget=40, train_file=files["train"], dev_file=files["dev"],
                          test_file=files["test"], **SCRIPTED)
    s = result.summary
    assert (s.train_size, s.dev_size, s.test_size) == (8, 5, 6)
    assert s.dataset == files["train"]
    store = RunStore(api.default_store_url())
    config = store.get_run(result.run_id)["config"]
    assert config["split_files"] == files
    stored = config["inline_dataset"]["examples"]
    assert [e["input"] for e in stored] == _inputs(files["train"]) + _inputs(files["dev"]) + _inputs(files["test"])
    assert all(tuple(e["choices"]) == LABELS for e in stored)  # one label set, inferred over all three files
    scores = store.scores(result.run_id)
    assert [list(r["per_example"]) for r in scores if r["split"] == "test"][0] == [f"test-{i}" for i in range(6)]
    train_final = [list(r["per_example"]) for r in scores if r["split"] == "train-final"][0]
    assert train_final == [f"train-{i}" for i in range(8)]
    after_search = [r["split"] for r in scores if r["split"] in ("test", "train-final")]
    assert after_search[0] == "test"  # the held-out test comes first: the first call past the budgeted ones
    assert s.selection["enabled"] and s.selection["dev_size"] == 5  # final selection raced on the dev file
    for r in scores:  # the search never saw a dev or test row
        if r["split"] == "train":
            assert all(key.startswith("train-") for key in r["per_example"])


def test_no_dev_file_turns_selection_off_and_no_test_file_means_no_held_out_report(files):
    s = api.optimize(method="ape", budget=30, train_file=files["train"], **SCRIPTED).summary
    assert (s.train_size, s.dev_size, s.test_size) == (8, 0, 0)
    assert s.selection["enabled"] is False and "no --dev file" in s.selection["reason"]
    assert s.test_initial is None and s.test_best is None
    assert s.verdict.startswith("final selection off (no --dev file)") and "no test split" in s.verdict


def test_resume_replays_the_stored_rows_even_if_a_file_changed(files):
    first = api.optimize(method="ape", budget=40, train_file=files["train"], dev_file=files["dev"],
                         test_file=files["test"], **SCRIPTED)
    store = RunStore(api.default_store_url())
    store.set_status(first.run_id, "interrupted")
    _write(Path(files["test"]), 3, start=500)  # edited afterwards: the run keeps its own copy
    resumed = api.resume(first.run_id)
    assert resumed["test_size"] == 6 and resumed["test_best"] == first["test_best"]
    assert resumed["best_prompt"] == first["best_prompt"]
    assert resumed["llm_calls"] == first["llm_calls"]  # every call replayed from the cache


def test_dataset_supplies_only_the_instruction_and_the_label_set(files, tmp_path):
    # The task's own data: 40 rows whose label set (all four) the small files must share.
    source = Dataset("reviews", [Example(str(i), f"other {i}", (LABELS[i % 4],), LABELS) for i in range(40)],
                     description="Say how the guest felt about the stay.", source="reviews-source")
    small = _write(tmp_path / "small.jsonl", 2)  # only two labels: alone, no label set could be inferred
    s = api.optimize(source, method="ape", budget=20, train_file=small, **SCRIPTED).summary
    assert s.initial_prompt == "Say how the guest felt about the stay." and s.train_size == 2
    assert s.dataset == "reviews-source"
    run = RunStore(api.default_store_url()).get_run(s.run_id)
    assert all(tuple(e["choices"]) == LABELS for e in run["config"]["inline_dataset"]["examples"])
    neutral = api.optimize(method="ape", budget=20, train_file=files["train"], **SCRIPTED).summary
    assert neutral.initial_prompt == NEUTRAL_CHOICE
    own = api.optimize(method="ape", budget=20, train_file=files["train"], prompt="Rate it.", **SCRIPTED)
    assert own["initial_prompt"] == "Rate it."


def test_a_target_outside_the_datasets_label_set_names_the_file_and_row(tmp_path):
    source = Dataset("d", [Example(str(i), f"x {i}", (LABELS[i % 2],), LABELS[:2]) for i in range(10)])
    train = _write(tmp_path / "train.jsonl", 4)  # rows 3 and 4 are neutral / ambivalent
    with pytest.raises(PromptgymError, match=rf"^{train}:3: target 'neutral' is not one of the choices"):
        api.optimize(source, train_file=train, budget=20, **SCRIPTED)


def test_label_sets_must_agree_across_files(tmp_path):
    train = _write(tmp_path / "train.jsonl", 4, choices=True)
    test = tmp_path / "test.jsonl"
    test.write_text(json.dumps({"input": "a", "target": "positive", "choices": "positive|negative|neutral|ambivalent"})
                    + "\n" + json.dumps({"input": "b", "target": "yes", "choices": "yes|no"}) + "\n")
    with pytest.raises(DataError, match=rf"^{test}:2: choices \['yes', 'no'\] differ from the train file's label set"):
        load_split_files(train, test=str(test))
    bare = _write(tmp_path / "bare.jsonl", 4)
    with pytest.raises(DataError, match=rf"^{bare}: no choices field, but the rows of {train} have one"):
        load_split_files(train, dev=bare)


def test_sizes_may_repeat_the_files_but_not_contradict_them(files):
    result = api.optimize(method="ape", budget=40, train_file=files["train"], test_file=files["test"],
                          train_size=8, test_size=6, dev_size=0, **SCRIPTED)
    assert result["train_size"] == 8
    for kwargs, message in ((dict(train_size=5), f"--train-size 5 conflicts with --train {files['train']} (8 rows)"),
                            (dict(dev_size=3), "--dev-size 3 needs a dev split: give --dev FILE"),
                            (dict(test_size=100), "--test-size 100 needs a test split: give --test FILE")):
        with pytest.raises(PromptgymError, match=message.replace("(", r"\(").replace(")", r"\)")):
            api.optimize(method="ape", budget=40, train_file=files["train"], **kwargs, **SCRIPTED)
    with pytest.raises(PromptgymError, match="need --train FILE"):
        api.optimize("example:sentiment", test_file=files["test"], **SCRIPTED)
    with pytest.raises(PromptgymError, match="no data"):
        api.optimize(**SCRIPTED)


# -- the CLI ---------------------------------------------------------------------------------------

def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


def test_cli_flags_give_exact_splits_and_resume(files):
    args = ["optimize", "--task-model", "scripted", "--optimizer-model", "scripted", "--train", files["train"],
            "--dev", files["dev"], "--test", files["test"], "--budget", "40", "--json", "--quiet"]
    result = _cli(*args)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["train_size"], summary["dev_size"], summary["test_size"]) == (8, 5, 6)
    RunStore(api.default_store_url()).set_status(summary["run_id"], "interrupted")
    resumed = _cli("resume", summary["run_id"], "--json", "--quiet")
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["test_best"] == summary["test_best"]


def test_cli_bad_row_is_one_line_naming_file_and_row_and_leaves_no_run(files, tmp_path):
    bad = tmp_path / "test.csv"
    bad.write_text("input,target\nfine,positive\nbroken\n")
    store = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    result = CliRunner().invoke(main, ["--store", store, "optimize", "--task-model", "scripted", "--optimizer-model",
                                       "scripted", "--train", files["train"], "--test", str(bad)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"promptgym: error: {bad}:3: fewer cells than header columns"]
    assert RunStore(store).list_runs() == []
    missing = _cli("optimize", "--task-model", "scripted", "--train", str(tmp_path / "nope.jsonl"))
    assert missing.stderr.strip() == f"promptgym: error: {tmp_path / 'nope.jsonl'}: no such file"
    conflict = _cli("optimize", "--task-model", "scripted", "--train", files["train"], "--train-size", "3")
    assert len(conflict.stderr.strip().splitlines()) == 1 and "conflicts with --train" in conflict.stderr
    nothing = _cli("optimize", "--task-model", "scripted")
    assert nothing.stderr.strip().startswith("promptgym: error: no data: give --dataset")


def test_cli_field_options_apply_to_every_file(tmp_path):
    for name, n in (("train", 6), ("test", 4)):
        (tmp_path / f"{name}.csv").write_text("text,label\n" + "".join(
            f"row {name} {i},{['pos', 'neg'][i % 2]}\n" for i in range(n)))
    result = _cli("optimize", "--task-model", "scripted", "--optimizer-model", "scripted", "--train",
                  str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"), "--input-field", "text",
                  "--target-field", "label", "--budget", "20", "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["train_size"], summary["test_size"]) == (6, 4)
