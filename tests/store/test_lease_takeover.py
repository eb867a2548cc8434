"""Issue 26, item 2: a process that lost its lease never changes the run; a locked store says so.

Before: a run stopped (SIGSTOP) past its lease and resumed elsewhere to the end, then continued,
exited with "another process took this run over" *and set the finished run to failed* (after which
``export`` refused it): the status write did not check who held the run. And while another process
sat inside a SQLite write, a resume waited 60 s in silence and ended with "database is locked".
Real processes on SQLite here: the run, the resume and the lock holder are each their own process.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from support import sentiment_reply, write_sentiment

try:  # tests/integration may or may not be a package
    from integration.fake_openai_server import FakeOpenAIServer
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).parents[1] / "integration"))
    from fake_openai_server import FakeOpenAIServer  # type: ignore[no-redef]


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, PROMPTGYM_HOME=str(home), OPENAI_API_KEY="sk-fake", PROMPTGYM_OPENAI_CONCURRENCY="1",
               **extra)
    env.pop("PROMPTGYM_CACHE", None)
    env.pop("PROMPTGYM_STORE", None)
    return env


def _cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "promptgym.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def _db(home: Path, query: str, *params) -> list[tuple]:
    with sqlite3.connect(home / "runs.sqlite", timeout=30) as conn:
        return conn.execute(query, params).fetchall()


@pytest.mark.integration
def test_a_process_that_lost_its_lease_leaves_the_finished_run_alone(tmp_path):
    home = tmp_path / "home"
    # Short lease: heartbeat every 0.5 s, lapses after 4 s (with 1 s, a resume's own heartbeat could lapse
    # while CI's other tests held both cores: this test was flaky under load).
    env = _env(home, PROMPTGYM_HEARTBEAT_SECONDS="0.5", PROMPTGYM_LEASE_SECONDS="4")
    data = write_sentiment(tmp_path)
    at_gate, gate, numbers = threading.Event(), threading.Event(), itertools.count(1)

    def reply(body: dict) -> str:
        if next(numbers) == 8:  # the first process's 8th request waits here: stopped mid-search, not in a write
            at_gate.set()
            gate.wait(60)
        return sentiment_reply(body)

    with FakeOpenAIServer(reply=reply) as server:
        model = f"openai:fake-model@{server.base_url}"
        args = ["optimize", "--dataset", str(data), "--task-model", model, "--optimizer-model", model,
                "--method", "ape", "--budget", "30", "--train-size", "6", "--test-size", "6", "--dev-size", "0",
                "--json", "--quiet"]
        first = subprocess.Popen([sys.executable, "-m", "promptgym.cli", *args], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert at_gate.wait(120), "the first process never reached its 8th request"
            first.send_signal(signal.SIGSTOP)
            time.sleep(5)  # past its lease
            gate.set()  # its answer waits in the socket for when it runs again
            (run_id,), = _db(home, "select run_id from runs")
            second = _cli(env, "resume", run_id, "--json", "--quiet")
            assert second.returncode == 0, second.stderr
            finished = _db(home, "select status, result from runs")
            calls = _db(home, "select count(*) from calls")
            assert finished[0][0] == "finished"
        finally:
            first.send_signal(signal.SIGCONT)
            gate.set()
        out, err = first.communicate(timeout=120)
    assert _db(home, "select status, result from runs") == finished  # still finished, the same summary
    assert _db(home, "select count(*) from calls") == calls  # and no ledger row written after losing it
    assert first.returncode != 0 and out == ""
    assert "took this run over" in err and "stopping without touching it" in err, err
    assert len(err.strip().splitlines()) == 1, err
    exported = _cli(env, "export", run_id, "--format", "txt")
    assert exported.returncode == 0, exported.stderr


def test_a_resume_blocked_by_a_write_in_another_process_says_so(tmp_path):
    home = tmp_path / "home"
    env = _env(home, PROMPTGYM_LOCK_WAIT_SECONDS="7")
    made = _cli(env, "optimize", "--dataset", str(write_sentiment(tmp_path)), "--task-model", "scripted",
                "--optimizer-model", "scripted", "--budget", "10", "--train-size", "6", "--test-size", "6",
                "--dev-size", "0", "--json", "--quiet")
    assert made.returncode == 0, made.stderr
    run_id = json.loads(made.stdout.strip().splitlines()[-1])["run_id"]
    _db(home, "update runs set status = 'interrupted' where run_id = ?", run_id)  # as if killed
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sqlite3, sys, time\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('BEGIN IMMEDIATE'); c.execute('UPDATE runs SET updated = updated')\n"
        "print('held', flush=True); time.sleep(120)\n"), str(home / "runs.sqlite")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        resumed = _cli(env, "resume", run_id, timeout=40)
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert resumed.returncode != 0
    lines = resumed.stderr.strip().splitlines()
    assert len(lines) == 2, resumed.stderr
    store = f"sqlite:///{home / 'runs.sqlite'}"
    assert lines[0].startswith(f"promptgym: {store} is locked by another process (pid {holder.pid}) inside a write; "
                               "waiting (up to 7 s"), lines[0]
    assert lines[1].startswith(f"promptgym: error: {store} is locked by another process (pid {holder.pid}) inside a "
                               "write (waited 7 s of up to 7 s"), lines[1]
    assert "database is locked" not in resumed.stderr and waited < 30
    assert _db(home, "select status from runs") == [("interrupted",)]  # the resume changed nothing
