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
