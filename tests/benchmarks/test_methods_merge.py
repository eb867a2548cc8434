"""benchmarks/methods.py --merge: result files of separate invocations become one table, and files
written with different settings are refused (their numbers are not comparable)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("bench_methods", ROOT / "benchmarks" / "methods.py")
methods = importlib.util.module_from_spec(spec)
spec.loader.exec_module(methods)


def result_file(path: Path, task: str, variant: str, scores: list[tuple[float, float]], budget: int = 200) -> Path:
    runs = [dict(task=task, variant=variant, method=variant, params={}, seed=seed, run_id=f"r{seed}",
                 test_initial=ti, test_best=tb, train_initial=ti, train_best=ti + 0.3, beats_start=tb > ti, calls=budget, wall_seconds=10.0 + seed,
                 resumed=False) for seed, (ti, tb) in enumerate(scores)]
    meta = dict(date="2026-11-23T12:00:00", model="embedded", optimizer_model="embedded", budget=budget,
                train_size=20, dev_size=0, test_size=60, seeds=list(range(len(scores))), tasks=[task],
                chance={task: 0.5}, skipped=[], variants=[dict(label=variant, method=variant, params={})],
                total_seconds=30.0, load_average=[1.0, 1.0, 1.0])
    path.write_text(json.dumps(dict(meta=meta, summary=methods.aggregate(runs), runs=runs)))
    return path


def test_merge_combines_tasks_into_one_table(tmp_path):
    a = result_file(tmp_path / "a.json", "task-a", "opro", [(0.4, 0.5), (0.4, 0.3)])
    b = result_file(tmp_path / "b.json", "task-b", "gpo", [(0.6, 0.7), (0.5, 0.6)])
    out = tmp_path / "methods.json"
    assert methods.main(["--merge", str(a), str(b), "--out", str(out)]) == 0
    merged = json.loads(out.read_text())
    assert merged["meta"]["tasks"] == ["task-a", "task-b"]
    assert len(merged["runs"]) == 4 and merged["meta"]["total_seconds"] == 60.0
    rows = {(s["task"], s["variant"]): s for s in merged["summary"]}
    assert rows[("task-a", "opro")]["beats_start"] == "mixed"
    assert rows[("task-b", "gpo")]["beats_start"] == "yes"
    assert rows[("task-b", "gpo")]["test_best_mean"] == pytest.approx(0.65)
    table = out.with_suffix(".md").read_text()
    assert "## `task-a`" in table and "## `task-b`" in table and "| gpo |" in table


def test_merge_refuses_different_settings(tmp_path):
    a = result_file(tmp_path / "a.json", "task-a", "opro", [(0.4, 0.5)])
    b = result_file(tmp_path / "b.json", "task-b", "opro", [(0.4, 0.5)], budget=300)
    with pytest.raises(SystemExit, match="budget"):
        methods.main(["--merge", str(a), str(b), "--out", str(tmp_path / "m.json")])


def test_merge_later_run_replaces_the_same_task_variant_seed(tmp_path):
    a = result_file(tmp_path / "a.json", "task-a", "opro", [(0.4, 0.3), (0.4, 0.3)])
    fix = result_file(tmp_path / "fix.json", "task-a", "opro", [(0.4, 0.6), (0.4, 0.5)])
    out = tmp_path / "methods.json"
    methods.main(["--merge", str(a), str(fix), "--out", str(out)])
    merged = json.loads(out.read_text())
    assert len(merged["runs"]) == 2 and merged["meta"]["replaced_runs"] == 2
    assert merged["summary"][0]["test_best_mean"] == pytest.approx(0.55)


def test_table_shows_the_search_split_gain_next_to_the_test_gain(tmp_path):
    a = result_file(tmp_path / "a.json", "task-a", "opro", [(0.4, 0.5)])
    out = tmp_path / "m.json"
    methods.main(["--merge", str(a), "--out", str(out)])
    row = next(line for line in out.with_suffix(".md").read_text().splitlines() if line.startswith("| opro"))
    assert "| +0.100 | +0.300 |" in row  # test gain, then the training-split gain of the same run


def test_merge_lists_each_task_once(tmp_path):
    a = result_file(tmp_path / "a.json", "task-a", "opro", [(0.4, 0.5)])
    again = result_file(tmp_path / "again.json", "task-a", "gpo", [(0.4, 0.5)])
    out = tmp_path / "m.json"
    methods.main(["--merge", str(a), str(again), "--out", str(out)])
    assert json.loads(out.read_text())["meta"]["tasks"] == ["task-a"]
    assert out.with_suffix(".md").read_text().count("## `task-a`") == 1


# -- choosing variants (--methods) ----------------------------------------------------------------


def test_methods_labels_are_default_variants_or_method_with_params():
    todo, skipped = methods.plan(["protegi[selector=uniform]", "protegi[selector=successive_rejects]", "gpo"], {})
    assert todo == [("protegi[selector=uniform]", "protegi", {"selector": "uniform"}),
                    ("protegi[selector=successive_rejects]", "protegi", {"selector": "successive_rejects"}),
                    ("gpo", "gpo", {})] and skipped == []
    assert methods.parse_variant("gpo[decay_edit_limit=false,momentum_k=2]")[2] == {"decay_edit_limit": False,
                                                                                     "momentum_k": 2}


@pytest.mark.parametrize("label, message", [("nope", "not registered"), ("ape[x=1]", "no parameter"),
                                            ("protegi[selector", "expected METHOD")])
def test_an_unknown_method_or_parameter_asked_for_is_an_error(label, message, capsys):
    with pytest.raises(SystemExit) as exc:
        methods.main(["--methods", label, "--tiny"])
    assert message in str(exc.value) and label.split("[")[0] in str(exc.value)
