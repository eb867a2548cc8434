"""Sequential final selection against the fixed race at the same reserve: a simulation on the real
racing code (``promptgym.evaluation.selection.race`` and ``race_sequential``).

    python benchmarks/selection_sequential.py     # writes results/selection-sequential.{json,md}

The candidates' answers are drawn as in ``selection_defaults.py`` (the start right on 43% of
examples, two prompts disagreeing on 30%, true deltas N(-0.02, 0.03) in scenario "typical"), plus
scenarios where every finalist is exactly as good as the start ("none better") and where one of the
k finalists is truly +0.10, +0.15 or +0.25 better. Both races get the reserve the runner's plan sets
aside, (k + 1) x dev; the fixed one races on dev, the sequential one on a pool of every example in
neither train nor test (``pool``), drawn while it is undecided. "worse" counts returned prompts
whose true delta is at most 0 (so, with none better, any replacement); "found" those that are the
one good finalist.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
from selection_defaults import DELTA_MEAN, DELTA_SD, DISAGREE, P_START, answers

from promptgym.data.dataset import Example
from promptgym.evaluation.selection import race, race_sequential
from promptgym.tasks.prompt import Prompt

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = {"none better": None, "typical": None, "one +0.10": 0.10, "one +0.15": 0.15, "one +0.25": 0.25}
SETTINGS = ({"dev": 50, "k": 3, "pool": 170}, {"dev": 50, "k": 1, "pool": 170}, {"dev": 100, "k": 3, "pool": 470})
LEVEL = 0.1


def deltas(rng: np.random.Generator, scenario: str, k: int) -> np.ndarray:
    if scenario == "none better":
        return np.zeros(k)
    out = rng.normal(DELTA_MEAN, DELTA_SD, size=k)
    if SCENARIOS[scenario] is not None:
        out[rng.integers(k)] = SCENARIOS[scenario]
    return out


def trial(rng: np.random.Generator, scenario: str, dev: int, k: int, pool: int) -> dict:
    true = deltas(rng, scenario, k)
    start = (rng.random(pool) < P_START).astype(float)
    table = {"start": start, **{f"c{i}": answers(rng, start, d) for i, d in enumerate(true)}}
    examples = [Example(str(i), "", ("a",), ("a", "b")) for i in range(pool)]
    finalists = [Prompt(f"c{i}") for i in range(k)]
    out = {}
    for mode in ("fixed", "sequential"):
        calls: list[int] = []

        def score(prompt: Prompt, chunk, calls: list[int] = calls):
            calls.append(len(chunk))
            return [float(table[prompt.instruction][int(e.id)]) for e in chunk]

        sel = (race(Prompt("start"), finalists, examples[:dev], score, level=LEVEL) if mode == "fixed" else
               race_sequential(Prompt("start"), finalists, examples, score, reserve=(k + 1) * dev, level=LEVEL))
        picked = None if sel.kept_start else int(sel.chosen.instruction[1:])
        course = sel.sequential or {}
        out[mode] = dict(delta=0.0 if picked is None else float(true[picked]), replaced=picked is not None,
                         found=picked is not None and SCENARIOS[scenario] is not None and true[picked] == SCENARIOS[scenario],
                         calls=sum(calls), dev_n=sel.dev_size, stop=course.get("stop"),
                         decided_dev_n=course.get("decided_dev_n"))
    return out


def summarise(got: list[dict], mode: str) -> dict:
    rows = [g[mode] for g in got]
    decided = [r["decided_dev_n"] for r in rows if r["decided_dev_n"]]
    stops = {s: sum(r["stop"] == s for r in rows) / len(rows) for s in ("decided", "futility", "reserve", "pool")}
    return {"worse_rate": sum(r["replaced"] and r["delta"] <= 0 for r in rows) / len(rows),
            "found_rate": sum(r["found"] for r in rows) / len(rows),
            "mean_gain": statistics.fmean(r["delta"] for r in rows),
            "mean_calls": statistics.fmean(r["calls"] for r in rows),
            "mean_dev_n": statistics.fmean(r["dev_n"] for r in rows),
            "median_decided_dev_n": statistics.median(decided) if decided else None,
            **({"stops": stops} if mode == "sequential" else {})}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = []
    for setting in SETTINGS:
        for scenario in SCENARIOS:
            got = [trial(rng, scenario, **setting) for _ in range(args.trials)]
            for mode in ("fixed", "sequential"):
                rows.append({"scenario": scenario, **setting, "reserve": (setting["k"] + 1) * setting["dev"],
                             "mode": mode, **summarise(got, mode)})
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "selection-sequential.json").write_text(json.dumps(
        {"argv": sys.argv[1:], "trials": args.trials, "level": LEVEL,
         "assumptions": {"p_start": P_START, "disagree": DISAGREE, "delta_mean": DELTA_MEAN, "delta_sd": DELTA_SD},
         "rows": rows}, indent=1))
    header = ("| scenario | dev / pool | reserve | race | returns a prompt no better | finds the good one | mean true gain "
              "| calls | dev examples | median dev at decision | stops (decided / futility / reserve / pool) |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        stops = " / ".join(f"{v:.2f}" for v in r["stops"].values()) if "stops" in r else "-"
        lines.append(f"| {r['scenario']} | {r['dev']} / {r['pool']} | {r['reserve']} | {r['mode']} | {r['worse_rate']:.3f} "
                     f"| {r['found_rate']:.2f} | {r['mean_gain']:+.4f} | {r['mean_calls']:.0f} | {r['mean_dev_n']:.0f} "
                     f"| {r['median_decided_dev_n'] if r['median_decided_dev_n'] is not None else '-'} | {stops} |")
    (RESULTS / "selection-sequential.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
