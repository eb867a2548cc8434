"""Run ownership: a lease with a heartbeat; resume refuses a live run and takes over a dead one;
``runs`` tells running from interrupted; stores from before the lease columns keep working."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from promptgym import api
from promptgym.cli import main
from promptgym.models.scripted import ScriptedBackend
from promptgym.paths import default_store_url
from promptgym.store.lease import Lease, LeaseLost, Owner, holder_state
from promptgym.store.runs import RunStore

from support import write_reviews

SCRIPTED = ["--task-model", "scripted", "--optimizer-model", "scripted"]


@pytest.fixture
def dataset(tmp_path) -> str:
    return write_reviews(tmp_path, 60)


def _store() -> RunStore:
    return RunStore(default_store_url())


def _other_live_owner() -> Owner:
    """A live process on this host that is not us: our parent."""
    return Owner(socket.gethostname(), os.getppid(), "someoneelse00000")


def test_a_store_from_before_the_lease_gets_its_columns(tmp_path):
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE runs (run_id VARCHAR(32) PRIMARY KEY, created FLOAT NOT NULL, updated FLOAT NOT NULL,"
                " method VARCHAR(64) NOT NULL, dataset TEXT NOT NULL, status VARCHAR(16) NOT NULL,"
                " config TEXT NOT NULL, best_candidate VARCHAR(32), best_score FLOAT, result TEXT)")
    con.execute("INSERT INTO runs VALUES ('old1', 1, 1, 'ape', 'd', 'running', '{}', NULL, NULL, NULL)")
    con.commit()
    con.close()
    store = RunStore(f"sqlite:///{path}")
    assert store.get_run("old1")["owner_token"] is None
    assert store.list_runs(lease=30)[0]["status"] == "interrupted"  # nobody holds it
    assert store.claim("old1", Owner.me(), 30) is None  # and it can be taken over
    RunStore(f"sqlite:///{path}")  # opening again adds nothing, fails on nothing


def test_claim_refuses_a_live_holder_and_takes_over_a_gone_one():
    store = _store()
    other = _other_live_owner()
    run_id = store.create_run("ape", "d", {}, owner=other)
    me = Owner.me()
    holder = store.claim(run_id, me, lease=30)
    assert holder is not None and holder["owner_pid"] == os.getppid()
    # the lease expires: the run is free
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE runs SET heartbeat = ? WHERE run_id = ?", (time.time() - 60, run_id))
    assert holder_state(store.get_run(run_id), 30) == "expired"
    assert store.claim(run_id, me, lease=30) is None
    assert store.get_run(run_id)["owner_token"] == me.token
    # the old holder's heartbeat now finds another token: it has lost the run
    assert store.heartbeat(run_id, other.token) is False


def test_a_dead_pid_on_this_host_frees_the_run_at_once():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    store = _store()
    run_id = store.create_run("ape", "d", {}, owner=Owner(socket.gethostname(), proc.pid, "deadbeefdeadbeef"))
    assert holder_state(store.get_run(run_id), 30) == "dead"
    assert store.claim(run_id, Owner.me(), lease=30) is None


def test_the_heartbeat_thread_refreshes_and_release_frees():
    store = _store()
    me = Owner.me()
    run_id = store.create_run("ape", "d", {}, owner=me)
    first = store.get_run(run_id)["heartbeat"]
    lease = Lease(store, run_id, me, heartbeat=0.05).start()
    time.sleep(0.3)
    assert store.get_run(run_id)["heartbeat"] > first
    lease.release()
    assert store.get_run(run_id)["owner_token"] is None and not lease.lost


def test_resume_refuses_a_live_run_in_one_line_and_runs_tells_running_from_interrupted(dataset):
    first = CliRunner().invoke(main, ["optimize", *SCRIPTED, "--dataset", dataset, "--budget", "30",
                                      "--train-size", "10", "--test-size", "20", "--json"])
    assert first.exit_code == 0, first.stderr
    run_id = json.loads(first.stdout.strip().splitlines()[-1])["run_id"]
    store = _store()
    other = _other_live_owner()
    store.set_status(run_id, "running")
    assert store.claim(run_id, other, lease=30) is None  # another live process holds it now

    refused = CliRunner().invoke(main, ["resume", run_id, "--json"])
    assert refused.exit_code != 0
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"promptgym: error: run {run_id} is being run by pid "
                                                   f"{os.getppid()} on host {socket.gethostname()} (heartbeat ")
    assert store.get_run(run_id)["owner_token"] == other.token  # untouched

    listed = json.loads(CliRunner().invoke(main, ["runs", "--json"]).stdout)
    assert listed[0]["status"] == "running"
    with store.engine.begin() as conn:  # its heartbeat stops: the lease lapses
        conn.exec_driver_sql("UPDATE runs SET heartbeat = ? WHERE run_id = ?", (time.time() - 60, run_id))
    listed = json.loads(CliRunner().invoke(main, ["runs", "--json"]).stdout)
    assert listed[0]["status"] == "interrupted"

    resumed = CliRunner().invoke(main, ["resume", run_id, "--json"])  # takes it over
    assert resumed.exit_code == 0, resumed.stderr
    run = store.get_run(run_id)
    assert run["status"] == "finished" and run["owner_token"] is None and run["owner_pid"] == os.getpid()


class _RunWatcher(ScriptedBackend):
    """The scripted model that reads the run's row from the store at each call: what the lease looked
    like while the run was running."""

    def __init__(self):
        super().__init__()
        self.seen: list[dict] = []

    def score(self, requests, on_result):
        self.seen += [r for r in _store().list_runs() if r["status"] == "running"]
        super().score(requests, on_result)


def test_a_run_holds_its_lease_while_it_runs(dataset):
    watcher = _RunWatcher()
    result = api.optimize(dataset, budget=20, train_size=10, test_size=10, task_model="scripted",
                          optimizer_model="scripted", backends={"scripted": watcher})
    seen = [r for r in watcher.seen if r["run_id"] == result.run_id]
    assert seen and seen[0]["owner_pid"] == os.getpid() and seen[0]["owner_token"] and seen[0]["heartbeat"]
    assert _store().get_run(result.run_id)["owner_token"] is None


def test_a_run_whose_lease_is_taken_over_stops_at_its_next_call(dataset, monkeypatch):
    # Another process takes the run over mid-search (as `promptgym resume` does once this one's lease
    # has lapsed): this one must stop at its next model call, write nothing more, and leave the run's
    # row to the new holder (not marked failed).
    store, other, seen = _store(), _other_live_owner(), {}

    class TakenOverMidRun(ScriptedBackend):
        def score(self, requests, on_result):
            if self.calls >= 20 and not seen:
                (run,) = store.list_runs()
                assert store.claim(run["run_id"], other, lease=0) is None  # its lease counts as lapsed
                seen.update(run_id=run["run_id"], ledger=len(store.call_rows(run["run_id"])), calls=self.calls)
            super().score(requests, on_result)

    backend = TakenOverMidRun()
    with pytest.raises(LeaseLost, match="another process .* took this run over .* stopping without touching it"):
        api.optimize(dataset, method="opro", budget=200, train_size=10, test_size=10, task_model="scripted",
                     optimizer_model="scripted", quiet=True, backends={"scripted": backend})
    run = store.get_run(seen["run_id"])
    assert (run["status"], run["owner_token"], run["owner_pid"]) == ("running", other.token, other.pid)
    assert len(store.call_rows(seen["run_id"])) == seen["ledger"]  # no ledger row after the takeover
    assert backend.calls == seen["calls"] + 1  # the call that found the lease gone was the last one
