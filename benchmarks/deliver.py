"""Found and delivered: how much of the gain a method finds reaches the user (issue 23's measure).

    python benchmarks/deliver.py --bench LABEL=BENCH_DIR [--bench LABEL=BENCH_DIR ...]
        [--runs LABEL=RUNS.jsonl] [--carry LABEL=DELIVER.json | --carry-rest DELIVER.json]
        [--save-runs LABEL=RUNS.jsonl]
        [--together NAME=LABEL+LABEL] [--superseded METHOD=BENCH_DIR] [--out benchmarks/results/deliver]

Reads finished ``promptgym bench`` directories (their ``results.json`` and run store) and, per
setting label x dataset x task model x method, pools the seeds' test examples into one paired
sample and reports:

- found: the method's own pick (its best before final selection) minus the start on test;
- delivered: the prompt handed back (the start when final selection kept it) minus the start;
- regressions: runs whose returned prompt scored below the start on test;
- failed: runs that ended in an error (a failing method is a result too), listed with the error;
- answers: model answers per run (search, selection and the held-out test), made or read from the
  response cache: a setting run on the caches of another with the same searches makes few calls but
  uses as many answers; selection answers: the dev examples every raced prompt answered.

Each delta has its 95% paired bootstrap interval (``stats.compare``). The goals of the issue are
checked over every cell: regressions at most 1 in 20 runs; delivered at least 60% of found, summed
over the cells where found is positive; at least three cells whose delivered interval lies above 0.
Selection never saw test: these numbers are computed after the runs, from their stored test scores.

A setting too long for one machine's session is measured in parts: ``--save-runs`` writes each of a
setting's runs (its per-example test scores of the start, the returned prompt and the method's pick:
all that pooling needs) to a small JSON-lines file kept with the results, and ``--runs`` reads such a
file back, so the seeds measured on another day pool with today's (a run in a ``--bench`` directory
replaces the same run from a file). ``--carry`` keeps the cells of a finished setting as a results
file recorded them, when its bench directory is no longer on the machine (``--carry-rest``: every
setting of that file not measured here); the page says which.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from promptgym.evaluation import stats
from promptgym.store.runs import RunStore


def _test_rows(store: RunStore, run_id: str) -> dict[str, dict[str, float]]:
    return {r["candidate_id"]: r["per_example"] for r in store.scores(run_id) if r["split"] == "test"}


def _raced_answers(selection: dict[str, Any]) -> int:
    """The dev answers final selection used: each raced prompt's dev examples (fresh or cached)."""
    return sum(c.get("dev_n") or 0 for c in selection.get("candidates") or [])


def run_record(store: RunStore, row: dict[str, Any]) -> dict[str, Any] | None:
    """One bench run's per-example test scores of the start, the returned prompt and the method's
    own pick (the first finalist after the start in the selection record; the returned prompt when
    no race ran), keyed by seed and example id so seeds pool without collisions."""
    s = row.get("summary") or {}
    if row.get("status") != "ok" or s.get("test_initial") is None:
        return None
    test = _test_rows(store, row["run_id"])
    finalists = (s.get("selection") or {}).get("candidates") or []
    start, returned = row.get("test_initial_scores"), row.get("test_best_scores")
    first = test.get(finalists[1]["candidate_id"]) if len(finalists) > 1 else None  # after the start (rank -1)
    own = s.get("test_method_best")  # the method's best on test, whichever prompt it was
    # Told by test score, not text: DP2O's and GRIPS's candidates can share the start's instruction.
    # Runs recorded before test_method_best existed fall back to the text.
    own_is_start = (abs(own - s["test_initial"]) < 1e-9 if own is not None
                    else s.get("method_best_prompt") == s.get("initial_prompt"))
    if first and own is not None and abs(sum(first.values()) / len(first) - own) < 1e-9:
        pick = first  # the method's best, raced (the usual case)
    elif s.get("method_best_prompt") is None or own_is_start:
        pick = start  # the method's best was the start itself: nothing found (selection raced its next best)
    elif first:
        pick = first
    else:  # no race: the returned prompt is the method's pick
        pick = returned
    if not start or not returned or not pick:
        return None
    key = lambda d: {f"{row['seed']}:{k}": float(v) for k, v in d.items()}
    selection = s.get("selection") or {}
    return dict(seed=row["seed"], start=key(start), returned=key(returned), pick=key(pick),
                calls=(s.get("llm_calls") or 0) + (s.get("cached_calls") or 0), kept_start=bool(s.get("kept_start")),
                test_initial=s["test_initial"], test_best=s["test_best"],
                selection_answers=_raced_answers(selection), decided_at=selection.get("decided_at"))


def _pooled(runs: list[dict[str, Any]], side: str) -> dict[str, Any]:
    a, b = [], []
    for r in runs:
        shared = [k for k in r["start"] if k in r[side]]
        a += [r["start"][k] for k in shared]
        b += [r[side][k] for k in shared]
    c = stats.compare(a, b, "two-sided")
    return dict(n=c.n, delta=c.delta, low=c.low, high=c.high, p_value=c.p_value)


def _rows(folder: Path, superseded: frozenset[str]) -> list[dict[str, Any]]:
    """The bench's rows, less those of methods re-run elsewhere after a fix (``--superseded``)."""
    rows = json.loads((folder / "results.json").read_text())["runs"]
    return [r for r in rows if r["variant"] not in superseded]


def runs(folder: Path, superseded: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """A bench directory's runs, each with its cell (dataset, task model, method) and seed: its
    record, or its error when it failed."""
    store = RunStore(f"sqlite:///{folder / 'work' / 'runs.sqlite'}")
    out = []
    for row in _rows(folder, superseded):
        where = dict(dataset=row["dataset"], task_model=row["task_model"], method=row["variant"], seed=row["seed"],
                     **({"machine": row["machine"]} if row.get("machine") else {}))
        if row.get("status") != "ok":
            out.append(dict(where, error=row.get("error") or ""))
        elif (rec := run_record(store, row)) is not None:
            out.append(dict(where, **rec))
    return out


def _run_key(run: dict[str, Any]) -> tuple:
    return run["dataset"], run["task_model"], run["method"], run["seed"]


def cells_of(label: str, runs_: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per dataset x task model x method: the runs' test examples pooled into one paired sample."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for run in runs_:
        if "error" not in run:
            groups.setdefault(_run_key(run)[:3], []).append(run)
    first: dict[str, int] = {}  # each dataset, model and method where it first appears: a part run
    for key in groups:          # later (e.g. one seed's missing methods) joins its dataset's rows
        for name in key:
            first.setdefault(name, len(first))
    out = []
    for (dataset, model, variant), group in sorted(groups.items(), key=lambda kv: [first[n] for n in kv[0]]):
        decided = [r["decided_at"] for r in group if r.get("decided_at") is not None]
        out.append(dict(setting=label, dataset=dataset, task_model=model, method=variant, runs=len(group),
                        found=_pooled(group, "pick"), delivered=_pooled(group, "returned"),
                        regressions=sum(r["test_best"] < r["test_initial"] for r in group),
                        kept_start=sum(r["kept_start"] for r in group),
                        calls=sum(r["calls"] or 0 for r in group) / len(group),
                        selection_calls=sum(r["selection_answers"] for r in group) / len(group),
                        decided_at=decided))
    return out


def failed_of(label: str, runs_: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs that ended in an error: in no cell's numbers, so listed on their own."""
    return [dict(setting=label, dataset=r["dataset"], task_model=r["task_model"], method=r["method"],
                 seed=r["seed"], error=r["error"]) for r in runs_ if "error" in r]


def cells(label: str, folder: Path, superseded: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    return cells_of(label, runs(folder, superseded))


def failed(label: str, folder: Path, superseded: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    return failed_of(label, runs(folder, superseded))


_SIDES = ("start", "returned", "pick")


def _compact(run: dict[str, Any]) -> dict[str, Any]:
    """A run as one line: the example keys once, then each prompt's scores in that order (an
    integral score as an int), a third of the size of three keyed maps."""
    if "error" in run:
        return run
    ids = list(run["start"])
    num = lambda v: int(v) if float(v).is_integer() else v
    return {**{k: v for k, v in run.items() if k not in _SIDES}, "ids": ids,
            **{side: [num(run[side].get(i)) if i in run[side] else None for i in ids] for side in _SIDES}}


def _expand(line: dict[str, Any]) -> dict[str, Any]:
    _run_key(line)  # a line without its cell and seed is no run
    if "error" in line:
        return line
    ids = line["ids"]
    return {**{k: v for k, v in line.items() if k != "ids" and k not in _SIDES},
            **{side: {i: float(v) for i, v in zip(ids, line[side]) if v is not None} for side in _SIDES}}


def read_runs(path: Path) -> list[dict[str, Any]]:
    """Runs saved by ``--save-runs``; a bad line is named, never guessed at."""
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                out.append(_expand(json.loads(line)))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{n}: not a saved run ({exc})") from None
    return out


def write_runs(path: Path, runs_: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ordered = sorted(runs_, key=lambda r: tuple(map(str, _run_key(r))))
    path.write_text("".join(json.dumps(_compact(r), separators=(",", ":")) + "\n" for r in ordered))


def goals(records: list[dict[str, Any]]) -> dict[str, Any]:
    runs = sum(r["runs"] for r in records)
    regressions = sum(r["regressions"] for r in records)
    positive = [r for r in records if r["found"]["delta"] > 0]
    found = sum(r["found"]["delta"] for r in positive)
    delivered = sum(r["delivered"]["delta"] for r in positive)
    above = [r for r in records if r["delivered"]["low"] > 0]
    return dict(runs=runs, regressions=regressions, regressions_ok=regressions * 20 <= runs,
                found_positive_sum=found, delivered_on_those=delivered,
                delivered_share=delivered / found if found > 0 else None,
                delivered_share_ok=found > 0 and delivered >= 0.6 * found,
                cells_delivered_above_zero=len(above), cells_ok=len(above) >= 3)


def _ci(d: dict[str, Any]) -> str:
    return f"{d['delta']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def goals_line(g: dict[str, Any]) -> str:
    share = "-" if g["delivered_share"] is None else f"{g['delivered_share']:.0%}"
    return (f"Goals: regressions {g['regressions']} of {g['runs']} runs "
            f"({'met' if g['regressions_ok'] else 'NOT met'}: at most 1 in 20); delivered {share} of found "
            f"over the cells where found is positive ({g['delivered_on_those']:+.3f} of "
            f"{g['found_positive_sum']:+.3f}; {'met' if g['delivered_share_ok'] else 'NOT met'}: at least 60%); "
            f"{g['cells_delivered_above_zero']} cells whose delivered interval is above 0 "
            f"({'met' if g['cells_ok'] else 'NOT met'}: at least 3).")


def goals_together(by_setting: dict[str, list[dict[str, Any]]], labels: list[str]) -> dict[str, Any]:
    """The goals over the cells of several settings together."""
    return goals([r for label in labels for r in by_setting[label]])


def markdown(by_setting: dict[str, list[dict[str, Any]]], together: dict[str, list[str]] | None = None,
             failures: dict[str, list[dict[str, Any]]] | None = None, superseded: list[str] | None = None,
             carried: dict[str, str] | None = None) -> str:
    lines = ["# Found and delivered", "",
             "Found: the method's own pick minus the start on test; delivered: the returned prompt minus the "
             "start (0 where the start was kept). Pooled over seeds, 95% paired bootstrap interval. "
             "Regressions: runs whose returned prompt scored below the start on test. Delivered can exceed found: "
             "where a method's own best on train was the start (found 0), final selection raced its best other "
             "candidate, which may win on dev.", ""]
    for label, records in by_setting.items():
        g = goals(records)
        lines += [f"## {label}", "",
                  "| dataset | task model | method | runs | found Δ [95%] | delivered Δ [95%] | kept start "
                  "| regressions | answers/run | selection answers/run |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in records:
            lines.append(f"| `{r['dataset']}` | `{r['task_model']}` | {r['method']} | {r['runs']} | {_ci(r['found'])} | "
                         f"{_ci(r['delivered'])} | {r['kept_start']}/{r['runs']} | {r['regressions']} | "
                         f"{r['calls']:.0f} | {r['selection_calls']:.0f} |")
        lines += ["", goals_line(g), ""]
        for f in (failures or {}).get(label, []):
            lines.append(f"Failed, in no cell above: `{f['dataset']}` `{f['task_model']}` {f['method']} seed {f['seed']}: "
                         f"{f['error']}")
        if (failures or {}).get(label):
            lines.append("")
    for name, labels in (together or {}).items():
        named = ", ".join(f'"{label}"' for label in labels)
        lines += [f"## {name}", "", f"Over {named}: " + goals_line(goals_together(by_setting, labels)), ""]
    if superseded:
        lines += ["Left out, re-run after a fix in another directory: " + "; ".join(superseded) + ".", ""]
    for src in dict.fromkeys((carried or {}).values()):
        labels = "; ".join(f'"{label}"' for label, s in carried.items() if s == src)
        lines += [f"Carried as `{Path(src).name}` recorded them (their bench directories are not on the machine "
                  f"that made this page): {labels}.", ""]
    return "\n".join(lines)


def _pairs(items: list[str], option: str, what: str) -> list[tuple[str, str]] | None:
    """``LABEL=VALUE`` items; None (after one line on stderr) when one is malformed."""
    out = []
    for item in items:
        label, sep, value = item.partition("=")
        if not sep or not label or not value:
            print(f"{option} {item}: give LABEL={what}", file=sys.stderr)
            return None
        out.append((label, value))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bench", action="append", default=[], metavar="LABEL=DIR",
                    help="A finished bench directory and the label of its setting; repeat for several.")
    ap.add_argument("--runs", action="append", default=[], metavar="LABEL=FILE",
                    help="Runs saved earlier with --save-runs, pooled with the setting's other runs.")
    ap.add_argument("--carry", action="append", default=[], metavar="LABEL=FILE",
                    help="Keep setting LABEL's cells as the results file FILE (a deliver .json) recorded them.")
    ap.add_argument("--carry-rest", type=Path, default=None, metavar="FILE",
                    help="Carry every setting FILE (a deliver .json) records that is not measured here, in its order.")
    ap.add_argument("--save-runs", action="append", default=[], metavar="LABEL=FILE",
                    help="Write every run of setting LABEL (from --runs and --bench) to FILE.")
    ap.add_argument("--together", action="append", default=[], metavar="NAME=LABEL+LABEL",
                    help="Also check the goals over the cells of several settings together.")
    ap.add_argument("--superseded", action="append", default=[], metavar="METHOD=DIR",
                    help="Leave out METHOD's runs in bench DIR (re-run after a fix, in another directory); said so.")
    ap.add_argument("--out", type=Path, default=None, help="Write OUT.json and OUT.md.")
    args = ap.parse_args(argv)
    parsed = [_pairs(args.superseded, "--superseded", "DIR"), _pairs(args.bench, "--bench", "DIR"),
              _pairs(args.runs, "--runs", "FILE"), _pairs(args.carry, "--carry", "FILE"),
              _pairs(args.save_runs, "--save-runs", "FILE")]
    if any(p is None for p in parsed):
        return 2
    superseded_pairs, benches, run_files, carries, saves = parsed
    if not (benches or run_files or carries or args.carry_rest):
        print("give at least one --bench, --runs, --carry or --carry-rest", file=sys.stderr)
        return 2
    superseded: dict[Path, set[str]] = {}
    for method, folder in superseded_pairs:
        superseded.setdefault(Path(folder).resolve(), set()).add(method)
    # Every setting's runs by cell and seed: files first, then bench directories (a re-run replaces).
    by_run: dict[str, dict[tuple, dict[str, Any]]] = {}
    for label, file in run_files:
        try:
            saved = read_runs(Path(file))
        except (OSError, ValueError) as exc:
            print(f"--runs {label}={file}: {exc}", file=sys.stderr)
            return 2
        by_run.setdefault(label, {}).update({_run_key(r): r for r in saved})
    for label, folder in benches:
        if not (Path(folder) / "results.json").exists():
            print(f"--bench {label}={folder}: not a bench directory with results.json", file=sys.stderr)
            return 2
        left_out = frozenset(superseded.get(Path(folder).resolve(), ()))
        by_run.setdefault(label, {}).update({_run_key(r): r for r in runs(Path(folder), left_out)})
    by_setting: dict[str, list[dict[str, Any]]] = {}
    failures: dict[str, list[dict[str, Any]]] = {}
    carried: dict[str, str] = {}
    if args.carry_rest is not None:  # the recorded order; a setting measured here takes its place
        try:
            rest = json.loads(args.carry_rest.read_text())
        except (OSError, ValueError) as exc:
            print(f"--carry-rest {args.carry_rest}: not a deliver results file ({exc})", file=sys.stderr)
            return 2
        for label, recorded in rest.items():
            if "cells" not in recorded:  # a --together entry: recomputed from the settings, if asked again
                continue
            if label in by_run:
                by_setting[label] = []  # its place; filled below
            else:
                by_setting[label], failures[label] = recorded["cells"], recorded.get("failed", [])
                carried[label] = str(args.carry_rest)
    for label, file in carries:
        try:
            recorded = json.loads(Path(file).read_text())[label]
        except (OSError, ValueError, KeyError) as exc:
            print(f"--carry {label}={file}: no setting of that label there ({exc})", file=sys.stderr)
            return 2
        if label in by_run:
            print(f"--carry {label}={file}: that setting also has runs here; carry it or give its runs", file=sys.stderr)
            return 2
        by_setting[label], failures[label], carried[label] = recorded["cells"], recorded.get("failed", []), file
    for label, found in by_run.items():
        by_setting[label] = cells_of(label, list(found.values()))
        failures[label] = failed_of(label, list(found.values()))
    for label, file in saves:
        if label not in by_run:
            print(f"--save-runs {label}={file}: no runs of that setting here (give --bench or --runs)", file=sys.stderr)
            return 2
        write_runs(Path(file), list(by_run[label].values()))
    together = {}
    for item in args.together:
        name, sep, labels = item.partition("=")
        unknown = [label for label in labels.split("+") if label not in by_setting]
        if not sep or unknown:
            print(f"--together {item}: give NAME=LABEL+LABEL with labels given by --bench, --runs or --carry",
                  file=sys.stderr)
            return 2
        together[name] = labels.split("+")
    text = markdown(by_setting, together, failures,
                    [f"`{m}` in `{folder.name}`" for folder, methods in superseded.items() for m in sorted(methods)],
                    carried)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(
            {**{label: dict(cells=recs, goals=goals(recs), failed=failures[label]) for label, recs in by_setting.items()},
             **{name: dict(settings=labels, goals=goals_together(by_setting, labels))
                for name, labels in together.items()}}, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
