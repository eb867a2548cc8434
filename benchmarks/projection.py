"""Issue 15 item 3: how far off is the projection printed before a run? Every method runs on
``example:sentiment`` with the embedded model, once per seed; its projected calls and tokens (search, final
selection, held-out test) are set against what its ledger recorded.

    PROMPTGYM_THREADS=1 python benchmarks/projection.py     # every method, seeds 0 and 1: about 20 minutes
    python benchmarks/projection.py --methods ape opro --seeds 0     # a quicker look

The work directory (``$PROMPTGYM_HOME/bench-projection``: a run store and one response cache per
run, so no method gets another's answers for free) is emptied first, so the first pass starts on a
machine with no past calls: its first method projects no time and completion tokens at their caps,
later methods read the earlier methods' calls. The second pass (seed 1, other splits) is a machine
that has run every method once: each projection reads its own method's past calls (the projection's
rule: "this machine's past calls of these models, of this method first"). Writes
``benchmarks/results/projection.json`` (every run: projection, actual, ratios) and
``benchmarks/results/projection.md`` (the table). Error is (actual - projected) / projected.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from promptgym import api
from promptgym.paths import home
from promptgym.store.runs import SELECT_ROLE, RunStore

RESULTS = Path(__file__).resolve().parent / "results"


def actual_phases(store: RunStore, run_id: str) -> dict[str, dict[str, int]]:
    """What the ledger says each phase spent: uncached language-model calls and their tokens."""
    out = {name: dict(calls=0, prompt_tokens=0, completion_tokens=0, optimizer_calls=0, seconds=0.0)
           for name in ("search", "selection", "heldout")}
    for row in store.call_rows(run_id):
        if row["cached"] or row["kind"] == "embed":
            continue
        name = "selection" if row["role"] == SELECT_ROLE else "search" if row["charged"] else "heldout"
        phase = out[name]
        phase["calls"] += 1
        phase["prompt_tokens"] += row["prompt_tokens"]
        phase["completion_tokens"] += row["completion_tokens"]
        phase["optimizer_calls"] += row["role"] == "optimizer"
        phase["seconds"] += row["seconds"]
    return out


def error(actual: float, projected: float | None) -> float | None:
    if projected is None or projected == 0:
        return None
    return round((actual - projected) / projected, 3)


def run_one(method: str, seed: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    started = time.perf_counter()
    store_url = f"sqlite:///{workdir / 'runs.sqlite'}"
    result = api.optimize("example:sentiment", method=method, budget=args.budget, seed=seed,
                          train_size=args.train_size, test_size=args.test_size, quiet=True, store_url=store_url,
                          cache_url=f"sqlite:///{workdir / f'cache-{method}-{args.budget}-{seed}.sqlite'}")
    wall = time.perf_counter() - started
    summary = result.summary
    projection = summary.projection or {}
    actual = actual_phases(RunStore(store_url), summary.run_id)
    row: dict[str, Any] = dict(method=method, seed=seed, run_id=summary.run_id, projection=projection, actual=actual,
                               wall_seconds=round(wall, 1), stopped_by=summary.stats.get("stopped_by"),
                               steps=summary.stats.get("steps"))
    for phase in ("search", "selection", "heldout"):
        row[f"{phase}_calls_error"] = error(actual[phase]["calls"], projection[phase]["calls"])
    total_actual = sum(actual[p]["calls"] for p in actual)
    tokens = {k: sum(actual[p][k] for p in actual) for k in ("prompt_tokens", "completion_tokens")}
    row.update(calls_error=error(total_actual, projection["calls"]),
               prompt_tokens_error=error(tokens["prompt_tokens"], projection["prompt_tokens"]),
               completion_tokens_error=error(tokens["completion_tokens"], projection["completion_tokens"]),
               seconds_error=error(summary.seconds, projection["seconds"]),
               actual_calls=total_actual, actual_tokens=tokens, seconds=summary.seconds)
    return row


def pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.0%}"


def table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Projection error (issue 15, item 3)",
        "",
        f"{meta['date']}, {meta['host_cpus']} CPUs (shared), embedded model (SmolLM2-135M) as task and optimizer "
        f"model, `example:sentiment`, budget {meta['budget']}, train {meta['train_size']}, test "
        f"{meta['test_size']}, dev chosen by the runner, seeds {meta['seeds']}, PROMPTGYM_THREADS="
        f"{meta['threads']}. Command: `{meta['command']}`.",
        "",
        "Calls are uncached language-model calls from each run's ledger; projected / actual. Error is "
        "(actual - projected) / projected. Search: the method's plan (rehearsed), scaled by what past runs "
        "of the method here spent of theirs when there are some (the second pass); \"earliest\": the "
        "plan's end if the score stops improving at once. Selection: its reserve (the most it may spend), "
        "scaled likewise.",
        "",
        "| seed | method | search calls | selection calls | held-out calls | all calls (error) | prompt tokens (error) "
        "| completion tokens (error) | seconds (error) | steps, ended by |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p, a = r["projection"], r["actual"]
        secs = "-" if p["seconds"] is None else f"{p['seconds']:.0f} / {r['seconds']:.0f} ({pct(r['seconds_error'])})"
        plan = p["search_plan"]["calls"]
        least = f", earliest {p['search_least']['calls']}" if p.get("search_least") else ""
        plan_note = f" (plan {plan}{least})" if p.get("calibration") or least else ""
        reserve = f" (reserve {p['reserve']['calls']})" if p["reserve"]["calls"] != p["selection"]["calls"] else ""
        lines.append(
            f"| {r['seed']} | {r['method']} | {p['search']['calls']}{plan_note} / {a['search']['calls']} | "
            f"{p['selection']['calls']}{reserve} / "
            f"{a['selection']['calls']} | {p['heldout']['calls']} / {a['heldout']['calls']} | {p['calls']} / "
            f"{r['actual_calls']} ({pct(r['calls_error'])}) | {p['prompt_tokens']} / {r['actual_tokens']['prompt_tokens']} "
            f"({pct(r['prompt_tokens_error'])}) | {p['completion_tokens']} / {r['actual_tokens']['completion_tokens']} "
            f"({pct(r['completion_tokens_error'])}) | {secs} | {r['steps']}, {r['stopped_by']} |")
    lines += ["", "Mean absolute error per pass (runs with a projection of that column):", "",
              "| seed | search calls | all calls | prompt tokens | completion tokens | seconds |", "|---|---|---|---|---|---|"]
    for seed in meta["seeds"]:
        mine = [r for r in rows if r["seed"] == seed]
        cells = [mean_abs([r[key] for r in mine]) for key in
                 ("search_calls_error", "calls_error", "prompt_tokens_error", "completion_tokens_error", "seconds_error")]
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def mean_abs(errors: list[float | None]) -> str:
    known = [abs(e) for e in errors if e is not None]
    return f"{sum(known) / len(known):.0%} (n={len(known)})" if known else "-"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="*", default=None, help="default: every registered method")
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--train-size", type=int, default=15)
    parser.add_argument("--test-size", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                        help="one pass over the methods per seed, in order (the first on an empty store)")
    parser.add_argument("--out", default=str(RESULTS / "projection"), help="path without suffix (.json, .md)")
    args = parser.parse_args(argv)
    methods = args.methods or sorted(api.methods())
    workdir = home() / "bench-projection"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    rows = []
    for seed, method in ((seed, method) for seed in args.seeds for method in methods):
        row = run_one(method, seed, args, workdir)
        rows.append(row)
        print(f"seed {seed} {method}: calls {row['projection']['calls']} projected, {row['actual_calls']} actual "
              f"({pct(row['calls_error'])}); {row['wall_seconds']} s", file=sys.stderr, flush=True)
    meta = dict(date=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), host_cpus=os.cpu_count(),
                platform=platform.platform(), budget=args.budget, train_size=args.train_size,
                test_size=args.test_size, seeds=args.seeds, threads=os.environ.get("PROMPTGYM_THREADS", "default"),
                command="python benchmarks/projection.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(dict(meta=meta, runs=rows), indent=2) + "\n")
    out.with_suffix(".md").write_text(table(rows, meta))
    print(table(rows, meta))


if __name__ == "__main__":
    main()
