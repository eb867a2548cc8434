"""Per-example test scores of a finished promptgym run, in the test file's order: the start's and the
returned prompt's, read from the run store, so promptgym's rows can be
pooled over seeds and paired with a peer's on the same test examples like the peers' own rows.

Runs in promptgym's environment (run.py calls it with promptgym's python):
    python promptgym_scores.py --store sqlite:///STORE.sqlite --run-id ID --test-size 150
Prints one JSON object: {"test_start": [0/1...], "test_final": [...]}.
"""

from __future__ import annotations

import argparse
import json

from promptgym.store.runs import RunStore


def heldout_scores(store: RunStore, run_id: str, n_test: int) -> dict[str, list[float]]:
    """The start's and the returned prompt's ``test`` score rows, as lists over ``test-0`` ... (the
    ids a test file's rows get, in order)."""
    run = store.get_run(run_id)
    initial = next(c["candidate_id"] for c in store.candidates(run_id) if c["operation"] == "initial")
    by_candidate: dict[str, list[float]] = {}
    for row in store.scores(run_id):
        if row["split"] == "test" and row["candidate_id"] not in by_candidate:
            per = row["per_example"]
            by_candidate[row["candidate_id"]] = [per[f"test-{i}"] for i in range(n_test)]
    return {"test_start": by_candidate[initial], "test_final": by_candidate[run["best_candidate"]]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--run-id", required=True)
    ap.add_argument("--test-size", type=int, required=True)
    args = ap.parse_args()
    print(json.dumps(heldout_scores(RunStore(args.store), args.run_id, args.test_size)))


if __name__ == "__main__":
    main()
