"""``promptgym bench`` on the scripted model (unit tests of the grid and report logic: no claim about
any method's quality rests on these numbers)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from promptgym import api
from promptgym.bench import BenchDir, Settings, cells, parse_variants, run_grid
from promptgym.bench.grid import split_list, split_models
from promptgym.bench.report import aggregate, leaders
from promptgym.cli import main
from promptgym.errors import PromptgymError

from support import write_reviews

SCRIPTED = ["--task-model", "scripted", "--optimizer-model", "scripted"]
SMALL = ["--budget", "60", "--train-size", "8", "--dev-size", "10", "--test-size", "20"]


def _bench(tmp_path, *extra: str):
    data = write_reviews(tmp_path, 80)
    out = tmp_path / "bench"
    result = CliRunner().invoke(main, ["bench", "--methods", "ape,grips", "--datasets", data, "--seeds", "0,1",
                                       *SMALL, *SCRIPTED, "--out", str(out), *extra])
    return result, out


def test_grid_writes_a_row_per_cell_a_table_and_plots(tmp_path):
    result, out = _bench(tmp_path)
    assert result.exit_code == 0, result.stderr + result.stdout
    data = json.loads((out / "results.json").read_text())
    runs = data["runs"]
    assert sorted((r["variant"], r["seed"]) for r in runs) == [("ape", 0), ("ape", 1), ("grips", 0), ("grips", 1)]
    for row in runs:  # every number of the run summary, final selection included
        assert row["status"] == "ok"
        for field in ("test_initial", "test_best", "test_delta", "test_interval", "kept_start", "selection",
                      "llm_calls", "prompt_tokens", "budget_used"):
            assert field in row["summary"]
        assert len(row["test_initial_scores"]) == 20 and len(row["test_best_scores"]) == 20
        assert row["summary"]["budget_used"] <= 60
    methods = {m["variant"]: m for m in data["methods"]}
    assert methods["ape"]["pooled"]["n"] == 40  # two seeds' test examples as one paired sample
    assert "q_value" in methods["ape"]["pooled"]
    table = (out / "results.md").read_text()
    assert "| ape | 2/2 |" in table and "| grips | 2/2 |" in table
    assert "Best two by mean dev score" in table
    pytest.importorskip("matplotlib")
    assert (out / "plots" / "test-delta.png").stat().st_size > 1000
    assert (out / "plots" / "train-curve.png").stat().st_size > 1000


def test_a_finished_cell_is_never_run_again(tmp_path, monkeypatch):
    result, out = _bench(tmp_path)
    assert result.exit_code == 0
    before = (out / "results.json").read_text()

    def forbidden(*args, **kwargs):
        raise AssertionError("a finished cell ran again")

    monkeypatch.setattr(api, "optimize", forbidden)
    again, _ = _bench(tmp_path)
    assert again.exit_code == 0, again.stderr + again.stdout
    assert "(finished before)" in again.stderr
    assert json.loads((out / "results.json").read_text())["runs"] == json.loads(before)["runs"]


def test_a_row_cut_by_a_kill_is_rebuilt_from_its_finished_run(tmp_path, monkeypatch):
    result, out = _bench(tmp_path)
    lines = (out / "work" / "cells.jsonl").read_text().splitlines()
    lost = json.loads(lines[-1])
    (out / "work" / "cells.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:40])  # torn last line
    calls = []
    real = api.optimize
    monkeypatch.setattr(api, "optimize", lambda *a, **k: calls.append(k["method"]) or real(*a, **k))
    again, _ = _bench(tmp_path)
    assert again.exit_code == 0, again.stderr
    assert calls == []  # its run had finished: the store gives the row back, nothing runs
    rows = BenchDir(out).rows()
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    rebuilt = [r for r in rows if r["variant"] == "grips" and r["seed"] == 1][0]
    assert rebuilt["resumed"] and rebuilt["run_id"] == lost["run_id"]
    assert rebuilt["summary"] == lost["summary"] and rebuilt["test_best_scores"] == lost["test_best_scores"]


def test_each_row_says_on_which_machine_it_ran(tmp_path):
    """Runs pooled from several machines (a bench measured in parts) must say where each ran."""
    result, out = _bench(tmp_path)
    assert result.exit_code == 0, result.stderr
    for row in BenchDir(out).rows():
        assert row["machine"]["cpu"] and isinstance(row["machine"]["simd"], list)
        assert row["machine"]["llama_cpp_python"]  # installed with promptgym's core


def _count_scripted_calls(monkeypatch, interrupt_at: int | None = None) -> list[int]:
    """Count the scripted model's answers (all cells); with ``interrupt_at``, a KeyboardInterrupt
    (a kill, as far as the run can tell) instead of answer number ``interrupt_at``."""
    from promptgym.models.scripted import ScriptedBackend

    answered = [0]
    for name in ("generate", "score"):
        real = getattr(ScriptedBackend, name)

        def counted(self, requests, on_result, real=real):
            def one(i, response):
                if interrupt_at is not None and answered[0] + 1 == interrupt_at:
                    raise KeyboardInterrupt("simulated kill")
                answered[0] += 1
                on_result(i, response)
            real(self, requests, one)

        monkeypatch.setattr(ScriptedBackend, name, counted)
    return answered


def test_a_cell_killed_mid_run_resumes_its_run_without_a_second_budget(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole = _count_scripted_calls(monkeypatch)
    result, reference = _bench(tmp_path / "a")
    assert result.exit_code == 0, result.stderr
    monkeypatch.undo()
    # the same grid killed in its third cell (grips, seed 0: cells run ape s0, grips s0, ape s1, grips s1)
    first = sum(r["summary"]["llm_calls"] for r in BenchDir(reference).rows() if r["seed"] == 0 and r["variant"] == "ape")
    cut = _count_scripted_calls(monkeypatch, interrupt_at=first + 25)
    killed, out = _bench(tmp_path / "b")
    assert killed.exit_code != 0 and len(BenchDir(out).rows()) == 1
    monkeypatch.undo()
    rest = _count_scripted_calls(monkeypatch)
    started = []
    real = api.optimize
    monkeypatch.setattr(api, "optimize", lambda *a, **k: started.append((k["method"], k["seed"])) or real(*a, **k))
    again, _ = _bench(tmp_path / "b")
    assert again.exit_code == 0, again.stderr
    assert ("grips", 0) not in started  # resumed, not started afresh
    assert cut[0] + rest[0] == whole[0]  # not one answer asked for twice
    by_cell = {(r["variant"], r["seed"]): r for r in BenchDir(out).rows()}
    ref = {(r["variant"], r["seed"]): r for r in BenchDir(reference).rows()}
    assert by_cell[("grips", 0)]["resumed"]
    for key, row in ref.items():
        for field in ("best_prompt", "test_best", "budget_used", "llm_calls"):
            assert by_cell[key]["summary"][field] == row["summary"][field], (key, field)


def test_other_settings_in_the_same_directory_are_refused(tmp_path):
    _bench(tmp_path)
    result, _ = _bench(tmp_path, "--budget", "70")
    assert result.exit_code != 0
    assert result.stderr.count("\n") == 1 and "made with other settings (budget 60)" in result.stderr


def test_a_failing_method_is_a_result_and_the_grid_goes_on(tmp_path, monkeypatch):
    real = api.optimize

    def flaky(*args, **kwargs):
        if kwargs["method"] == "ape" and kwargs["seed"] == 1:
            raise RuntimeError("boom in the middle\nlast line of the error")
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "optimize", flaky)
    result, out = _bench(tmp_path)
    assert result.exit_code == 0, result.stderr
    rows = {(r["variant"], r["seed"]): r for r in BenchDir(out).rows()}
    assert rows[("ape", 1)]["status"] == "failed"
    assert rows[("ape", 1)]["error"] == "RuntimeError: last line of the error"
    assert rows[("grips", 1)]["status"] == "ok"
    assert "## Failed runs" in (out / "results.md").read_text()
    monkeypatch.setattr(api, "optimize", real)
    again, _ = _bench(tmp_path, "--retry-failed")
    assert again.exit_code == 0
    assert BenchDir(out).rows()[-1]["status"] == "ok" and len(BenchDir(out).rows()) == 4


def test_a_pool_of_urls_stays_one_task_model_of_the_grid():
    assert split_models("openai:m@http://a:8000/v1#4,http://b:8000/v1#4, embedded,openai:n@https://c/v1") == [
        "openai:m@http://a:8000/v1#4,http://b:8000/v1#4", "embedded", "openai:n@https://c/v1"]
    assert split_models("embedded,gemma3-270m") == ["embedded", "gemma3-270m"]


def test_method_lists():
    assert split_list("ape, protegi[selector=uniform,beam_size=2],opro") == [
        "ape", "protegi[selector=uniform,beam_size=2]", "opro"]
    variants = parse_variants("ape,protegi[selector=uniform]")
    assert [(v.label, v.method, v.params) for v in variants] == [
        ("ape", "ape", {}), ("protegi[selector=uniform]", "protegi", {"selector": "uniform"})]
    from promptgym.optimizers import REGISTRY

    assert [v.method for v in parse_variants("all")] == list(REGISTRY)
    with pytest.raises(PromptgymError, match="nosuch"):
        parse_variants("ape,nosuch")
    with pytest.raises(PromptgymError, match="selector"):
        parse_variants("protegi[selector=banana]")


def test_cells_put_seeds_before_methods():
    grid = cells(["d"], ["m"], "chat", parse_variants("ape,opro"), [0, 1])
    assert [(c.variant.label, c.seed) for c in grid] == [("ape", 0), ("opro", 0), ("ape", 1), ("opro", 1)]


def _row(variant: str, seed: int, start: list[int], best: list[int]) -> dict:
    n = len(start)
    return dict(key=f"{variant}{seed}", dataset="d", task_model="m", layout="chat", variant=variant, method=variant,
                seed=seed, status="ok", wall_seconds=1.0,
                test_initial_scores={f"e{i}": float(start[i]) for i in range(n)},
                test_best_scores={f"e{i}": float(best[i]) for i in range(n)},
                summary=dict(test_initial=sum(start) / n, test_best=sum(best) / n, dev_best=sum(best) / n,
                             test_delta=(sum(best) - sum(start)) / n, test_method_best=None, best_score=0.5,
                             initial_score=0.5, kept_start=best == start, llm_calls=10, budget_used=5,
                             prompt_tokens=1, completion_tokens=1))


def test_pooled_test_and_the_best_two_can_tell_a_real_difference():
    start = [0] * 15 + [1] * 5
    rows = [_row("good", s, start, [1] * 18 + [0] * 2) for s in (0, 1)]
    rows += [_row("same", s, start, start) for s in (0, 1)]
    rows += [_row("bit", s, start, [1] * 2 + start[2:]) for s in (0, 1)]
    records = {r["variant"]: r for r in aggregate(rows)}
    good, same = records["good"]["pooled"], records["same"]["pooled"]
    assert good["n"] == 40 and good["delta"] == pytest.approx(0.65)
    assert good["p_value"] < 0.001 and good["low"] > 0
    assert same["p_value"] == 1 and same["delta"] == 0
    assert good["q_value"] >= good["p_value"]
    duel = leaders(rows, list(records.values()))[0]
    assert (duel["first"], duel["second"]) == ("good", "bit")
    assert duel["delta"] > 0 and duel["p_value"] < 0.001
    close = leaders(rows[2:], aggregate(rows[2:]))[0]  # 'bit' vs 'same': 4 discordant pairs, not real
    assert close["p_value"] > 0.05


def test_settings_bind_rejects_a_corrupt_manifest(tmp_path):
    bench = BenchDir(tmp_path / "b")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "bench.json").write_text("{not json")
    with pytest.raises(PromptgymError, match="unreadable"):
        run_grid(bench, Settings(budget=1, train_size=1, dev_size=0, test_size=0, select_k=0, select_level=0.1,
                                 optimizer_model="scripted"), [])


def test_exact_split_files_give_every_cell_the_same_rows(tmp_path):
    rows = [json.loads(line) for line in open(write_reviews(tmp_path, 40))]
    files = {}
    for name, part in (("train", rows[:8]), ("dev", rows[8:20]), ("test", rows[20:40])):
        files[name] = tmp_path / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps(r) + "\n" for r in part))
    out = tmp_path / "bench-files"
    result = CliRunner().invoke(main, ["bench", "--methods", "ape,grips", "--seeds", "0,1", "--budget", "60",
                                       *SCRIPTED, "--train", str(files["train"]), "--dev", str(files["dev"]),
                                       "--test", str(files["test"]), "--out", str(out)])
    assert result.exit_code == 0, result.stderr + result.stdout
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert len(runs) == 4 and all(r["status"] == "ok" for r in runs)
    for r in runs:
        assert (r["summary"]["train_size"], r["summary"]["dev_size"], r["summary"]["test_size"]) == (8, 12, 20)
        assert sorted(r["test_initial_scores"]) == sorted(f"test-{i}" for i in range(20))


def test_the_python_call_is_what_the_cli_runs(tmp_path):
    from promptgym.bench import bench

    data = write_reviews(tmp_path, 80)
    heard = []
    report = bench(tmp_path / "b", methods="ape,grips", datasets=[data], seeds=[0], budget=60, train_size=8,
                   dev_size=10, test_size=20, task_models=["scripted"], optimizer_model="scripted",
                   on_cell=lambda row, ran, number, total: heard.append((row["variant"], ran, number, total)))
    assert heard == [("ape", True, 1, 2), ("grips", True, 2, 2)]
    assert [m["variant"] for m in report["methods"]] == ["ape", "grips"]
    again = []
    bench(tmp_path / "b", methods="ape,grips", datasets=[data], seeds=[0], budget=60, train_size=8, dev_size=10,
          test_size=20, task_models=["scripted"], optimizer_model="scripted",
          on_cell=lambda row, ran, number, total: again.append(ran))
    assert again == [False, False]
    with pytest.raises(PromptgymError, match="preset 'huge'"):
        bench(tmp_path / "c", preset="huge")


def test_the_best_two_are_picked_on_dev_not_test():
    start = [0] * 20
    rows = [_row(v, 0, start, best) for v, best in (("a", [1] * 20), ("b", [1] * 10 + [0] * 10), ("c", [0] * 20))]
    for row, dev in zip(rows, (0.1, 0.9, 0.8)):  # dev disagrees with test: b and c lead on dev
        row["summary"]["dev_best"] = dev
    duel = leaders(rows, aggregate(rows))[0]
    assert (duel["first"], duel["second"]) == ("b", "c")


def test_bad_data_stops_the_bench_before_any_run(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "x", "target": "a"}\n{"input": "y"}\n')
    result = CliRunner().invoke(main, ["bench", "--methods", "ape", "--datasets", str(bad), "--seeds", "0", *SMALL,
                                       *SCRIPTED, "--out", str(tmp_path / "b")])
    assert result.exit_code != 0
    assert result.stderr.count("\n") == 1 and "bad.jsonl:2" in result.stderr and "target" in result.stderr
    assert not (tmp_path / "b" / "work" / "cells.jsonl").exists()


def test_settings_that_cannot_pay_for_final_selection_are_refused_up_front(tmp_path, monkeypatch):
    """Issue 26: with a budget below selection's reserve, the bench exited 0 with every cell failed
    on the same error. Now one line before any cell runs and before the directory is made."""
    data = write_reviews(tmp_path, 80)
    monkeypatch.setattr(api, "optimize", lambda *a, **k: pytest.fail("a cell ran"))
    result = CliRunner().invoke(main, ["bench", "--methods", "ape,grips", "--datasets", data, "--seeds", "0,1",
                                       "--budget", "20", "--train-size", "8", "--dev-size", "10", "--test-size", "20",
                                       *SCRIPTED, "--out", str(tmp_path / "b")])
    assert result.exit_code == 2
    assert result.stderr == ("promptgym: error: --budget 20 cannot pay for final selection on 10 dev examples "
                             "(2 prompts x 10 = 20 calls): raise --budget, or lower --dev-size or --select-k "
                             "(0 turns selection off)\n")
    assert not (tmp_path / "b").exists()
    for name in ("tr", "dv", "te"):
        (tmp_path / name).mkdir()
    files = [write_reviews(tmp_path / name, n) for name, n in (("tr", 8), ("dv", 12), ("te", 6))]
    with pytest.raises(PromptgymError, match=r"^--budget 30 cannot pay for final selection on 12 dev examples"):
        from promptgym.bench import bench

        bench(tmp_path / "c", methods="ape", seeds=[0], budget=30, task_models=["scripted"], optimizer_model="scripted",
              select_k=2, train_file=files[0], dev_file=files[1], test_file=files[2])


@pytest.mark.parametrize("seeds", ["-1", "0,-2"])
def test_negative_or_non_numeric_seeds_are_one_line(tmp_path, seeds):
    result = CliRunner().invoke(main, ["bench", "--seeds", seeds, *SCRIPTED, "--out", str(tmp_path / "b")])
    assert result.exit_code == 2
    assert result.stderr == f"promptgym: error: --seeds '{seeds}': expected whole numbers from 0 separated by commas\n"


def test_cells_jsonl_has_one_row_per_line_and_old_files_still_read(tmp_path):
    """Issue 26: ``append`` wrote a blank line before each row (``seek`` returned the offset, so the
    "was the last line cut" test was always true)."""
    bench = BenchDir(tmp_path / "b")
    rows = [dict(key=f"k{i}", status="ok", n=i) for i in range(3)]
    for row in rows:
        bench.append(row)
    assert bench.cells_file.read_text() == "".join(json.dumps(r) + "\n" for r in rows)
    bench.cells_file.write_text(bench.cells_file.read_text() + '{"key": "k3", "sta')  # a line a kill cut
    bench.append(dict(key="k4", status="ok", n=4))
    assert bench.cells_file.read_text().endswith('{"key": "k3", "sta\n{"key": "k4", "status": "ok", "n": 4}\n')
    assert [r["key"] for r in bench.rows()] == ["k0", "k1", "k2", "k4"]
    old = BenchDir(tmp_path / "old")  # written by the earlier version: a blank line before each row
    old.work.mkdir(parents=True)
    old.cells_file.write_text("".join("\n" + json.dumps(r) + "\n" for r in rows))
    assert old.rows() == rows
    old.append(dict(key="k5", status="ok", n=5))
    assert old.cells_file.read_text().endswith(json.dumps(rows[-1]) + '\n{"key": "k5", "status": "ok", "n": 5}\n')


def test_executor_choice_errors_are_one_line(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    result, out = _bench(tmp_path, "--executor", "ray")
    assert result.exit_code != 0 and result.stderr.count("\n") == 1
    assert "pip install 'promptgym[ray]'" in result.stderr and not (out / "work").exists()
    monkeypatch.undo()
    result, _ = _bench(tmp_path, "--address", "auto")
    assert result.exit_code != 0 and result.stderr.count("\n") == 1 and "--executor ray" in result.stderr


def test_a_ray_address_nothing_answers_is_one_line_in_seconds(tmp_path):
    pytest.importorskip("ray")
    import socket
    import time

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    result, _ = _bench(tmp_path, "--executor", "ray", "--address", f"127.0.0.1:{port}")
    assert result.exit_code != 0 and result.stderr.count("\n") == 1, result.stderr
    assert f"ray cluster 127.0.0.1:{port}: nothing answers there" in result.stderr
    assert time.monotonic() - started < 30
    result, _ = _bench(tmp_path, "--executor", "ray", "--address", "somewhere")
    assert result.exit_code != 0 and "expected auto, HOST:PORT or ray://HOST:PORT" in result.stderr


def test_the_quick_preset_loads_with_no_download_and_every_preset_names_known_datasets(tmp_path, monkeypatch):
    """The quick preset is what a new user runs first: its data ships in the package, so it loads on a
    machine that reaches no data host (downloads are switched off here to prove it). The full preset's
    datasets are real specs: each either loads or fails with the one-line 'how to get it' error."""
    from promptgym.bench import PRESETS
    from promptgym.bench.grid import default_dev_size
    from promptgym.data import load_dataset
    from promptgym.evaluation.selection import DEFAULT_LEVEL
    from promptgym.data.download import no_download

    monkeypatch.setenv("PROMPTGYM_HOME", str(tmp_path))
    monkeypatch.setenv("PROMPTGYM_PAPER_DATA", str(tmp_path / "no-local-copy"))
    with no_download():
        quick = PRESETS["quick"]
        dev = default_dev_size(quick["budget"], quick["select_k"], DEFAULT_LEVEL)
        for spec in quick["datasets"]:
            assert len(load_dataset(spec)) >= quick["train_size"] + dev + quick["test_size"]
        for spec in PRESETS["full"]["datasets"]:
            try:
                data = load_dataset(spec)
            except PromptgymError as exc:
                assert spec in str(exc) and "\n" not in str(exc)
            else:
                assert data.is_choice


def test_a_bench_left_to_its_preset_runs_at_optimizes_defaults(tmp_path):
    """Issue 23 settled optimize's defaults (one finalist, the dev split the budget pays for); a
    bench that did not follow them measured something users do not get (k 2, dev 30). A preset
    leaves the dev split and k to optimize's rule, at whatever budget is given."""
    from promptgym.bench import bench
    from promptgym.evaluation.selection import DEFAULT_K, plan_selection

    data = write_reviews(tmp_path, 80)
    for preset, budget in (("quick", 60), ("full", 80)):
        out = tmp_path / preset
        bench(out, preset=preset, methods="ape", datasets=[data], seeds=[0], budget=budget, train_size=8,
              test_size=20, task_models=["scripted"], optimizer_model="scripted")
        settings = json.loads((out / "bench.json").read_text())
        chosen = plan_selection(10**9, budget, None)
        assert (settings["select_k"], settings["dev_size"]) == (DEFAULT_K, chosen.dev_size) == (1, budget // 4)
        row = json.loads((out / "results.json").read_text())["runs"][0]
        assert row["status"] == "ok"


def test_the_bench_page_names_and_links_every_run_and_draws_train_as_train(tmp_path):
    """Issue 27: each row names its runs (seed: run id) and links each to its run page, written
    next to results.html; the training
    curve has the start as its baseline and each method's held-out result beside its name."""
    pytest.importorskip("matplotlib")
    data = write_reviews(tmp_path, 80)
    out = tmp_path / "bench"
    result = CliRunner().invoke(main, ["bench", "--methods", "ape,grips", "--datasets", data, "--seeds", "0,1",
                                       "--budget", "150", "--train-size", "8", "--test-size", "20", *SCRIPTED,
                                       "--out", str(out)])
    assert result.exit_code == 0, result.stderr + result.stdout
    page = (out / "results.html").read_text()
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert len(runs) == 4
    for row in runs:
        assert f'{row["seed"]}: <a href="runs/{row["run_id"]}.html">{row["run_id"]}</a>' in page
        assert f'Run {row["run_id"]}: {row["method"]}' in (out / "runs" / f'{row["run_id"]}.html').read_text()
    assert "dev None" not in page
    curve = page[page.index('id="plot-train-curve"'):]
    assert "your prompt (start)" in curve and "held-out Δ test" in curve
    # the same command again rewrites the pages from the finished cells, with their links
    (out / "results.html").unlink()
    (out / "runs" / f'{runs[0]["run_id"]}.html').unlink()
    again = CliRunner().invoke(main, ["bench", "--methods", "ape,grips", "--datasets", data, "--seeds", "0,1",
                                      "--budget", "150", "--train-size", "8", "--test-size", "20", *SCRIPTED,
                                      "--out", str(out)])
    assert again.exit_code == 0, again.stderr + again.stdout
    assert f'href="runs/{runs[0]["run_id"]}.html"' in (out / "results.html").read_text()
    assert (out / "runs" / f'{runs[0]["run_id"]}.html').exists()
    assert json.loads((out / "results.json").read_text())["runs"] == runs  # no cell ran again


def test_select_sequential_reaches_every_cell_and_an_older_directory_reads_as_without_it(tmp_path):
    data = write_reviews(tmp_path, 80)
    out = tmp_path / "bench"
    args = ["bench", "--methods", "ape", "--datasets", data, "--seeds", "0", *SMALL, *SCRIPTED, "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--select-sequential"])
    assert result.exit_code == 0, result.stderr
    [row] = BenchDir(out).rows()
    assert row["summary"]["selection"]["sequential"] is True and row["summary"]["selection"]["race"]["stop"]
    assert "level 0.1 (sequential)" in (out / "results.md").read_text()
    manifest = out / "bench.json"
    older = {k: v for k, v in json.loads(manifest.read_text()).items() if k != "select_sequential"}
    manifest.write_text(json.dumps(older))  # made before the option existed: the fixed race
    refused = CliRunner().invoke(main, [*args, "--select-sequential"])
    assert refused.exit_code != 0 and "made with other settings (select_sequential False)" in refused.stderr
    assert CliRunner().invoke(main, args).exit_code == 0


def test_select_statistic_reaches_every_cell_and_an_older_directory_reads_as_accuracy(tmp_path):
    data = write_reviews(tmp_path, 80)
    out = tmp_path / "bench"
    args = ["bench", "--methods", "ape", "--datasets", data, "--seeds", "0", *SMALL, *SCRIPTED, "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--select-statistic", "probability", "--select-margin", "0.05"])
    assert result.exit_code == 0, result.stderr
    [row] = BenchDir(out).rows()
    assert row["summary"]["selection"]["statistic"] == "probability"
    assert "on the right option's probability (accuracy may drop at most 0.05)" in (out / "results.md").read_text()
    manifest = out / "bench.json"
    older = {k: v for k, v in json.loads(manifest.read_text()).items() if k not in ("select_statistic", "select_margin")}
    manifest.write_text(json.dumps(older))  # made before the option existed: the task's score
    refused = CliRunner().invoke(main, [*args, "--select-statistic", "probability", "--select-margin", "0.05"])
    assert refused.exit_code != 0 and "select_statistic 'accuracy'" in refused.stderr
    assert CliRunner().invoke(main, args).exit_code == 0


def test_a_variant_with_calibrate_runs_its_cells_calibrated_beside_the_plain_method(tmp_path):
    [plain, calibrated] = parse_variants("ape,ape[calibrate=true]")
    assert (plain.label, plain.options) == ("ape", {})
    assert (calibrated.label, calibrated.method, calibrated.params, calibrated.options) == (
        "ape[calibrate=true]", "ape", {}, {"calibrate": True})
    with pytest.raises(PromptgymError, match="calibrate must be true or false"):
        parse_variants("ape[calibrate=3]")
    data = write_reviews(tmp_path, 80)
    out = tmp_path / "bench"
    result = CliRunner().invoke(main, ["bench", "--methods", "ape,ape[calibrate=true]", "--datasets", data,
                                       "--seeds", "0", *SMALL, *SCRIPTED, "--out", str(out)])
    assert result.exit_code == 0, result.stderr + result.stdout
    rows = {r["variant"]: r for r in BenchDir(out).rows()}
    assert rows["ape"]["summary"]["calibration"] is None
    assert rows["ape[calibrate=true]"]["options"] == {"calibrate": True}
    assert rows["ape[calibrate=true]"]["summary"]["calibration"]["prior_initial"]
    assert all(r["summary"]["budget_used"] <= 60 for r in rows.values())
    assert "| ape[calibrate=true] | 1/1 |" in (out / "results.md").read_text()
