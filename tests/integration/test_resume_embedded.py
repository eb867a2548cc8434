"""Kill -9 during a real optimization on the embedded model, resume, and check the ledger."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ARGS = ["optimize", "--dataset", "example:sentiment", "--method", "ape", "--budget", "40",
        "--train-size", "10", "--test-size", "6", "--seed", "3", "--json", "--quiet",
        "--param", "eval_examples=6", "--param", "prompts_per_subsample=3"]


def _cli(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PROMPTGYM_HOME=str(home))
    proc = subprocess.run([sys.executable, "-m", "promptgym.cli", *args], env=env,
                          capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def _uncached(home: Path) -> int:
    db = home / "runs.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute("select count(*) from calls where cached = 0").fetchone()[0]
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def test_kill_then_resume_repeats_no_completed_call(tmp_path):
    home = tmp_path / "killed"
    env = dict(os.environ, PROMPTGYM_HOME=str(home))
    proc = subprocess.Popen([sys.executable, "-m", "promptgym.cli", *ARGS], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while _uncached(home) < 12 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = _uncached(home)
    assert done_before >= 12

    runs = json.loads(_cli(home, "runs", "--json").stdout)
    assert len(runs) == 1 and runs[0]["status"] == "interrupted"  # its owner is a dead pid: no live lease
    run_id = runs[0]["run_id"]

    resumed = json.loads(_cli(home, "resume", run_id, "--json").stdout.strip().splitlines()[-1])
    assert resumed["run_id"] == run_id
    assert resumed["cached_calls"] >= done_before  # what was done before came back from the cache
    with sqlite3.connect(home / "runs.sqlite") as conn:
        keys = [k for (k,) in conn.execute("select key from calls where run_id = ? and cached = 0", (run_id,))]
        charged = conn.execute("select count(*) from calls where run_id = ? and cached = 0 and charged = 1",
                               (run_id,)).fetchone()[0]
        status = conn.execute("select status from runs where run_id = ?", (run_id,)).fetchone()[0]
    assert len(keys) == len(set(keys)), "a completed model call was made again"
    assert charged <= 40
    assert status == "finished"

    # The same run, never interrupted, in a fresh home: the same outcome.
    straight = json.loads(_cli(tmp_path / "straight", *ARGS).stdout.strip().splitlines()[-1])
    for field in ("best_prompt", "best_score", "test_initial", "test_best", "llm_calls"):
        assert straight[field] == resumed[field], field

    # A warm re-run of the finished optimization makes no model call at all.
    warm = json.loads(_cli(home, *ARGS).stdout.strip().splitlines()[-1])
    assert warm["llm_calls"] == 0 and warm["cached_calls"] > 0
    assert warm["best_prompt"] == resumed["best_prompt"]
