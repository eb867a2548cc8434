"""benchmarks/peers/run.py's stopping (no model): ``--until HH:MM`` names the next such minute, and an
interrupt while a system runs stops that system's process group too, so a stopped run leaves no stray
process and no row for the system it cut short (the same command resumes it)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT / "benchmarks" / "peers"
DAY = 20_000 * 86400.0  # some midnight, UTC


@pytest.fixture(scope="module")
def run():
    import importlib.util

    spec = importlib.util.spec_from_file_location("peers_run", PEERS / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["peers_run"] = module
    spec.loader.exec_module(module)
    return module


def test_until_is_the_next_such_minute(run):
    assert run.deadline(None, DAY) is None
    assert run.deadline("19:45", DAY + 19 * 3600) == DAY + 19 * 3600 + 45 * 60
    assert run.deadline("01:00", DAY + 23 * 3600) == DAY + 86400 + 3600  # past today: tomorrow's
    assert run.deadline("7:05", DAY + 7 * 3600 + 5 * 60) == DAY + 86400 + 7 * 3600 + 5 * 60


@pytest.mark.parametrize("bad", ["24:00", "19:60", "7pm", "19.45"])
def test_until_rejects_other_forms_in_one_line(run, bad):
    with pytest.raises(SystemExit, match="expected HH:MM"):
        run.deadline(bad, DAY)


def test_interrupt_stops_the_running_system_and_its_children(tmp_path):
    pidfile = tmp_path / "pids"
    # The "system": a shell that starts a grandchild, writes both pids, and waits.
    system = f"sleep 120 & echo $$ $! > {pidfile}; wait"
    script = (f"import sys; sys.path.insert(0, {str(PEERS)!r}); import run, signal; "
              f"signal.signal(signal.SIGTERM, signal.default_int_handler); "
              f"run.run_timed(['sh', '-c', {system!r}], __import__('pathlib').Path({str(tmp_path / 'log')!r}), 600)")
    harness = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while not (pidfile.exists() and len(pidfile.read_text().split()) == 2):
        assert time.time() < deadline, "the system never started"
        time.sleep(0.05)
    pids = [int(p) for p in pidfile.read_text().split()]
    harness.terminate()  # SIGTERM, as `kill <pid>` sends
    _, err = harness.communicate(timeout=60)
    assert harness.returncode != 0 and "KeyboardInterrupt" in err  # re-raised for the caller
    time.sleep(0.2)
    assert not [pid for pid in pids if alive(pid)]


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper that is not us counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z")


def test_merge_writes_one_table_and_says_who_is_ahead(run, tmp_path, capsys):
    config = dict(datasets=["A"], seeds=[0], budget=300, train_size=20, dev_size=75, test_size=40,
                  task_model="gemma3-270m", optimizer_model="embedded", n_ctx=2048, started="2026-12-07 18:00 UTC",
                  command="run.py")
    n = 40
    ours = dict(peer="promptgym-opro", dataset="A", seed=0, framework="promptgym", status="ok", calls_search=250,
                refused_search=0, over_budget_search=0, wall_seconds=300.0, error=None, final_prompt="ours",
                test_start=[int(i < 10) for i in range(n)], test_final=[int(i < 30) for i in range(n)])
    peer = dict(ours, peer="gepa", framework="gepa 0.1.4", final_prompt="theirs",
                test_start=[int(i < 10) for i in range(n)], test_final=[int(i < 10) for i in range(n)])
    halves = []
    for i, r in enumerate((ours, peer)):
        halves.append(tmp_path / f"half{i}.json")
        halves[-1].write_text(run.json.dumps({"config": config, "rows": [r], "seconds": 10}))
    out = tmp_path / "merged.json"
    run.merge(halves, out)
    said = capsys.readouterr().out
    merged = run.json.loads(out.read_text())
    assert {r["peer"] for r in merged["rows"]} == {"promptgym-opro", "gepa"} and merged["seconds"] == 20
    assert "A, by final: promptgym-opro vs gepa: +0.500" in said and "promptgym-opro is ahead" in said
    assert "A, by delta:" in said and "Not run yet" not in out.with_suffix(".md").read_text()
    config["datasets"] = ["A", "B"]  # B planned, no row yet: the table says so
    halves[0].write_text(run.json.dumps({"config": config, "rows": [ours], "seconds": 10}))
    run.merge(halves, out)
    assert "**Not run yet** (the same command resumes): `B`." in out.with_suffix(".md").read_text()
    config2 = dict(config, budget=200)
    halves[1].write_text(run.json.dumps({"config": config2, "rows": [peer], "seconds": 10}))
    with pytest.raises(SystemExit, match="budget differ"):
        run.merge(halves, out)
    assert "Not complete yet" not in out.with_suffix(".md").read_text()
    config.update(datasets=["A"], seeds=[0, 1])  # seed 1 of A has our row but not the peer's: the table says so
    halves[0].write_text(run.json.dumps({"config": config, "rows": [ours, dict(ours, seed=1)], "seconds": 10}))
    halves[1].write_text(run.json.dumps({"config": config, "rows": [peer], "seconds": 10}))
    run.merge(halves, out)
    assert ("**Not complete yet** (the same command resumes; a task's numbers cover its rows so far): `A` seed 1."
            in out.with_suffix(".md").read_text())


def test_the_constant_answer_comes_from_train_and_dev_and_is_kept_where_the_split_is_gone(run, tmp_path):
    split = tmp_path / "run" / run.slug("paper:x/y") / "seed0" / "split"
    split.mkdir(parents=True)
    def write(name, targets):
        (split / f"{name}.jsonl").write_text("".join(run.json.dumps({"input": f"{name} {i}", "target": t,
                                                                      "choices": ["No", "Yes"]}) + "\n"
                                                     for i, t in enumerate(targets)))
    write("train", ["Yes", "No", "Yes"])
    write("dev", ["Yes", "No"])
    write("test", ["No", "No", "Yes", "No"])  # test's own majority (No) is never looked at
    result = {"config": {"run_dir": str(tmp_path / "run")}, "rows": [
        {"peer": "gepa", "dataset": "paper:x/y", "seed": 0}, {"peer": "gepa", "dataset": "paper:x/y", "seed": 1}]}
    assert run.constant_answers(result) == [{"dataset": "paper:x/y", "seed": 0, "label": "Yes", "test": [0, 0, 1, 0]}]
    kept = {"dataset": "paper:x/y", "seed": 1, "label": "No", "test": [1]}  # seed 1's split is not here: kept
    assert run.constant_answers(dict(result, constant=[kept]))[1] == kept
