"""Which statistic should final selection test: accuracy (exact McNemar), or the right option's
probability or margin (Wilcoxon signed-rank, with the accuracy guard)? Measured on recorded runs.

    python benchmarks/selection_statistic.py --store sqlite:///PATH/runs.sqlite [--store URL ...]
        [--level 0.1] [--margin 0.0] [--out results/selection-statistic.json]

Each finished run with a final-selection race stored its dev scores per example (split ``select``:
your prompt and every finalist) and, since store revision 0005, each dev example's probability
and margin. This script decides each recorded race again, offline and at no model call, with
each statistic (``promptgym.evaluation.selection.decide``, the race's own last step), and reports
for each how often the start would have been replaced and the resulting test delta (the chosen
prompt minus the start on the run's test split).

What it cannot replay: a finalist that the recorded race dropped early has no dev scores for the
rest of dev, so it stays out (it still counts in the Bonferroni correction, as in the race); and a
prompt that a statistic would choose but the run never scored on test (only your prompt, the
returned prompt and the method's own pick are) has an unknown test delta, counted apart. Runs whose
dev rows have no probabilities (stores older than revision 0005, or choice tasks answered by
generation) are compared on accuracy only, and the script says how many. Opening an older store
upgrades its schema, as every promptgym command does.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from promptgym.evaluation.selection import STATISTICS, Entrant, decide
from promptgym.store.runs import SELECT_ROLE, RunStore
from promptgym.tasks.prompt import Prompt


def race_of(store: RunStore, run: dict[str, Any]) -> dict[str, Any] | None:
    """A finished run's recorded race: the start's and each finalist's dev rows (per-example scores,
    probabilities, margins, in dev order), their test rows, the selection record; None if it had none."""
    summary = run.get("result") or {}
    selection = summary.get("selection") or {}
    finalists = selection.get("candidates") or []
    if not selection.get("enabled") or len(finalists) < 2:
        return None
    rows = store.scores(run["run_id"])
    dev = {r["candidate_id"]: r for r in rows if r["split"] == SELECT_ROLE}
    test = {r["candidate_id"]: r for r in rows if r["split"] == "test"}
    start = finalists[0]["candidate_id"]
    if start not in dev:
        return None
    return dict(run_id=run["run_id"], method=run["method"], dataset=run["dataset"], seed=run["config"].get("seed", 0),
                level=selection.get("level", 0.1), chosen=run.get("best_candidate"), start=start,
                order=[f["candidate_id"] for f in finalists], dev=dev, test=test,
                recorded_kept=bool(selection.get("kept_start")))


def has_soft(race: dict[str, Any]) -> bool:
    return all(row.get("probability") and row.get("margin") and None not in row["probability"].values()
               and None not in row["margin"].values() for row in race["dev"].values())


def decide_again(race: dict[str, Any], statistic: str, level: float, margin: float) -> str:
    """The candidate id the race would have returned with ``statistic``."""
    ids = list(race["dev"][race["start"]]["per_example"])  # dev order, as stored
    entrants = []
    for rank, cid in enumerate(race["order"]):
        row = race["dev"].get(cid)
        answered = [i for i in ids if row and i in row["per_example"]]
        entrant = Entrant(Prompt(cid), rank - 1, [float(row["per_example"][i]) for i in answered] if row else [])
        if statistic != "accuracy" and row:
            entrant.soft = [float(row[statistic][i]) for i in answered]
        entrant.dropped_after = None if len(answered) == len(ids) else len(answered)
        entrants.append(entrant)
    racing = [e for e in entrants[1:] if e.dropped_after is None]
    sel = decide(entrants, racing, level=level, dev_size=len(ids), seed=race["seed"], statistic=statistic,
                 margin=margin)
    return race["start"] if sel.kept_start else sel.chosen.instruction  # the Prompt was made from the id


def test_delta(race: dict[str, Any], chosen: str) -> float | None:
    """Chosen minus start on the run's test examples; None when the chosen prompt has no test row."""
    if chosen == race["start"]:
        return 0.0
    a, b = race["test"].get(race["start"]), race["test"].get(chosen)
    if not a or not b:
        return None
    shared = [i for i in a["per_example"] if i in b["per_example"]]
    if not shared:
        return None
    return sum(b["per_example"][i] - a["per_example"][i] for i in shared) / len(shared)


def tally(races: list[dict[str, Any]], statistic: str, level: float | None, margin: float) -> dict[str, Any]:
    replaced, deltas, unknown, worse, agree = 0, [], 0, 0, 0
    for race in races:
        chosen = decide_again(race, statistic, race["level"] if level is None else level, margin)
        replaced += chosen != race["start"]
        agree += chosen == (race["start"] if race["recorded_kept"] else race["chosen"])
        delta = test_delta(race, chosen)
        if delta is None:
            unknown += 1
            continue
        deltas.append(delta)
        worse += delta < 0
    return dict(statistic=statistic, runs=len(races), replaced=replaced, test_known=len(deltas),
                test_unknown=unknown, worse_on_test=worse, same_as_recorded=agree,
                mean_test_delta=sum(deltas) / len(deltas) if deltas else None, total_test_delta=sum(deltas))


def measure(urls: list[str], level: float | None = None, margin: float = 0.0) -> dict[str, Any]:
    races: list[dict[str, Any]] = []
    skipped = 0
    for url in urls:
        store = RunStore(url)
        for row in store.list_runs(with_result=True):
            if row["status"] != "finished":
                continue
            race = race_of(store, store.get_run(row["run_id"]))
            if race is None:
                skipped += 1
            else:
                races.append(race)
    soft = [r for r in races if has_soft(r)]
    return dict(stores=len(urls), races=len(races), without_race=skipped, with_soft_evidence=len(soft),
                level=level, margin=margin,
                all_runs=[tally(races, "accuracy", level, margin)],
                comparable=[tally(soft, s, level, margin) for s in STATISTICS] if soft else [])


def lines(result: dict[str, Any]) -> list[str]:
    out = [f"{result['races']} recorded races in {result['stores']} store(s) "
           f"({result['without_race']} finished runs had no race to replay)."]
    missing = result["races"] - result["with_soft_evidence"]
    if missing:
        out.append(f"{missing} of {result['races']} races have no per-example probabilities (stored before store "
                   "revision 0005, or choices answered by generation): they are compared on accuracy only.")
    head = (f"{'statistic':<12} {'runs':>5} {'replaced':>9} {'as recorded':>12} {'test known':>11} {'worse':>6} "
            f"{'mean test delta':>16}")

    def table(title: str, rows: list[dict[str, Any]]) -> None:
        out.extend(["", title, head])
        for r in rows:
            mean = "-" if r["mean_test_delta"] is None else f"{r['mean_test_delta']:+.4f}"
            out.append(f"{r['statistic']:<12} {r['runs']:>5} {r['replaced']:>9} {r['same_as_recorded']:>12} {r['test_known']:>11} "
                       f"{r['worse_on_test']:>6} {mean:>16}")

    table("every race, accuracy (today's default):", result["all_runs"])
    if result["comparable"]:
        table("races with soft evidence, each statistic:", result["comparable"])
    else:
        out.append("No race has per-example probabilities: nothing to compare the soft statistics on.")
    out.append("(replaced: the start would have been replaced; as recorded: the same prompt as the run returned "
               "(accuracy at the runs' own level should match every race); test known: the chosen prompt was scored on test, "
               "so its delta is known; mean over those, kept runs counting 0.)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", action="append", required=True, metavar="URL",
                    help="A run store (sqlite:///PATH or postgresql://...); repeat for several.")
    ap.add_argument("--level", type=float, default=None, help="Selection level (default: each run's own).")
    ap.add_argument("--margin", type=float, default=0.0, help="Dev accuracy a soft-statistic winner may lose.")
    ap.add_argument("--out", type=Path, default=None, help="Also write the result as JSON here.")
    args = ap.parse_args(argv)
    result = measure(args.store, args.level, args.margin)
    print("\n".join(lines(result)))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
