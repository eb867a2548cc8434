"""Issue 3 acceptance: APE vs the starting prompt and two hand-written instructions, held out.

    python benchmarks/ape_multiemo.py [--budget 600] [--seed 0] [--out benchmarks/results/ape_multiemo.json]

Embedded model as task and optimizer model; example:sentiment (a 400-row sample of multiemo, shipped in the
package; the recorded result used the whole bigbench:multiemo/all_sentence_en), train 30, test 100.
The hand-written instructions are scored on the same test split with the same layout and scoring,
so every row is comparable. Also checks that a warm re-run makes 0 model calls.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

from promptgym import api
from promptgym.data import load_dataset, split_dataset
from promptgym.evaluation import Budget, Evaluator, ResponseCache
from promptgym.models import make_backend
from promptgym.paths import default_cache_url
from promptgym.tasks import ChoiceTask, Prompt

HAND_WRITTEN = [
    "Classify the sentiment of the review sentence as positive, negative, neutral or ambivalent.",
    "Is the opinion in this sentence positive, negative, neutral, or ambivalent (mixed)? Answer with one word.",
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="example:sentiment")
    ap.add_argument("--budget", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-size", type=int, default=30)
    ap.add_argument("--test-size", type=int, default=100)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ape_multiemo.json"))
    args = ap.parse_args()

    started = time.perf_counter()
    result = api.optimize(args.dataset, method="ape", budget=args.budget, seed=args.seed,
                          train_size=args.train_size, test_size=args.test_size)
    ape_seconds = time.perf_counter() - started
    s = result.summary

    dataset = load_dataset(args.dataset)
    splits = split_dataset(dataset, args.train_size, args.test_size, seed=args.seed)
    backend = make_backend("embedded")
    evaluator = Evaluator(backend, backend, ResponseCache(default_cache_url()), Budget(None))
    task = ChoiceTask()
    rows = [dict(prompt="starting (task's own)", instruction=s["initial_prompt"], train=s["initial_score"],
                 test=s["test_initial"]),
            dict(prompt="APE best", instruction=s["best_prompt"], train=s["best_score"], test=s["test_best"])]
    for i, text in enumerate(HAND_WRITTEN, 1):
        prompt = Prompt(text)
        rows.append(dict(prompt=f"hand-written {i}", instruction=text,
                         train=evaluator.run_task(task, prompt, splits.train).mean,
                         test=evaluator.run_task(task, prompt, splits.test).mean))

    warm = api.optimize(args.dataset, method="ape", budget=args.budget, seed=args.seed,
                        train_size=args.train_size, test_size=args.test_size).summary
    out = dict(
        benchmark="ape_multiemo", date=dt.datetime.now().isoformat(timespec="seconds"),
        machine=dict(cpus=os.cpu_count(), python=platform.python_version()), args=vars(args),
        rows=rows, ape_run=s["run_id"], ape_calls=s["llm_calls"], ape_budget_used=s["budget_used"],
        ape_cached_calls=s["cached_calls"], ape_seconds=round(ape_seconds, 1),
        ape_stats=s["stats"], candidates=s["candidates"],
        warm_rerun=dict(run_id=warm["run_id"], llm_calls=warm["llm_calls"], cached_calls=warm["cached_calls"],
                        same_best=warm["best_prompt"] == s["best_prompt"]),
        ape_beats_start_on_test=s["test_best"] > s["test_initial"],
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"{'prompt':24s} {'train':>6s} {'test':>6s}  instruction")
    for r in rows:
        print(f"{r['prompt']:24s} {r['train']:6.3f} {r['test']:6.3f}  {r['instruction']}")
    print(f"APE: {s['llm_calls']} model calls ({s['budget_used']} of budget {args.budget}), {ape_seconds:.0f} s; "
          f"warm re-run: {warm['llm_calls']} model calls, {warm['cached_calls']} cached")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
