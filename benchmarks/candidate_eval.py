"""Racing a pool of candidates (``candidate_eval``) against scoring it in full: a simulation on the
real pool code (``promptgym.evaluation.arms.score_pool``), no model.

    python benchmarks/candidate_eval.py            # writes results/candidate-eval.{json,md}

The question: a race saves calls on a pool; is the method better off keeping its pool and leaving
the calls (``saved_calls=selection``) or proposing more candidates for the calls full would spend
(``saved_calls=candidates``)? Only a simulation knows each candidate's true accuracy, so it can say
how good the pick is. One trial: a pool of candidates whose true accuracies are the start's plus a
delta drawn from N(DELTA_MEAN, sd), each answering N examples 0/1 (disagreeing with the start on
about 30% of them, as ``selection_defaults.py`` measured on SmolLM2); the pool is scored by
``full``, or raced by ``halving`` or ``rejects`` keeping one; the pick is the top of the ranking.
``sd`` 0.03 is what the recorded methods benchmark gives on SmolLM2 (candidates barely differ);
0.10 stands for a model on which instructions matter. Pools: an OPRO step (8 candidates, 20 and 60
training examples) and APE's proposals (50 on its 20-example subsample; APE keeps 10 there, but the
pick of one is what is compared). ``candidates`` buys the most candidates whose race (and one
generation call each) costs no more than full's pool, as the methods' ``more_candidates`` does.

What this does not say: how a method's next step uses the pick (OPRO's meta-prompt, EvoPrompt's
population), or whether final selection would turn the calls ``selection`` leaves into a better
answer (today it does not spend them: its race has a fixed size).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from promptgym.data.dataset import Example
from promptgym.evaluation.arms import pool_cost, score_pool

RESULTS = Path(__file__).resolve().parent / "results"
P_START, DISAGREE, DELTA_MEAN = 0.43, 0.30, -0.02
POOLS = (("OPRO step", 8, 20), ("OPRO step", 8, 60), ("APE proposals", 50, 20))


def answers(rng: np.random.Generator, start: np.ndarray, delta: float) -> np.ndarray:
    """0/1 answers of a candidate whose accuracy is the start's + delta, disagreeing on ~30%."""
    delta = float(np.clip(delta, -DISAGREE + 0.01, DISAGREE - 0.01))
    lose = (DISAGREE - delta) / 2 / P_START
    gain = (DISAGREE + delta) / 2 / (1 - P_START)
    u = rng.random(len(start))
    return np.where(start == 1, (u >= lose).astype(float), (u < gain).astype(float))


def more(n: int, size: int, strategy: str) -> int:
    """The most candidates a race of ``strategy`` scores (one generation call each) for full's calls on ``n``."""
    m = n
    while m + 1 + pool_cost(strategy, m + 1, size) <= n * (1 + size):
        m += 1
    return m


def trial(rng: np.random.Generator, n: int, size: int, sd: float, strategy: str) -> tuple[float, float, int]:
    """(the pick's true delta, the best true delta in the pool, task calls)."""
    deltas = rng.normal(DELTA_MEAN, sd, size=n)
    start = (rng.random(size) < P_START).astype(float)
    table = np.array([answers(rng, start, d) for d in deltas])
    examples = [Example(str(j), "", ("a",), ("a", "b")) for j in range(size)]
    race = score_pool(list(range(n)), examples, lambda k, batch: [table[k, int(e.id)] for e in batch], strategy,
                      rng=rng)
    return float(deltas[race.ranking()[0]]), float(deltas.max()), race.requested


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows = []
    for sd in (0.03, 0.10):
        for pool, n, size in POOLS:
            for strategy, saved in (("full", "-"), ("halving", "selection"), ("rejects", "selection"),
                                    ("halving", "candidates"), ("rejects", "candidates")):
                count = more(n, size, strategy) if saved == "candidates" else n
                rng = np.random.default_rng([args.seed, int(sd * 100), n, size])  # the same pools for every variant
                got = [trial(rng, count, size, sd, strategy) for _ in range(args.trials)]
                rows.append({"sd": sd, "pool": pool, "n": n, "examples": size, "strategy": strategy,
                             "saved_calls": saved, "candidates": count,
                             "pick_delta": statistics.fmean(g[0] for g in got),
                             "regret": statistics.fmean(g[1] - g[0] for g in got),
                             "calls": statistics.fmean(g[2] + count for g in got), "full_calls": n * (1 + size)})
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "candidate-eval.json").write_text(json.dumps(
        {"argv": sys.argv[1:], "trials": args.trials, "assumptions": {"p_start": P_START, "disagree": DISAGREE,
                                                                     "delta_mean": DELTA_MEAN}, "rows": rows}, indent=1))
    lines = ["| delta sd | pool | candidates x examples | candidate_eval | saved_calls | pick's true delta "
             "| best in its pool minus pick | calls (full's) |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['sd']} | {r['pool']} | {r['candidates']} x {r['examples']} | {r['strategy']} | {r['saved_calls']} "
              f"| {r['pick_delta']:+.4f} | {r['regret']:.4f} | {r['calls']:.0f} ({r['full_calls']}) |" for r in rows]
    (RESULTS / "candidate-eval.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
