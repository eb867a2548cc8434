"""Scaling of ``promptgym bench --executor ray`` on this machine (issue 16, item 4).

One command: ``python benchmarks/scaling.py``. A local Ray cluster of separate processes on
127.0.0.1 (a head that only schedules, and one-CPU worker nodes added 1 -> 2 -> 4 -> 8) runs the
same bench grid against the loopback fake OpenAI server (``tests/integration/fake_openai_server.py``
in a child process, every answer after ``--delay`` seconds); the same grid on the in-process
executor is the comparison. Writes ``results/scaling.json`` and ``results/scaling.md``.

Figures: the grid's wall time, model calls per second (requests counted at the server), and the
fraction of ideal, ideal at k workers being k times the one-worker throughput (a cell is one
worker's: each node has one CPU and a cell takes one).

Decisions:
- Every measurement starts from an empty bench directory (cold caches, a fresh run store), so each
  does the same work; the requests the server counted must be equal across all of them (checked).
- Workers are warmed before the timer (one task per node that imports promptgym and the SDK, as
  the first cell on a fresh worker would): the figure is the grid's, not Python's start-up. The
  warm-up seconds are recorded.
- The cluster's nodes are added one at a time (nodes starting together on a loaded 2-core machine
  time out) and stopped by signalling the processes this script started (``ray_cluster.py``).
- Two cores shared with other work: the numbers are this machine's on that day (load average
  recorded), and at 8 workers the clients' CPU, not the server's latency, is what runs out.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from ray_cluster import LocalRayCluster  # noqa: E402
from throughput import FAKE_MODEL, LoopbackServer  # noqa: E402  (benchmarks/, this script's folder)

RESULTS = ROOT / "benchmarks" / "results"

# The fake server in a child process (its threads do not share a GIL with the in-process executor
# being measured); it answers deterministically in the request (support's labels; an instruction
# for the optimizer's calls). "stats" on stdin answers the requests received since the last
# "stats" and the most in flight at once; end of input stops it.
_SERVER = """
import hashlib, json, sys
sys.path.insert(0, sys.argv[1])
from fake_openai_server import FakeOpenAIServer
LABELS = ("positive", "negative", "neutral", "ambivalent")

def reply(body):
    content = " ".join(m.get("content", "") for m in body.get("messages") or []) or str(body.get("prompt"))
    h = int(hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest(), 16)
    if "instruction" in content.lower()[-300:] or "What instruction did the friend follow" in content:
        return f"Label the review's sentiment (variant {h % 11})."
    gold = next((label for label in LABELS if f"was {label}." in content), LABELS[0])
    return gold if h % 3 else LABELS[h % 4]

server = FakeOpenAIServer(reply=reply, delay=float(sys.argv[2]), models=(sys.argv[3],), max_requests=10**9,
                          lifetime=float(sys.argv[4])).start()
print(server.base_url, flush=True)
for line in sys.stdin:
    with server._lock:
        stats = dict(received=len(server.received), max_in_flight=server.max_in_flight)
        server.received.clear()
        server.max_in_flight = 0
    print(json.dumps(stats), flush=True)
server.stop()
"""


def cpu_seconds(sessions: set[int], pids: set[int]) -> float:
    """CPU time (user + system) of the live processes in ``sessions`` (each Ray node's ``ray start``
    session holds its raylet, agents and workers) or in ``pids`` (this driver, the server)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) in sessions or int(name) in pids:  # fields after the name: state ppid pgrp session ...
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU jiffies of the whole machine since boot (/proc/stat), other work included."""
    with open("/proc/stat") as fh:
        values = [int(x) for x in fh.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def _warm() -> int:
    """A worker's first task: the imports a cell needs."""
    import promptgym.api  # noqa: F401
    import promptgym.models.openai_backend  # noqa: F401
    import openai  # noqa: F401

    time.sleep(0.5)  # hold the CPU so the next warm-up lands on another node
    return os.getpid()


def run_grid_once(args, server: LoopbackServer, executor, sessions: set[int] = frozenset()) -> dict:
    from promptgym.bench import BenchDir, Settings, cells, parse_variants, run_grid
    from support import write_reviews

    model = f"openai:{FAKE_MODEL}@{server.base_url}"
    with tempfile.TemporaryDirectory(prefix="promptgym-scaling-") as tmp:
        data = write_reviews(Path(tmp), 80)
        settings = Settings(budget=args.budget, train_size=8, dev_size=10, test_size=20, select_k=2,
                            select_level=0.1, optimizer_model=model)
        todo = cells([data], [model], "chat", parse_variants(args.methods), list(range(args.seeds)))
        server.stats()  # reset the counters
        ours = {os.getpid(), server.proc.pid}
        cpu_before, busy_before = cpu_seconds(set(sessions), ours), machine_busy()
        started = time.perf_counter()
        rows = run_grid(BenchDir(Path(tmp) / "bench"), settings, todo, executor=executor)
        seconds = time.perf_counter() - started
        cpu, busy_after = cpu_seconds(set(sessions), ours) - cpu_before, machine_busy()
        stats = server.stats()
    failed = [r["key"] for r in rows if r["status"] != "ok"]
    if failed:
        raise RuntimeError(f"cells failed: {failed}: {[r.get('error') for r in rows if r['status'] != 'ok']}")
    busy = (busy_after[0] - busy_before[0]) / max(busy_after[1] - busy_before[1], 1)
    return dict(cells=len(rows), seconds=round(seconds, 2), requests=stats["received"],
                max_in_flight=stats["max_in_flight"], calls_per_second=round(stats["received"] / seconds, 1),
                cpu_seconds=round(cpu, 1), cpu_ms_per_call=round(1000 * cpu / stats["received"], 1),
                machine_busy=round(busy, 2), cell_seconds=sorted(r["wall_seconds"] for r in rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--delay", type=float, default=0.2, help="seconds the server takes per answer")
    parser.add_argument("--methods", default="ape,grips")
    parser.add_argument("--seeds", type=int, default=8, help="seeds per method: cells = methods x seeds")
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=8, help="PROMPTGYM_OPENAI_CONCURRENCY of every cell")
    parser.add_argument("--out", type=Path, default=RESULTS / "scaling.json")
    args = parser.parse_args()
    os.environ["PROMPTGYM_OPENAI_CONCURRENCY"] = str(args.concurrency)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    from promptgym.bench import InProcess, RayCluster

    load_before = os.getloadavg()
    server = LoopbackServer(args.delay, lifetime=7200.0, script=_SERVER)
    measurements: list[dict] = []
    try:
        print(f"in-process: {args.seeds} seeds x {args.methods} ...", file=sys.stderr, flush=True)
        measurements.append(dict(executor="in-process", workers=1, **run_grid_once(args, server, InProcess())))
        print(f"  {measurements[-1]['seconds']} s", file=sys.stderr)
        env = {"PROMPTGYM_OPENAI_CONCURRENCY": str(args.concurrency)}
        with LocalRayCluster(workers=0, cpus=1, env=env) as cluster:
            for k in sorted(args.workers):
                while len(cluster.nodes) - 1 < k:
                    cluster._wait_started(f"worker{len(cluster.nodes) - 1}", cluster.add_worker())
                cluster.wait_for_cpus(k)
                ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
                try:
                    started = time.perf_counter()
                    warm = ray.remote(_warm).options(num_cpus=1)
                    pids = set(ray.get([warm.remote() for _ in range(2 * k)]))
                    warmup = round(time.perf_counter() - started, 2)
                    print(f"ray, {k} workers ({len(pids)} warmed in {warmup} s) ...", file=sys.stderr, flush=True)
                    sessions = {os.getsid(node.pid) for node in cluster.nodes if node.poll() is None}
                    result = run_grid_once(args, server, RayCluster(address=cluster.address), sessions)
                finally:
                    ray.shutdown()
                measurements.append(dict(executor="ray", workers=k, warmup_seconds=warmup, **result))
                print(f"  {result['seconds']} s", file=sys.stderr)
    finally:
        server.close()
    requests = {m["requests"] for m in measurements}
    if len(requests) != 1:
        raise RuntimeError(f"the measurements did different work (requests at the server: {sorted(requests)})")
    one = next(m for m in measurements if m["executor"] == "ray" and m["workers"] == 1)
    for m in measurements:
        m["speedup_vs_1_worker"] = round(m["calls_per_second"] / one["calls_per_second"], 2)
        m["fraction_of_ideal"] = round(m["calls_per_second"] / (m["workers"] * one["calls_per_second"]), 2)
    record = dict(
        date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), machine=platform.machine(),
        cpus=os.cpu_count(), load_average_before=[round(x, 2) for x in load_before],
        load_average_after=[round(x, 2) for x in os.getloadavg()], ray=ray.__version__, python=platform.python_version(),
        grid=dict(methods=args.methods, seeds=args.seeds, cells=one["cells"], budget=args.budget, train_size=8,
                  dev_size=10, test_size=20, select_k=2),
        server=dict(delay=args.delay, where="tests/integration/fake_openai_server.py in a child process"),
        concurrency_per_cell=args.concurrency,
        cluster="head (0 CPUs) + k worker nodes of 1 CPU, each `ray start --block` on 127.0.0.1",
        ideal="k workers: k x the 1-worker calls per second",
        measurements=measurements)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    table = markdown(record)
    args.out.with_suffix(".md").write_text(table)
    print(table)


def markdown(record: dict) -> str:
    g = record["grid"]
    lines = [f"# Scaling: bench grid on Ray workers ({record['date']})", "",
             f"{g['cells']} cells ({g['methods']} x {g['seeds']} seeds, budget {g['budget']}, train {g['train_size']}, "
             f"dev {g['dev_size']}, test {g['test_size']}); fake OpenAI server answering after "
             f"{record['server']['delay']} s; {record['concurrency_per_cell']} requests in flight per cell at most; "
             f"{record['cpus']} CPUs, load average {record['load_average_before'][0]} before, "
             f"{record['load_average_after'][0]} after; Ray {record['ray']}.", "",
             "| executor | workers | grid seconds | requests | calls/s | speed-up vs 1 worker | fraction of ideal | "
             "most in flight | CPU s (ours) | CPU ms per call | machine busy |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in record["measurements"]:
        lines.append(f"| {m['executor']} | {m['workers']} | {m['seconds']} | {m['requests']} | {m['calls_per_second']} | "
                     f"{m['speedup_vs_1_worker']} | {m['fraction_of_ideal']} | {m['max_in_flight']} | "
                     f"{m['cpu_seconds']} | {m['cpu_ms_per_call']} | {m['machine_busy']} |")
    lines += ["", "Ideal at k workers: k x the 1-worker calls per second. Requests are counted at the server "
              "(equal in every row: the same work). CPU s (ours): user + system time of the driver, the server "
              "and every process of the Ray nodes during the grid; machine busy: the share of all CPUs in use "
              "meanwhile, other work on the machine included."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
