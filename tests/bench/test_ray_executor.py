"""``promptgym bench --executor ray`` on a real local Ray cluster (a head and two one-CPU worker
nodes, separate processes on 127.0.0.1, started and stopped by the module's fixture).

The grid on Ray must give the rows the in-process executor gives (scripted model); over HTTP (the
loopback fake OpenAI server, which counts every request it gets) a Ray worker killed with SIGKILL
in the middle of a cell must cost no repeated model call but the ones in flight at the kill, and
the budget must hold across workers, counted at the server.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ray = pytest.importorskip("ray")
pytest.importorskip("openai")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from fake_openai_server import FakeOpenAIServer  # noqa: E402
from ray_cluster import LocalRayCluster  # noqa: E402

from promptgym.bench import BenchDir, RayCluster, Settings, cells, parse_variants, run_grid  # noqa: E402
from promptgym.bench.executors import InProcess  # noqa: E402
from promptgym.store.runs import RunStore  # noqa: E402

from support import REVIEW_LABELS, write_reviews  # noqa: E402

SETTINGS = dict(budget=60, train_size=8, dev_size=10, test_size=20, select_k=2, select_level=0.1)
COMPARED = ("best_prompt", "initial_score", "best_score", "test_initial", "test_best", "test_delta", "kept_start",
            "llm_calls", "cached_calls", "budget_used", "candidates", "method_best_prompt", "verdict")


@pytest.fixture(autouse=True)
def _like_the_workers(monkeypatch):
    monkeypatch.setenv("PROMPTGYM_OPENAI_CONCURRENCY", "4")  # in-process runs too


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    env = {"PROMPTGYM_HEARTBEAT_SECONDS": "0.5", "PROMPTGYM_LEASE_SECONDS": "2", "PROMPTGYM_OPENAI_CONCURRENCY": "4"}
    with LocalRayCluster(workers=2, cpus=1, env=env, log_dir=tmp_path_factory.mktemp("ray-logs")) as running:
        yield running


def reply(body: dict) -> str:
    """Deterministic in the request: an instruction for the optimizer's calls; for task calls the
    right label or a wrong one depending on the prompt, so candidates score differently."""
    import hashlib

    content = " ".join(m.get("content", "") for m in body.get("messages") or []) or str(body.get("prompt"))
    h = int(hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest(), 16)
    if "instruction" in content.lower()[-300:] or "What instruction did the friend follow" in content:
        return f"Label the review's sentiment (variant {h % 11})."
    gold = next((label for label in REVIEW_LABELS if f"was {label}." in content), REVIEW_LABELS[0])
    return gold if h % 3 else REVIEW_LABELS[h % 4]


@dataclass
class TimedServer(FakeOpenAIServer):
    """The fake server, also noting each request's life (body, arrival and finish, monotonic, and the
    process that sent it: the pid owning the client's socket, asked of the OS once per connection,
    None where that process was gone by then). Arrival is taken before asking the OS, which scans
    /proc and can take a while on a loaded machine: the base class's ``at`` comes after it."""

    lives: list = field(default_factory=list)  # per request: (body, arrived, finished, sender pid)
    senders: Counter = field(default_factory=Counter)
    _pids: dict = field(default_factory=dict)

    def _handle(self, path, body, headers, peer=None):
        arrived = time.monotonic()
        if peer is not None and peer[1] not in self._pids:
            for _ in range(5):  # the client's row may lag the accept by a moment
                self._pids[peer[1]] = client_pid(peer[1], self.port)
                if self._pids[peer[1]] is not None:
                    break
                time.sleep(0.01)
        try:
            return super()._handle(path, body, headers, peer)
        finally:
            with self._lock:
                sender = self._pids.get(peer[1]) if peer is not None else None
                self.lives.append((json.dumps(body, sort_keys=True), arrived, time.monotonic(), sender))
                if peer is not None:
                    self.senders[sender] += 1


def client_pid(port: int, server_port: int) -> int | None:
    """The process holding the loopback client socket ``port`` -> ``server_port`` (Linux /proc); a
    closed socket of an earlier connection on the same port (TIME_WAIT, inode 0) is not it."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                parts = line.split()
                local, remote = parts[1].rsplit(":", 1)[1], parts[2].rsplit(":", 1)[1]
                if int(local, 16) == port and int(remote, 16) == server_port and parts[9] != "0":
                    inode = parts[9]
                    break
        if inode:
            break
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in sorted((int(p) for p in os.listdir("/proc") if p.isdigit()), reverse=True):
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == target for fd in os.listdir(f"/proc/{pid}/fd")):
                return pid
        except OSError:
            continue
    return None


def _grid(tmp_path: Path, name: str, model: str, methods: str = "ape,grips", seeds=(0, 1)):
    data = write_reviews(tmp_path, 80)
    settings = Settings(**SETTINGS, optimizer_model=model)
    return BenchDir(tmp_path / name), settings, cells([data], [model], "chat", parse_variants(methods), list(seeds))


def _same(a: list[dict], b: list[dict], resumed: str | None = None) -> None:
    """The same results; the run ``resumed`` (run id in ``b``) has its replayed calls as cached ones too."""
    assert [(r["variant"], r["seed"]) for r in a] == [(r["variant"], r["seed"]) for r in b]  # the model URL's port differs
    for x, y in zip(a, b):
        assert x["status"] == y["status"] == "ok", (x.get("error"), y.get("error"))
        fields = [k for k in COMPARED if not (k == "cached_calls" and y["run_id"] == resumed)]
        assert {k: x["summary"][k] for k in fields} == {k: y["summary"][k] for k in fields}, x["key"]
        assert x["test_best_scores"] == y["test_best_scores"] and x["test_initial_scores"] == y["test_initial_scores"]


def test_the_grid_on_ray_gives_the_in_process_rows(tmp_path, cluster):
    bench, settings, todo = _grid(tmp_path, "local", "scripted")
    here = run_grid(bench, settings, todo)
    bench, settings, todo = _grid(tmp_path, "ray", "scripted")
    heard = []
    there = run_grid(bench, settings, todo, executor=RayCluster(address=cluster.address),
                     on_cell=lambda row, ran, number, total: heard.append((ran, number, total)))
    _same(here, there)
    assert sorted(heard) == [(True, n, 4) for n in range(1, 5)]
    assert len({r["run_id"] for r in there}) == 4 and len(BenchDir(tmp_path / "ray").rows()) == 4
    # the work was spread: the runs' lease owners (the processes that ran them) are Ray workers, not us
    owners = {RunStore(bench.store_url).get_run(r["run_id"])["owner_pid"] for r in there}
    assert os.getpid() not in owners


def _killer(bench: BenchDir, after_calls: int, record: dict, stop: threading.Event) -> None:
    """SIGKILL the Ray worker running the first run that has ``after_calls`` ledger rows; note
    the run, the pid and when (monotonic)."""
    import sqlite3

    path = bench.work / "runs.sqlite"
    while not stop.is_set():
        time.sleep(0.05)
        if not path.exists():
            continue
        try:
            con = sqlite3.connect(path, timeout=5)
            rows = con.execute("SELECT r.run_id, r.owner_pid, COUNT(c.id) FROM runs r JOIN calls c "
                               "ON c.run_id = r.run_id AND c.cached = 0 WHERE r.status = 'running' "
                               "AND r.owner_token IS NOT NULL GROUP BY r.run_id").fetchall()
            con.close()
        except sqlite3.OperationalError:
            continue
        for run_id, pid, n in rows:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes() if pid and Path(f"/proc/{pid}").exists() else b""
            if n >= after_calls and pid != os.getpid() and (b"ray::" in cmdline or b"default_worker" in cmdline):
                record.update(run_id=run_id, pid=pid, at=time.monotonic(), calls=n)
                os.kill(pid, signal.SIGKILL)
                return


def _http_rows(tmp_path: Path, name: str, executor, kill_after: int | None = None):
    with TimedServer(reply=reply, delay=0.05) as server:
        bench, settings, todo = _grid(tmp_path, name, f"openai:fake-model@{server.base_url}")
        record: dict = {}
        stop = threading.Event()
        killer = threading.Thread(target=_killer, args=(bench, kill_after, record, stop), daemon=True)
        if kill_after is not None:
            killer.start()
        try:
            rows = run_grid(bench, settings, todo, executor=executor)
        finally:
            stop.set()
        if kill_after is not None:
            killer.join(timeout=5)
        return bench, rows, server, record


def _requests(server: TimedServer) -> Counter:
    return Counter(json.dumps(r.body, sort_keys=True) for r in server.received if r.path.rstrip("/") != "/v1/models")


COMMIT_LAG = 1.0  # seconds an answer may wait at the worker before its commit, on a loaded machine


def _lives(server: TimedServer, bodies, killed: dict) -> str:
    """Each repeated request's sends, relative to the kill: what a failure needs to be understood."""
    numbered = {body: n for n, body in enumerate(bodies, 1)}
    lines = [f"killed pid {killed['pid']} (run {killed['run_id']}); repeated:"]
    lines += [f"  #{n} ({bodies[body]} more): {body}" for body, n in numbered.items()]
    for body, arrived, done, sender in server.lives:
        if body in numbered:
            lines.append(f"  #{numbered[body]} arrived {arrived - killed['at']:+.3f}s finished "
                         f"{done - killed['at']:+.3f}s from pid {sender}")
    return "\n".join(lines)


def test_a_killed_worker_s_cell_resumes_elsewhere_without_repeating_a_completed_call(tmp_path, cluster):
    _, here, local_server, _ = _http_rows(tmp_path, "local", InProcess())
    bench, there, server, killed = _http_rows(tmp_path, "ray", RayCluster(address=cluster.address),
                                              kill_after=15)
    assert killed, "no worker was killed: the grid finished before the killer found a running cell"
    rows = {r["run_id"]: r for r in there}
    assert killed["run_id"] in rows and rows[killed["run_id"]]["resumed"]  # the same run, resumed
    _same(here, there, resumed=killed["run_id"])
    # Counted at the server: every request of the in-process grid, and again only the ones in flight
    # when the worker died. In flight is the worker's view: sent, its answer not yet stored. The
    # server sees when it sent the answer; the worker stores it moments later (a SQLite commit, which
    # a loaded machine can hold up), so an answer finished shortly before the kill may be lost too.
    # Sent by the killed worker is sent before the kill even if it arrived just after the moment
    # noted (the killer notes the time, then kills); a sender gone before the server asked the OS
    # (None) sent it about then.
    extra = _requests(server) - _requests(local_server)
    assert not (_requests(local_server) - _requests(server))
    in_flight = Counter(body for body, arrived, done, sender in server.lives
                        if done >= killed["at"] - COMMIT_LAG and (sender == killed["pid"] or (
                            sender is None and arrived <= killed["at"] + COMMIT_LAG)))
    assert all(extra[body] <= in_flight[body] for body in extra), _lives(server, extra, killed)
    assert sum(extra.values()) <= 4  # PROMPTGYM_OPENAI_CONCURRENCY of the killed worker
    store = RunStore(bench.store_url)
    assert store.get_run(killed["run_id"])["owner_pid"] != killed["pid"]  # finished by another worker process


@pytest.mark.parametrize("fan_out", [None, "3"], ids=["cells", "cells-and-batches"])
def test_the_budget_holds_across_workers_counted_at_the_server(tmp_path, cluster, monkeypatch, fan_out):
    """On 2 workers, and with each cell's HTTP batches also spread over Ray tasks in chunks of 3
    (``PROMPTGYM_RAY_FANOUT``): the same results as in-process, every request in a ledger, no run
    over its budget."""
    _, here, _, _ = _http_rows(tmp_path, "local", InProcess())
    if fan_out:
        monkeypatch.setenv("PROMPTGYM_RAY_FANOUT", fan_out)  # passed to the workers with the other PROMPTGYM_*
    bench, rows, server, _ = _http_rows(tmp_path, "ray", RayCluster(address=cluster.address))
    _same(here, rows)
    store = RunStore(bench.store_url)
    total = sum(_requests(server).values())
    ledgers = {r["run_id"]: [c for c in store.call_rows(r["run_id"]) if not c["cached"]] for r in rows}
    assert total == sum(len(calls) for calls in ledgers.values())  # the ledgers hold every request made
    for row in rows:
        charged = sum(c["charged"] for c in ledgers[row["run_id"]])
        assert charged <= SETTINGS["budget"]
        assert charged == store.charged_calls(row["run_id"]) == row["summary"]["budget_used"]
    assert total <= sum(SETTINGS["budget"] + sum(not c["charged"] for c in calls) for calls in ledgers.values())
    assert {store.get_run(r)["owner_pid"] for r in ledgers} - {os.getpid()}  # ran on workers
    # who sent the requests: only the processes running the cells, unless batches were fanned out
    cell_processes = {store.get_run(r)["owner_pid"] for r in ledgers}
    assert None not in server.senders
    assert (set(server.senders) - cell_processes != set()) == bool(fan_out), (server.senders, cell_processes)


def test_a_fanned_out_batch_sends_only_what_the_budget_allows(tmp_path, cluster):
    """``RayFanOut``: the evaluator's budget decides what leaves; the chunks' answers are the
    direct backend's."""
    from promptgym.errors import BudgetExhausted
    from promptgym.evaluation.cache import ResponseCache
    from promptgym.evaluation.evaluator import Budget, Evaluator
    from promptgym.models.openai_backend import OpenAIBackend
    from promptgym.models.ray_fanout import RayFanOut
    from promptgym.tasks.prompt import Prompt
    from promptgym.tasks.task import ChoiceTask

    from support import make_examples

    task, prompt, examples = ChoiceTask(scoring="generate"), Prompt("Classify the review."), make_examples(20)
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    try:
        with TimedServer(reply=reply, delay=0.05) as server:
            spec = f"openai:fake-model@{server.base_url}"
            fan = RayFanOut(spec, OpenAIBackend(model="fake-model", base_url=server.base_url), chunk=3)
            cache = ResponseCache(f"sqlite:///{tmp_path / 'fan.sqlite'}")
            with pytest.raises(BudgetExhausted):
                Evaluator(fan, fan, cache, Budget(7)).run_task(task, prompt, examples)
            assert len(server.received) == 7 and fan.chunks_sent == 3  # 3 + 3 + 1
            fanned = Evaluator(fan, fan, cache, Budget(None)).run_task(task, prompt, examples)
            assert len(server.received) == 20  # the first 7 from the cache
            direct = OpenAIBackend(model="fake-model", base_url=server.base_url)
            alone = Evaluator(direct, direct, ResponseCache(f"sqlite:///{tmp_path / 'direct.sqlite'}")).run_task(
                task, prompt, examples)
            assert fanned.predictions == alone.predictions and fanned.scores == alone.scores
    finally:
        ray.shutdown()
