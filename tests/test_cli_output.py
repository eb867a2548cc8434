"""Issue 27, item 7: what the terminal commands print: ``runs`` at 80 columns, ``runs`` and ``show``
piped to a file (nothing cut), ``show``'s parents column, an empty ``runs``, the Ctrl-C message and
GRIPS's live line on the 0-1 scale."""

from __future__ import annotations

import json
import re
from io import StringIO

import pytest
from click.testing import CliRunner
from rich.console import Console

from promptgym.cli import main
from promptgym.report import tables
from support import write_reviews

SCRIPTED = ["--task-model", "scripted", "--optimizer-model", "scripted"]
LONG_PROMPT = ("Read the hotel review below carefully, weigh what the guest praises against what the guest "
               "complains about, and then choose the single label that fits the review best.")


@pytest.fixture
def dataset(tmp_path) -> str:
    return write_reviews(tmp_path, 40, name="a-rather-long-dataset-name-for-the-reviews.jsonl")


def _optimize(dataset: str, *extra: str) -> dict:
    result = CliRunner().invoke(main, ["optimize", "--dataset", dataset, *SCRIPTED, "--budget", "60",
                                       "--train-size", "6", "--test-size", "10", "--dev-size", "6",
                                       "--prompt", LONG_PROMPT, "--json", "--quiet", *extra])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _on_terminal(width: int, *args: str) -> str:
    saved, buffer = tables.console, StringIO()
    tables.console = Console(file=buffer, width=width, force_terminal=True, color_system=None)
    try:
        result = CliRunner().invoke(main, list(args))
        assert result.exit_code == 0, result.stderr
    finally:
        tables.console = saved
    return buffer.getvalue()


def test_runs_at_80_columns_on_a_terminal_is_readable(dataset):
    ids = [_optimize(dataset, "--method", m)["run_id"] for m in ("ape", "grips")]
    out = _on_terminal(80, "runs")
    assert "…" not in out and max(len(line) for line in out.splitlines()) <= 80
    for run_id in ids:
        assert run_id in out
    for word in ("finished", "train", "test", "delta", "kept start", "calls"):
        assert word in out
    assert "a-rather-long-dataset-name-for-the-reviews.jsonl" in out.replace("\n", "")  # a long path folds
    wide = _on_terminal(250, "runs")  # wide enough: the table, one row a run
    assert "run_id" in wide and "test start -> returned" in wide and "…" not in wide


def test_runs_and_show_piped_to_a_file_are_not_cut(dataset):
    summary = _optimize(dataset, "--method", "ape")
    runs = CliRunner().invoke(main, ["runs"], env={"COLUMNS": "80"})  # CliRunner's stdout is not a terminal
    assert runs.exit_code == 0 and "…" not in runs.stdout
    assert summary["run_id"] in runs.stdout and "test start -> returned" in runs.stdout
    assert "a-rather-long-dataset-name-for-the-reviews.jsonl" in runs.stdout
    show = CliRunner().invoke(main, ["show", summary["run_id"]], env={"COLUMNS": "80"})
    assert show.exit_code == 0 and "…" not in show.stdout
    header = next(line for line in show.stdout.splitlines() if "instruction" in line)
    from promptgym import api

    splits = sorted({row["split"] for row in api.show(summary["run_id"]).scores})
    assert len(splits) >= 3  # every split's column, none dropped
    assert [c.strip() for c in header.strip("┃").split("┃")][-len(splits):] == splits
    assert any(LONG_PROMPT in line for line in show.stdout.splitlines())  # on one line, whole


def test_show_has_a_parents_column(dataset):
    run_id = _optimize(dataset, "--method", "grips")["run_id"]
    show = CliRunner().invoke(main, ["show", run_id])
    lines = show.stdout.splitlines()
    header = next(line for line in lines if "instruction" in line)
    assert [c.strip() for c in header.strip("┃").split("┃")][:3] == ["#", "parents", "operation"]
    rows = [[c.strip() for c in line.strip("│").split("│")] for line in lines if line.startswith("│")]
    by_seq = {row[0].rstrip(" *"): row for row in rows}
    assert by_seq["0"][1] == "-" and by_seq["0"][2] == "initial"
    assert by_seq["1"][1] == "0"  # GRIPS edits the current prompt: the first edits come from the start
    from promptgym import api

    details = api.show(run_id)
    seq = {c["candidate_id"]: str(c["seq"]) for c in details.candidates}
    for c in details.candidates:
        assert by_seq[str(c["seq"])][1] == (",".join(seq[p] for p in c["parents"]) or "-")


def test_an_empty_runs_says_so(dataset):
    empty = CliRunner().invoke(main, ["runs"])
    assert empty.exit_code == 0 and empty.stdout.strip() == "no runs yet (start one: promptgym optimize --help)"
    _optimize(dataset)
    none = CliRunner().invoke(main, ["runs", "--method", "opro"])
    assert none.exit_code == 0
    assert none.stdout.strip() == "no runs match these filters (see: promptgym runs --help)"


def test_ctrl_c_names_the_run_to_resume(dataset, tmp_path):
    interrupt = tmp_path / "interrupt.py"  # a reward that stops the run as Ctrl-C does
    interrupt.write_text("def reward(prediction, example):\n    raise KeyboardInterrupt\n")
    result = CliRunner().invoke(main, ["optimize", "--dataset", dataset, *SCRIPTED, "--budget", "20",
                                       "--train-size", "6", "--test-size", "6", "--dev-size", "0", "--quiet",
                                       "--reward", f"{interrupt}:reward"])
    assert result.exit_code == 130
    runs = json.loads(CliRunner().invoke(main, ["runs", "--json"]).stdout)
    assert [r["status"] for r in runs] == ["interrupted"]
    assert result.stderr.strip().splitlines() == [
        f"promptgym: error: interrupted; continue with: promptgym resume {runs[0]['run_id']}"]


def test_grips_live_line_shows_the_best_score_on_the_0_1_scale(dataset):
    result = CliRunner().invoke(main, ["optimize", "--dataset", dataset, *SCRIPTED, "--budget", "60",
                                       "--train-size", "6", "--test-size", "6", "--dev-size", "0",
                                       "--method", "grips"])
    assert result.exit_code == 0, result.stderr
    bests = [float(b) for b in re.findall(r"\| best (\d+\.\d+) \|", result.stderr)]
    assert bests and all(0 <= b <= 1 for b in bests), result.stderr
