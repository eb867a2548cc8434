"""Issue 13 (items 1 and 3): an optimization through 30% injected faults, and the hard budget with
64 requests in flight, over real loopback HTTP against the fake OpenAI server of the tests.

    python benchmarks/reliability_faults.py [--rate 0.3] [--seeds 0 1 2] [--out benchmarks/results/reliability-faults.json]

No language model: the fake server's answers are a deterministic function of the request (the tests'
``reply``), so a run through faults must end exactly as the fault-free run. For each seed: APE,
budget 80, train 6 / dev 4 / test 4 on 16 reviews, task and optimizer model over HTTP; the faults
the server injected (by kind) against the ledger's count, calls given up, and the outcome compared.
Then the budget: for each N, one Evaluator with a budget of N sends batches of up to 120 requests
with up to 64 in flight; the server counts what reached it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from fake_openai_server import KINDS, FakeOpenAIServer, Faults  # noqa: E402
from test_faults import outcome, reply, run_optimization  # noqa: E402

from promptgym.errors import BudgetExhausted  # noqa: E402
from promptgym.evaluation import Budget, Evaluator, ResponseCache  # noqa: E402
from promptgym.models.base import GenerationRequest  # noqa: E402
from promptgym.models.openai_backend import OpenAIBackend  # noqa: E402
from promptgym.store.runs import RunStore  # noqa: E402

HTTP_KINDS = tuple(k for k in KINDS if k != "no_logprobs")


def fault_runs(rate: float, seeds: list[int], tmp: Path) -> dict:
    os.environ.update(PROMPTGYM_OPENAI_TIMEOUT="2.0", PROMPTGYM_OPENAI_RETRIES="4", PROMPTGYM_OPENAI_CONCURRENCY="8")
    rows = []
    for seed in seeds:
        with FakeOpenAIServer(reply=reply) as clean:
            started = time.perf_counter()
            expected = run_optimization(tmp, f"clean-{seed}", clean, seed=seed)
            clean_seconds = time.perf_counter() - started
            clean_requests = len(clean.received)
        with FakeOpenAIServer(reply=reply, faults=Faults(rate=rate, seed=100 + seed, kinds=HTTP_KINDS)) as faulty:
            started = time.perf_counter()
            got = run_optimization(tmp, f"faulty-{seed}", faulty, seed=seed)
            seconds = time.perf_counter() - started
            injected = dict(sorted(faulty.injected.items()))
            requests = len(faulty.received)
        ledger = RunStore(f"sqlite:///{tmp / f'faulty-{seed}'}-runs.db").fault_counts(got.run_id)
        failed = ledger.pop("failed", 0)
        rows.append(dict(seed=seed, requests=requests, clean_requests=clean_requests,
                         injected=injected, injected_total=sum(injected.values()),
                         ledger=ledger, retried=sum(ledger.values()), recorded_failed=failed,
                         every_fault_counted=ledger == injected,
                         equal_to_fault_free=outcome(got) == outcome(expected),
                         best_prompt=got.summary["best_prompt"], best_score=got.summary["best_score"],
                         seconds=round(seconds, 1), clean_seconds=round(clean_seconds, 1)))
        print(json.dumps(rows[-1]), file=sys.stderr)
    total = Counter()
    for row in rows:
        total.update(row["injected"])
    return dict(rate=rate, runs=rows, injected_by_kind=dict(sorted(total.items())),
                injected_total=sum(total.values()), retried_total=sum(r["retried"] for r in rows),
                recorded_failed_total=sum(r["recorded_failed"] for r in rows),
                all_equal_to_fault_free=all(r["equal_to_fault_free"] for r in rows),
                all_faults_counted=all(r["every_fault_counted"] for r in rows))


def budget_property(limits: list[int], tmp: Path) -> dict:
    rng = random.Random(0)
    cases = []
    with FakeOpenAIServer(reply=reply, delay=0.1) as server:  # slow enough for 64 to be in flight
        for n in limits:
            backend = OpenAIBackend("fake-model", base_url=server.base_url, max_concurrency=64)
            ev = Evaluator(backend, backend, ResponseCache(f"sqlite:///{tmp}/budget-{n}.db"), Budget(n))
            batches = [rng.randint(1, 120) for _ in range(rng.randint(1, 3))]
            before = len(server.received)
            for b, size in enumerate(batches):
                try:
                    ev.generate([GenerationRequest(messages=(("user", f"{n}-{b}-{i}"),)) for i in range(size)])
                except BudgetExhausted:
                    pass
            reached = len(server.received) - before
            cases.append(dict(budget=n, asked=sum(batches), reached=reached, over=max(0, reached - n)))
        in_flight = server.max_in_flight
    return dict(concurrency=64, max_in_flight_seen=in_flight, cases=len(cases),
                calls_over_budget=sum(c["over"] for c in cases),
                exact=all(c["reached"] == min(c["budget"], c["asked"]) for c in cases), detail=cases)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "reliability-faults.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        faults = fault_runs(args.rate, args.seeds, Path(tmp))
        budget = budget_property([0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 64, 89, 100, 150], Path(tmp))
    result = dict(date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                  machine=f"{platform.system()} {platform.machine()}, {os.cpu_count()} cpu",
                  python=platform.python_version(), faults=faults, budget=budget,
                  seconds=round(time.perf_counter() - started, 1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in faults.items() if k != "runs"}))
    print(json.dumps({k: v for k, v in budget.items() if k != "detail"}))


if __name__ == "__main__":
    main()
