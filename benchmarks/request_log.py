"""Same requests, same results: a behaviour check for refactors of the optimizer core.

    python benchmarks/request_log.py --out results/request-log-before.json     # on the old code
    python benchmarks/request_log.py --out results/request-log-after.json      # on the new code
    python benchmarks/request_log.py --compare results/request-log-before.json results/request-log-after.json

Runs a few method/seed cells of the methods benchmark (small budget, embedded model, fresh store
and cache per cell) and writes, per cell, the ordered list of request keys the run sent (the key is
a hash of the whole request, so equal lists mean byte-equal requests in the same order) and its
summary. ``--compare`` says cell by cell whether the request logs and the results are identical.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from promptgym import api

RESULTS = Path(__file__).resolve().parent / "results"
CELLS = [("opro", 0), ("protegi", 1), ("gpo", 2), ("evoprompt-ga", 0)]
RESULT_FIELDS = ("best_prompt", "initial_score", "best_score", "test_initial", "test_best", "budget_used", "llm_calls")


def run_cell(dataset: str, method: str, seed: int, budget: int, train: int, test: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as home:
        store = f"sqlite:///{home}/runs.sqlite"
        started = time.perf_counter()
        result = api.optimize(dataset, method=method, budget=budget, seed=seed, train_size=train,
                              test_size=test, store_url=store, cache_url=f"sqlite:///{home}/cache.sqlite")
        seconds = time.perf_counter() - started
        with create_engine(store).connect() as con:
            rows = con.execute(text("SELECT key, role, kind, cached FROM calls ORDER BY id")).fetchall()
    return {"dataset": dataset, "method": method, "seed": seed, "seconds": round(seconds, 1),
            "requests": [f"{r.role}:{r.kind}:{r.key}" for r in rows if not r.cached],
            "result": {k: result[k] for k in RESULT_FIELDS}}


def compare(before: Path, after: Path) -> int:
    old = {(c["method"], c["seed"]): c for c in json.loads(before.read_text())["cells"]}
    new = {(c["method"], c["seed"]): c for c in json.loads(after.read_text())["cells"]}
    differ = 0
    for key in old:
        if key not in new:
            print(f"{key[0]} seed {key[1]}: missing after")
            differ += 1
            continue
        same_log = old[key]["requests"] == new[key]["requests"]
        same_result = old[key]["result"] == new[key]["result"]
        differ += not (same_log and same_result)
        print(f"{key[0]} seed {key[1]}: {len(old[key]['requests'])} requests, "
              f"request log {'identical' if same_log else 'DIFFERS'}, result {'identical' if same_result else 'DIFFERS'}")
    return 1 if differ else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="results file (relative paths are under benchmarks/)")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    parser.add_argument("--dataset", default="example:sentiment")
    parser.add_argument("--budget", type=int, default=60)
    parser.add_argument("--train-size", type=int, default=20)
    parser.add_argument("--test-size", type=int, default=30)
    args = parser.parse_args()
    here = Path(__file__).resolve().parent
    if args.compare:
        return compare(*(p if p.is_absolute() else here / p for p in args.compare))
    if not args.out:
        parser.error("give --out FILE or --compare BEFORE AFTER")
    cells = []
    for method, seed in CELLS:
        cells.append(run_cell(args.dataset, method, seed, args.budget, args.train_size, args.test_size))
        print(f"{method} seed {seed}: {len(cells[-1]['requests'])} requests, {cells[-1]['seconds']} s", flush=True)
    out = args.out if args.out.is_absolute() else here / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"argv": sys.argv[1:], "cells": cells}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
