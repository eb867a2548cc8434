"""docs/benchmarks.md is made from result files only (a missing one is said, never invented), and a
warm re-run of a finished bench makes no model call (scripted model: the bookkeeping, not a speed)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

from click.testing import CliRunner

from promptgym.cli import main as cli

from support import write_reviews

ROOT = Path(__file__).resolve().parents[2]


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bench_args(data: str, out: Path) -> list[str]:
    return ["bench", "--methods", "ape,grips", "--datasets", data, "--seeds", "0,1", "--budget", "60",
            "--train-size", "8", "--dev-size", "10", "--test-size", "20", "--task-model", "scripted",
            "--optimizer-model", "scripted", "--out", str(out)]


def test_page_from_a_bench_and_nothing_else(tmp_path):
    make_docs = _module("make_docs")
    results, docs = tmp_path / "results", tmp_path / "docs"
    make_docs.main(results, docs)
    empty = (docs / "benchmarks.md").read_text()
    assert empty.count("Not recorded yet") == 5 and "HTTP concurrency: not recorded yet" in empty
    assert "Not recorded yet (`python benchmarks/task_kinds.py`)" in empty
    assert "Peers where there is something to find: Gemma 3 270M" in empty
    assert "Not recorded yet (`benchmarks/deliver.py`)" in empty

    data = write_reviews(tmp_path, 80)
    result = CliRunner().invoke(cli, _bench_args(data, tmp_path / "bench"))
    assert result.exit_code == 0, result.stderr
    shutil.copytree(tmp_path / "bench", results / "bench-full", ignore=shutil.ignore_patterns("work"))
    make_docs.main(results, docs)
    page = (docs / "benchmarks.md").read_text()
    assert "| ape | 2/2 |" in page and "| grips | 2/2 |" in page
    assert "The start was handed back in" in page and "of 4 runs" in page
    assert "Best two by mean dev score" in page
    assert "Peers on the same split and budget" in page and "Not recorded yet: see benchmarks/peers" in page

    deliver = _module("deliver")  # found and delivered, from the same bench's run store
    assert deliver.main(["--bench", "scripted=no-such-directory", "--out", str(results / "deliver")]) == 2
    assert deliver.main(["--bench", f"scripted={tmp_path / 'bench'}", "--out", str(results / "deliver")]) == 0
    make_docs.main(results, docs)
    page = (docs / "benchmarks.md").read_text()
    assert "### scripted" in page and "| found Δ [95%] | delivered Δ [95%] |" in page and "Goals: regressions" in page

    (results / "task-kinds.md").write_text("# The tasks users bring, run end to end\n\n| run | what |\n|---|---|\n| code | 6 |\n")
    make_docs.main(results, docs)
    page = (docs / "benchmarks.md").read_text()
    assert "## The tasks users bring, end to end\n\n| run | what |" in page and "| code | 6 |" in page


def test_warm_rerun_of_a_finished_bench_makes_no_call(tmp_path):
    throughput = _module("throughput")
    data = write_reviews(tmp_path, 80)
    out = tmp_path / "bench"
    assert CliRunner().invoke(cli, _bench_args(data, out)).exit_code == 0
    command = " ".join([sys.executable, "-m", "promptgym.cli", *_bench_args(data, out)])
    result = throughput.run_bench_warm(out, [command], log=lambda m: None)
    assert result["new_calls"] == 0 and result["new_runs"] == 0 and result["cells"] == 4
    assert result["warm_seconds"] > 0 and result["cold_seconds"] >= 0
    # the same bookkeeping sees a real re-run: remove every trace of one cell (its row, its run,
    # its cache; a row alone would be rebuilt from its finished run) and it runs again
    import json
    import sqlite3

    lines = (out / "work" / "cells.jsonl").read_text().splitlines()
    last = json.loads(lines[-1])
    (out / "work" / "cells.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    con = sqlite3.connect(out / "work" / "runs.sqlite")
    config = json.loads(con.execute("SELECT config FROM runs WHERE run_id = ?", (last["run_id"],)).fetchone()[0])
    con.execute("DELETE FROM runs WHERE run_id = ?", (last["run_id"],))
    con.commit()
    con.close()
    cache = Path(config["cache_url"].removeprefix("sqlite:///"))
    for path in (cache, cache.with_name(cache.name + "-wal"), cache.with_name(cache.name + "-shm")):
        path.unlink(missing_ok=True)
    again = throughput.run_bench_warm(out, [command], log=lambda m: None)
    assert again["new_runs"] == 1 and again["new_calls"] > 0 and not again["goal_met"]
