"""How final selection's defaults (dev size, level, k) were chosen: a simulation on the real
selection code, with candidate quality drawn from the recorded methods benchmark.

    python benchmarks/selection_defaults.py            # writes results/selection-defaults.{json,md}

Why a simulation: the question is how often selection hands back a prompt that is truly worse
than the start, and only a simulation knows the truth. What it takes from measurement: in
benchmarks/results/methods.json the 42 runs' test deltas (best prompt minus start, 60 test
examples) have mean -0.010 and sd 0.056, about the sd that sampling noise alone gives a paired
difference on 60 examples, so the candidates' true deltas are drawn from N(-0.02, 0.03); the start
is right on 43% of examples (multiemo, SmolLM2) and two prompts disagree on 30% of them. Scenario
"one good": one of the k candidates is truly +0.08 (what a hand-written instruction gains on
Gemma 3 270M), to measure whether a real gain survives. Scores are scripted 0/1 answers drawn per
example from those rates and raced by ``promptgym.evaluation.selection.race``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from promptgym.data.dataset import Example
from promptgym.evaluation.selection import race
from promptgym.tasks.prompt import Prompt

RESULTS = Path(__file__).resolve().parent / "results"
P_START, DISAGREE, DELTA_MEAN, DELTA_SD, GOOD = 0.43, 0.30, -0.02, 0.03, 0.08


def answers(rng: np.random.Generator, start: np.ndarray, delta: float) -> np.ndarray:
    """0/1 answers of a candidate whose accuracy is the start's + delta, disagreeing on ~30%."""
    delta = float(np.clip(delta, -DISAGREE + 0.01, DISAGREE - 0.01))
    lose = (DISAGREE - delta) / 2 / P_START  # P(candidate wrong | start right)
    gain = (DISAGREE + delta) / 2 / (1 - P_START)  # P(candidate right | start wrong)
    u = rng.random(len(start))
    return np.where(start == 1, (u >= lose).astype(float), (u < gain).astype(float))


def trial(rng: np.random.Generator, n_dev: int, k: int, level: float, good: bool) -> tuple[float, bool, int]:
    deltas = rng.normal(DELTA_MEAN, DELTA_SD, size=k)
    if good:
        deltas[rng.integers(k)] = GOOD
    start = (rng.random(n_dev) < P_START).astype(float)
    table = {"start": start, **{f"c{i}": answers(rng, start, d) for i, d in enumerate(deltas)}}
    calls = [0]

    def score(prompt: Prompt, examples):
        calls[0] += len(examples)
        return [float(table[prompt.instruction][int(e.id)]) for e in examples]

    dev = [Example(str(i), "", ("a",), ("a", "b")) for i in range(n_dev)]
    sel = race(Prompt("start"), [Prompt(f"c{i}") for i in range(k)], dev, score, level=level)
    true = 0.0 if sel.kept_start else float(deltas[int(sel.chosen.instruction[1:])])
    return true, sel.kept_start, calls[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = []
    for scenario in ("typical", "one good"):
        for n_dev in (30, 50, 100):
            for k in (1, 3, 5):
                for level in (0.05, 0.1, 0.2):
                    got = [trial(rng, n_dev, k, level, scenario == "one good") for _ in range(args.trials)]
                    gains = [g for g, _, _ in got]
                    rows.append({"scenario": scenario, "dev": n_dev, "k": k, "level": level,
                                 "worse_rate": sum(g < 0 for g in gains) / len(gains),
                                 "mean_gain": statistics.fmean(gains),
                                 "kept_start_rate": sum(kept for _, kept, _ in got) / len(got),
                                 "mean_calls": statistics.fmean(c for _, _, c in got),
                                 "full_calls": (k + 1) * n_dev})
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "selection-defaults.json").write_text(json.dumps(
        {"argv": sys.argv[1:], "assumptions": {"p_start": P_START, "disagree": DISAGREE, "delta_mean": DELTA_MEAN,
                                               "delta_sd": DELTA_SD, "good": GOOD}, "rows": rows}, indent=1))
    lines = ["| scenario | dev | k | level | returns a worse prompt | mean true gain | kept start | calls (of full) |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['scenario']} | {r['dev']} | {r['k']} | {r['level']} | {r['worse_rate']:.3f} | {r['mean_gain']:+.4f} "
              f"| {r['kept_start_rate']:.2f} | {r['mean_calls']:.0f} ({r['full_calls']}) |" for r in rows]
    (RESULTS / "selection-defaults.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
