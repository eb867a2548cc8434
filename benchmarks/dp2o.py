"""DP2O acceptance benchmark (promptgym issue 4): five test accuracies, encoder comparison, reward
ablation, SUE vs dev-accuracy rank correlation, model calls and wall time per stage.

One command::

    python benchmarks/dp2o.py                      # the full experiment (writes results/dp2o.json)
    python benchmarks/dp2o.py --seeds 0 --train 6 --dev 4 --test 4 --tiny --out /tmp/dp2o.json  # smoke

For each seed (the same seed fixes the data split and the method's randomness):

1. ``main``: DP2O with the task model's embeddings as encoder (the default),
   ``dev_all_candidates=True`` so that every screened candidate is also scored on dev (the SUE check
   over the whole candidate pool, not only the kept h). Its summary gives the five test accuracies
   (starting prompt, best single pool prompt by dev, nearest pool prompt by embedding cosine, policy
   greedy, policy top-k ensemble), pool sizes, h, model calls and seconds per stage.
2. ``tfidf``: the same run with the TF-IDF encoder. Stage A and the probability tables are
   identical requests, so they replay from the response cache; only the policy and the test
   inference differ. This is the embedding-vs-lexical comparison.
3. Reward ablation (``--ablations``): the entropy term of the reward with weight 0 and -6.5 (a
   confidence bonus) instead of +6.5 (the released code's sign), again replaying Stage A.

Everything goes through the public API (``promptgym.api.optimize``), so every run is also in the
run store (``promptgym show RUN_ID``) and its policy can be used with ``promptgym predict``.
The response cache is the user's (``PROMPTGYM_HOME``); a re-run of the benchmark is nearly free.

Decisions: no test number is used for any choice (the policy and the best single prompt are chosen
on dev inside each run). Means and sample standard deviations are over seeds. Wall times are
per run as measured by the run itself (stage split from the DP2O report); replayed runs are much
faster than the first one and are reported separately, not averaged with it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "dp2o.json"
DATASET = "example:sentiment"
VARIANTS = ("initial", "best_single", "similarity", "policy_greedy", "policy_ensemble")
TINY = {"seeds": 3, "rounds": 1, "pool_size": 3, "seed_candidates": 3, "sue_examples": 4,
        "episodes": 30, "hidden": 32, "top_k": 2, "max_tokens": 160}


def _run(label: str, seed: int, args: argparse.Namespace, params: dict[str, Any]) -> dict[str, Any]:
    from promptgym import api

    started = time.perf_counter()
    result = api.optimize(args.dataset, method="dp2o", budget=args.budget, seed=seed, train_size=args.train,
                          dev_size=args.dev, test_size=args.test, task_model=args.model,
                          optimizer_model=args.model, params=params, quiet=not args.verbose)
    wall = time.perf_counter() - started
    s = result.summary
    stats = s["stats"].get("dp2o", {})
    report = s.get("dp2o", {})
    row = {
        "variant": label, "seed": seed, "run_id": s["run_id"], "params": params,
        "test_accuracy": report.get("test_accuracy"), "dev_accuracy": report.get("dev_accuracy"),
        "pool_before_screening": report.get("pool_before_screening"),
        "pool_after_screening": report.get("pool_after_screening"), "h": report.get("h"),
        "sue_dev_spearman": stats.get("sue_dev_spearman"), "plan": stats.get("plan"),
        "dialogue": stats.get("dialogue"), "seeds": stats.get("seeds"),
        "policy": {k: v for k, v in (stats.get("policy") or {}).items() if k != "curve_every_10"},
        "encoder": stats.get("encoder"), "calls_by_stage": report.get("calls"),
        "seconds_by_stage": report.get("seconds"), "wall_seconds": round(wall, 2),
        "llm_calls": s["llm_calls"], "cached_calls": s["cached_calls"], "budget_used": s["budget_used"],
        "completed": report.get("completed", False), "budget_exhausted": s["stats"].get("budget_exhausted", False),
    }
    acc = row["test_accuracy"] or {}
    print(f"  seed {seed} {label:<14} " + " ".join(f"{k}={acc.get(k, float('nan')):.3f}" for k in VARIANTS)
          + f"  ({wall:.0f}s, {s['llm_calls']} calls)", flush=True)
    return row


def _aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == label and r["test_accuracy"]]
        entry: dict[str, Any] = {"runs": len(mine)}
        for key in VARIANTS:
            values = [r["test_accuracy"][key] for r in mine]
            if values:
                entry[key] = {"mean": round(statistics.fmean(values), 4),
                              "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
                              "per_seed": values}
        rhos = {}
        for scope in ("pool", "all_screened"):
            values = [r["sue_dev_spearman"][scope]["sue"] for r in mine
                      if r.get("sue_dev_spearman") and scope in r["sue_dev_spearman"]
                      and r["sue_dev_spearman"][scope]["sue"] is not None]
            if values:
                rhos[scope] = {"mean": round(statistics.fmean(values), 4), "per_seed": values}
        entry["sue_dev_spearman"] = rhos
        entry["wall_seconds"] = [r["wall_seconds"] for r in mine]
        out[label] = entry
    return out


def _params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default=DATASET)
    parser.add_argument("--model", default="embedded", help="task and optimizer model")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train", type=int, default=32)
    parser.add_argument("--dev", type=int, default=32)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--budget", type=int, default=None, help="search call budget per run (default: none)")
    parser.add_argument("--param", action="append", default=[], help="extra DP2O parameter KEY=VALUE")
    parser.add_argument("--no-ablations", dest="ablations", action="store_false",
                        help="skip the reward-entropy ablation runs")
    parser.add_argument("--no-tfidf", dest="tfidf", action="store_false", help="skip the TF-IDF encoder runs")
    parser.add_argument("--tiny", action="store_true", help="tiny DP2O settings, for a smoke test only")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    base = {"encoder": "model", "dev_all_candidates": True, **(TINY if args.tiny else {}), **_params(args.param)}
    plan = [("main", base)]
    if args.tfidf:
        plan.append(("tfidf", {**base, "encoder": "tfidf"}))
    if args.ablations:
        plan.append(("entropy_0", {**base, "reward_entropy": 0.0}))
        plan.append(("entropy_neg", {**base, "reward_entropy": -6.5}))
    started = time.perf_counter()
    rows = []
    for seed in args.seeds:
        for label, params in plan:
            rows.append(_run(label, seed, args, params))
    result = {
        "benchmark": "dp2o", "date": dt.datetime.now().isoformat(timespec="seconds"),
        "dataset": args.dataset, "model": args.model, "seeds": args.seeds,
        "sizes": {"train": args.train, "dev": args.dev, "test": args.test}, "budget": args.budget,
        "tiny": args.tiny, "machine": {"cpus": os.cpu_count(), "load_average": list(os.getloadavg()),
                                        "python": platform.python_version(),
                                        "llama_cpp_python": importlib.metadata.version("llama_cpp_python")},
        "total_seconds": round(time.perf_counter() - started, 1),
        "summary": _aggregate(rows), "runs": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"\n{'variant':<14}" + "".join(f"{k:>17}" for k in VARIANTS) + "   SUE~dev rho (all screened)")
    for label, entry in result["summary"].items():
        cells = "".join(f"{entry[k]['mean']:>10.3f}±{entry[k]['std']:<6.3f}" if k in entry else f"{'-':>17}"
                        for k in VARIANTS)
        rho = entry["sue_dev_spearman"].get("all_screened", entry["sue_dev_spearman"].get("pool", {}))
        print(f"{label:<14}{cells}   {rho.get('mean', float('nan')):.3f}")
    print(f"\nwrote {args.out} ({result['total_seconds']:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
