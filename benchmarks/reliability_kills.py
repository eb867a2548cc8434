"""Kill -9 at random points, resume, compare with an uninterrupted run; and two writers at once.

    PYTHONPATH=src python benchmarks/reliability_kills.py --trials 20

Every run is ``promptgym optimize`` (APE, budget 80) in a subprocess against the fake OpenAI server
(tests/integration/fake_openai_server.py, which counts the requests it receives), one request in
flight at a time (PROMPTGYM_OPENAI_CONCURRENCY=1), each trial in a fresh PROMPTGYM_HOME and with a
fresh server. A reference run goes uninterrupted. Each trial kills the run with SIGKILL after a
random delay, checks both SQLite files with ``PRAGMA integrity_check``, resumes it with
``promptgym resume RUN_ID`` (killed again with probability --rekill, at most --max-kills kills),
until a resume finishes; then compares its result with the reference, and counts the requests the
server received against the reference's. What is exact: with one request in flight, a kill can lose
at most one request that reached the server but whose answer was not yet in the cache; so
``requests at the server - reference requests`` (the calls repeated) is at most the number of
kills, and zero when no kill hit a request in flight.

Then --writers pairs of different runs write one store and one cache at the same time.
Writes benchmarks/results/reliability-kills.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from fake_openai_server import FakeOpenAIServer  # noqa: E402

LABELS = ("positive", "negative", "neutral", "ambivalent")
RESULT = ("best_prompt", "best_score", "initial_score", "test_initial", "test_best", "candidates",
          "method_best_prompt", "verdict")
ACCOUNTING = ("budget_used", "llm_calls")  # the ledger's counts (see "ledger rows lost" in docs/reliability.md)
COMPARED = RESULT + ACCOUNTING


def reply(body: dict) -> str:
    """Deterministic in the request: an instruction for the optimizer's calls, for task calls the
    right label or a wrong one depending on the prompt (so candidates score differently)."""
    content = " ".join(m.get("content", "") for m in body.get("messages") or []) or str(body.get("prompt"))
    h = int(hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest(), 16)
    if "What instruction did the friend follow" in content or "instruction" in content.lower()[-300:]:
        return f"Label the review's sentiment (variant {h % 11})."
    gold = next((label for label in LABELS if f"was {label}." in content), LABELS[0])
    return gold if h % 3 else LABELS[h % 4]


def write_dataset(path: Path, n: int = 60) -> str:
    with path.open("w") as handle:
        for i in range(n):
            handle.write(json.dumps({"input": f"Review {i}: the stay was {LABELS[i % 4]}.",
                                     "target": LABELS[i % 4]}) + "\n")
    return str(path)


def env_for(home: Path) -> dict:
    return dict(os.environ, PROMPTGYM_HOME=str(home), PYTHONPATH=str(ROOT / "src"),
                PROMPTGYM_OPENAI_CONCURRENCY="1", OPENAI_API_KEY="sk-fake",
                PROMPTGYM_HEARTBEAT_SECONDS="0.5", PROMPTGYM_LEASE_SECONDS="2")


def optimize_cmd(dataset: str, url: str, budget: int, seed: int) -> list[str]:
    model = f"openai:fake-model@{url}"
    return [sys.executable, "-m", "promptgym.cli", "optimize", "--dataset", dataset, "--method", "ape",
            "--budget", str(budget), "--seed", str(seed), "--train-size", "10", "--test-size", "20",
            "--task-model", model, "--optimizer-model", model, "--json", "--quiet"]


def resume_cmd(run_id: str) -> list[str]:
    return [sys.executable, "-m", "promptgym.cli", "resume", run_id, "--json", "--quiet"]


def integrity(home: Path) -> bool:
    ok = True
    for name in ("runs.sqlite", "cache.sqlite"):
        path = home / name
        if path.exists():
            con = sqlite3.connect(path, timeout=60)
            try:
                ok &= con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            finally:
                con.close()
    return ok


def run_ids(home: Path) -> list[str]:
    path = home / "runs.sqlite"
    if not path.exists():
        return []
    con = sqlite3.connect(path, timeout=60)
    try:
        return [r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY created")]
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


def ledger_uncached_keys(home: Path, run_id: str) -> list[str]:
    con = sqlite3.connect(home / "runs.sqlite", timeout=60)
    try:
        return [r[0] for r in con.execute("SELECT key FROM calls WHERE run_id = ? AND cached = 0", (run_id,))]
    finally:
        con.close()


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def reference(dataset: str, budget: int, seed: int, delay: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAIServer(reply=reply, delay=delay) as server:
        home = Path(tmp) / "home"
        started = time.monotonic()
        proc = subprocess.run(optimize_cmd(dataset, server.base_url, budget, seed), env=env_for(home),
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        summary = last_json(proc.stdout)
        keys = ledger_uncached_keys(home, summary["run_id"])
        return dict(summary=summary, seconds=time.monotonic() - started, requests=len(server.received),
                    distinct_calls=len(set(keys)))


def kill_trial(rng: random.Random, ref: dict, dataset: str, budget: int, seed: int, delay: float,
               rekill: float, max_kills: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAIServer(reply=reply, delay=delay) as server:
        home = Path(tmp) / "home"
        env = env_for(home)
        kills, resumes, checks, checks_ok, refused = 0, 0, 0, 0, 0
        cmd = optimize_cmd(dataset, server.base_url, budget, seed)
        summary = None
        while summary is None:
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if kills < max_kills and (kills == 0 or rng.random() < rekill):
                wait = rng.uniform(0.1, max(ref["seconds"] * 0.6, 0.2))  # the reference's wall time includes startup
                try:
                    proc.wait(timeout=wait)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    kills += 1
                    checks += 1
                    checks_ok += integrity(home)
                    ids = run_ids(home)
                    cmd = resume_cmd(ids[0]) if ids else cmd
                    if ids:
                        resumes += 1
                    continue
            out, err = proc.communicate(timeout=600)
            if proc.returncode != 0:
                if "is being run by pid" in err:
                    refused += 1
                    time.sleep(0.5)
                    continue
                raise RuntimeError(f"run failed: {err.strip()}")
            summary = last_json(out)
        checks += 1
        checks_ok += integrity(home)
        keys = ledger_uncached_keys(home, summary["run_id"])
        mismatched = [k for k in COMPARED if summary.get(k) != ref["summary"].get(k)]
        lost_rows = ref["summary"]["llm_calls"] - summary["llm_calls"]  # calls cached whose ledger row a kill lost
        return dict(kills=kills, resumes=resumes, refused=refused, integrity_checks=checks,
                    integrity_ok=checks_ok, requests=len(server.received),
                    calls_repeated=len(server.received) - ref["requests"],
                    ledger_repeated=len(keys) - len(set(keys)), same_result=not mismatched,
                    same_prompt_and_scores=not set(mismatched) & set(RESULT), ledger_rows_lost=lost_rows,
                    mismatched=mismatched, budget_used=summary["budget_used"])


def writers_trial(dataset: str, budget: int, seed: int, delay: float) -> dict:
    """Two different runs (seeds) on one PROMPTGYM_HOME at the same time."""
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAIServer(reply=reply, delay=delay) as server:
        home = Path(tmp) / "home"
        env = env_for(home)
        procs = [subprocess.Popen(optimize_cmd(dataset, server.base_url, budget, seed + i), env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
        outs = [p.communicate(timeout=600) for p in procs]
        codes = [p.returncode for p in procs]
        locked = sum("database is locked" in err for _, err in outs)
        return dict(runs=2, finished=sum(c == 0 for c in codes), locked_errors=locked,
                    integrity_ok=integrity(home), errors=[err.strip()[-300:] for (_, err), c in zip(outs, codes) if c])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--writers", type=int, default=None, help="concurrent-writer pairs (default: trials // 4, at least 1)")
    parser.add_argument("--budget", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.01, help="server seconds per request")
    parser.add_argument("--rekill", type=float, default=0.5, help="chance of killing a resume again")
    parser.add_argument("--max-kills", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "reliability-kills.json"))
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        dataset = write_dataset(Path(tmp) / "reviews.jsonl")
        ref = reference(dataset, args.budget, args.seed, args.delay)
        trials = [kill_trial(rng, ref, dataset, args.budget, args.seed, args.delay, args.rekill, args.max_kills)
                  for _ in range(args.trials)]
        writers = [writers_trial(dataset, args.budget, args.seed, args.delay)
                   for _ in range(args.writers if args.writers is not None else max(args.trials // 4, 1))]
    totals = dict(
        trials=len(trials), trials_killed=sum(t["kills"] > 0 for t in trials), kills=sum(t["kills"] for t in trials), resumes=sum(t["resumes"] for t in trials),
        refused=sum(t["refused"] for t in trials),
        same_result=sum(t["same_result"] for t in trials),
        same_prompt_and_scores=sum(t["same_prompt_and_scores"] for t in trials),
        ledger_rows_lost=sum(t["ledger_rows_lost"] for t in trials),
        calls_repeated=sum(t["calls_repeated"] for t in trials),
        calls_repeated_max_per_trial=max((t["calls_repeated"] for t in trials), default=0),
        repeats_within_kills=all(0 <= t["calls_repeated"] <= t["kills"] for t in trials),
        ledger_repeated=sum(t["ledger_repeated"] for t in trials),
        over_budget=sum(t["budget_used"] > args.budget for t in trials),
        integrity_checks=sum(t["integrity_checks"] for t in trials),
        integrity_passed=sum(t["integrity_ok"] for t in trials),
        writer_runs=sum(w["runs"] for w in writers), writer_runs_finished=sum(w["finished"] for w in writers),
        writer_locked_errors=sum(w["locked_errors"] for w in writers),
        writer_integrity_passed=sum(w["integrity_ok"] for w in writers), writer_pairs=len(writers))
    result = dict(config=vars(args) | {"method": "ape", "concurrency": 1},
                  reference=dict(requests=ref["requests"], distinct_calls=ref["distinct_calls"],
                                 seconds=round(ref["seconds"], 2),
                                 summary={k: ref["summary"].get(k) for k in COMPARED}),
                  totals=totals, trials=trials, writers=writers)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(totals))
    return result


if __name__ == "__main__":
    main()
