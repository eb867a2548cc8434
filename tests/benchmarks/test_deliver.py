"""benchmarks/deliver.py on a bench made here with the scripted model (the bookkeeping of found and
delivered, not a measurement): pooled deltas agree with the runs' own test numbers, the method's pick
is the one the run names, and the goals are checked from the cells."""

from __future__ import annotations

import json

from click.testing import CliRunner

from promptgym.cli import main

from support import load_script, write_reviews

def _module():
    return load_script("benchmarks/deliver.py")


def _bench(tmp_path, methods: str, rows: int, budget: int, dev: int, test: int):
    """A two-seed bench on the scripted model; its directory."""
    data, out = write_reviews(tmp_path, rows), tmp_path / "bench"
    result = CliRunner().invoke(main, ["bench", "--methods", methods, "--datasets", data, "--seeds", "0,1",
                                       "--budget", str(budget), "--train-size", "10", "--dev-size", str(dev),
                                       "--test-size", str(test), "--task-model", "scripted",
                                       "--optimizer-model", "scripted", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_found_and_delivered_pool_the_seeds_and_match_each_runs_numbers(tmp_path, capsys):
    out = _bench(tmp_path, "opro,ape", rows=120, budget=120, dev=20, test=30)
    runs = json.loads((out / "results.json").read_text())["runs"]

    deliver = _module()
    cells = {c["method"]: c for c in deliver.cells("here", out)}
    assert set(cells) == {"opro", "ape"}
    for method, cell in cells.items():
        mine = [r["summary"] for r in runs if r["variant"] == method]
        assert cell["runs"] == 2 and cell["delivered"]["n"] == 60  # two seeds' 30 test examples
        expected = sum(s["test_best"] - s["test_initial"] for s in mine) / 2  # equal test sizes: mean of means
        assert abs(cell["delivered"]["delta"] - expected) < 1e-9
        found = sum(s["test_method_best"] - s["test_initial"] for s in mine) / 2
        assert abs(cell["found"]["delta"] - found) < 1e-9
        assert cell["regressions"] == sum(s["test_best"] < s["test_initial"] for s in mine)
        assert cell["kept_start"] == sum(bool(s["kept_start"]) for s in mine)

    goals = deliver.goals(list(cells.values()))
    assert goals["runs"] == 4 and goals["regressions_ok"] == (goals["regressions"] * 20 <= 4)
    assert deliver.main(["--bench", f"here={out}", "--out", str(tmp_path / "deliver")]) == 0
    assert "| opro |" in capsys.readouterr().out
    assert json.loads((tmp_path / "deliver.json").read_text())["here"]["goals"] == goals
    assert deliver.main(["--bench", str(out)]) == 2  # no label: one line, not a traceback
    # answers: made or read from the cache (a second bench on the first one's caches uses as many)
    for method, cell in cells.items():
        mine = [r["summary"] for r in runs if r["variant"] == method]
        assert cell["calls"] == sum(s["llm_calls"] + s["cached_calls"] for s in mine) / 2
    # goals over several settings at once: the same cells twice count twice
    assert deliver.main(["--bench", f"a={out}", "--bench", f"b={out}", "--together", "both=a+b",
                         "--out", str(tmp_path / "both")]) == 0
    both = json.loads((tmp_path / "both.json").read_text())["both"]
    assert both["settings"] == ["a", "b"] and both["goals"]["runs"] == 8
    assert "## both" in capsys.readouterr().out
    assert deliver.main(["--bench", f"a={out}", "--together", "both=a+c"]) == 2  # an unknown label: one line


def test_a_failed_run_is_listed_with_its_error_and_counted_in_no_cell(tmp_path, capsys):
    out = _bench(tmp_path, "ape", rows=80, budget=60, dev=10, test=20)
    results = json.loads((out / "results.json").read_text())
    results["runs"][1].update(status="failed", error="PromptgymError: no chat template")  # as a failing cell records it
    (out / "results.json").write_text(json.dumps(results))

    deliver = _module()
    assert [c["runs"] for c in deliver.cells("here", out)] == [1]
    assert [(f["method"], f["seed"], f["error"]) for f in deliver.failed("here", out)] == \
        [("ape", results["runs"][1]["seed"], "PromptgymError: no chat template")]
    assert deliver.main(["--bench", f"here={out}", "--out", str(tmp_path / "deliver")]) == 0
    assert "Failed, in no cell above:" in capsys.readouterr().out
    assert json.loads((tmp_path / "deliver.json").read_text())["here"]["failed"][0]["error"].endswith("chat template")
    # a method re-run after a fix in another directory: its runs here are left out, and it says so
    assert deliver.main(["--bench", f"here={out}", "--superseded", f"ape={out}", "--out", str(tmp_path / "left")]) == 0
    assert "Left out, re-run after a fix in another directory: `ape` in `bench`." in capsys.readouterr().out
    assert json.loads((tmp_path / "left.json").read_text())["here"] == dict(
        cells=[], goals=deliver.goals([]), failed=[])
    assert deliver.main(["--bench", f"here={out}", "--superseded", str(out)]) == 2  # no method: one line


def test_saved_runs_pool_with_a_later_part_and_a_finished_setting_is_carried(tmp_path, capsys):
    """A setting measured over several sessions: the runs saved from one part pool with another's
    exactly as if both were in one directory, and a finished setting's cells are carried verbatim."""
    out = _bench(tmp_path, "ape", rows=80, budget=60, dev=10, test=20)
    deliver = _module()
    whole = deliver.cells("here", out)
    saved = tmp_path / "runs" / "here.jsonl"
    assert deliver.main(["--bench", f"here={out}", "--save-runs", f"here={saved}", "--out", str(tmp_path / "a")]) == 0
    lines = saved.read_text().splitlines()
    assert len(lines) == 2 and {json.loads(line)["seed"] for line in lines} == {0, 1}
    assert deliver.cells_of("here", deliver.read_runs(saved)) == whole  # the file alone: the same cell
    # a later part adding methods to a dataset seen before: its rows join that dataset's, not the end
    parts = [dict(r, dataset=d, method=m) for d, m in (("d1", "a"), ("d2", "a"), ("d1", "b"))
             for r in deliver.read_runs(saved)]
    assert [(c["dataset"], c["method"]) for c in deliver.cells_of("x", parts)] == [("d1", "a"), ("d1", "b"),
                                                                                    ("d2", "a")]
    # seed 0 in a file and both seeds in the directory: the directory's seed 0 replaces the file's
    (tmp_path / "seed0.jsonl").write_text(lines[0] + "\n")
    assert deliver.main(["--runs", f"here={tmp_path / 'seed0.jsonl'}", "--bench", f"here={out}",
                         "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b.json").read_text())["here"]["cells"] == whole
    # a finished setting carried from the results file, next to a measured one
    assert deliver.main(["--carry", f"here={tmp_path / 'a.json'}", "--runs", f"more={saved}",
                         "--together", "all=here+more", "--out", str(tmp_path / "c")]) == 0
    c = json.loads((tmp_path / "c.json").read_text())
    assert c["here"]["cells"] == whole and c["all"]["goals"]["runs"] == 4
    assert 'Carried as `a.json` recorded them' in capsys.readouterr().out
    # bad input: one line, exit 2
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    assert deliver.main(["--runs", f"here={tmp_path / 'bad.jsonl'}"]) == 2
    assert "bad.jsonl:1: not a saved run" in capsys.readouterr().err
    (tmp_path / "bad.jsonl").write_text('{"dataset": "d"}\n')  # JSON, but not a run
    assert deliver.main(["--runs", f"here={tmp_path / 'bad.jsonl'}"]) == 2
    assert "bad.jsonl:1: not a saved run" in capsys.readouterr().err
    assert deliver.main(["--carry", f"nope={tmp_path / 'a.json'}"]) == 2
    assert deliver.main(["--carry", f"here={tmp_path / 'a.json'}", "--bench", f"here={out}"]) == 2
    assert deliver.main(["--bench", f"here={out}", "--save-runs", f"other={saved}"]) == 2
    assert deliver.main([]) == 2
    # --carry-rest: every recorded setting not measured here, in the recorded order; a measured one takes its place
    assert deliver.main(["--carry-rest", str(tmp_path / "c.json"), "--runs", f"more={saved}",
                         "--out", str(tmp_path / "d")]) == 0
    d = json.loads((tmp_path / "d.json").read_text())
    assert list(d) == ["here", "more"] and d["here"] == c["here"] and d["more"]["cells"] == c["more"]["cells"]
    assert 'Carried as `c.json` recorded them (their bench directories are not on the machine that made this ' \
        'page): "here".' in capsys.readouterr().out
