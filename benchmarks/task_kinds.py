"""The tasks users bring, each run once end to end: several input fields, free-text rewards, a rubric
judge, reasoning before the answer, calibrated choices and the code task, start vs returned held out.

    python benchmarks/task_kinds.py [--runs NAME,...] [--work DIR] [--out benchmarks/results/task-kinds]

Each run is ``promptgym optimize ... --json`` as a user would type it (the commands are in ``RUNS``),
on the embedded model unless its command names another, with one run store in ``--work`` (default
``task-kinds-work/``); a run whose JSON is already there is not run again, so a killed benchmark
goes on where it stopped. The table gives per run: the start and the returned prompt on the
held-out test split with the paired 95% bootstrap interval of the difference and its p-value (the
run's own ``test_delta``, ``test_interval``, ``test_p_value``), the method's own pick on test, what
final selection decided, calls and wall time. ``--pairs`` adds paired comparisons of two runs'
returned prompts on the same test examples (``promptgym compare``): calibration off vs on, where
both runs share the seed and sizes and so the test split.

Data: ``liar-fields`` needs the LIAR rows of the ProTeGi paper (``paper:protegi/liar``, fetched as
docs/data.md says) split into their fields; ``write_liar_fields`` does that from the loaded task.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from promptgym.data import load_dataset

SPLIT = ["--train-size", "20", "--dev-size", "30", "--test-size", "150", "--seed", "0"]
LIAR_TEMPLATE = "Statement: {{ statement }}\\nSpeaker: {{ job }}, {{ party }}, {{ state }}\\nContext: {{ context }}"
RUNS: dict[str, tuple[str, list[str]]] = {
    "cal-off": ("5: choices as scored (sst-2)", ["--dataset", "paper:rlprompt/sst-2", "--method", "ape", "--budget", "200", *SPLIT]),
    "cal-on": ("5: contextual calibration (sst-2)",
               ["--dataset", "paper:rlprompt/sst-2", "--method", "ape", "--budget", "200", *SPLIT, "--calibrate"]),
    "cal-off-gemma": ("5: choices as scored (ethos, Gemma 3 270M)",
                      ["--dataset", "paper:protegi/ethos", "--method", "ape", "--budget", "200", *SPLIT,
                       "--task-model", "gemma3-270m", "--layout", "plain"]),
    "cal-on-gemma": ("5: contextual calibration (ethos, Gemma 3 270M)",
                     ["--dataset", "paper:protegi/ethos", "--method", "ape", "--budget", "200", *SPLIT,
                      "--task-model", "gemma3-270m", "--layout", "plain", "--calibrate"]),
    "fields": ("1: several input fields (LIAR)",
               ["--dataset", "{work}/liar-fields.jsonl", "--method", "ape", "--budget", "200", *SPLIT,
                "--input-template", LIAR_TEMPLATE]),
    "summaries": ("2, 6: ROUGE-L with a brevity term (summaries)",
                  ["--dataset", "example:summaries", "--method", "ape", "--budget", "150", "--train-size", "12",
                   "--test-size", "40", "--seed", "0"]),
    "reasoning": ("3: direct vs reasoning raced on dev (sentiment)",
                  ["--dataset", "example:sentiment", "--method", "ape", "--reasoning", "search", "--reasoning-tokens", "128",
                   "--budget", "200", "--train-size", "20", "--dev-size", "20", "--test-size", "100", "--seed", "0"]),
    "judge": ("2, 6: style rewrite scored by a rubric judge (formal-rewrite)",
              ["--dataset", "example:formal-rewrite", "--method", "ape", "--budget", "150", "--train-size", "10",
               "--dev-size", "10", "--select-k", "1", "--test-size", "40", "--seed", "0", "--judge-model", "embedded"]),
    "code-unguarded": ("6: the code task, final selection off (python-functions, code-tests)",
                       ["--dataset", "example:python-functions", "--method", "ape", "--budget", "150", "--train-size",
                        "12", "--dev-size", "0", "--test-size", "36", "--seed", "0"]),
    "code": ("6: the code task (python-functions, code-tests)",
             ["--dataset", "example:python-functions", "--method", "ape", "--budget", "150", "--train-size", "12",
              "--dev-size", "12", "--test-size", "24", "--seed", "0"]),
    "reasoning-on": ("3: every prompt reasons (sentiment)",
                     ["--dataset", "example:sentiment", "--method", "ape", "--reasoning", "on", "--reasoning-tokens", "128",
                      "--budget", "160", "--train-size", "20", "--dev-size", "20", "--test-size", "100", "--seed", "0"]),
}
PAIRS = [("cal-off", "cal-on"), ("cal-off-gemma", "cal-on-gemma"), ("reasoning", "reasoning-on")]


def write_liar_fields(path: Path) -> None:
    """LIAR's one-string inputs ("Statement: ...\\nJob title: ...") as rows of named fields."""
    names = {"Statement": "statement", "Job title": "job", "State": "state", "Party": "party", "Context": "context"}
    rows = []
    for ex in load_dataset("paper:protegi/liar").examples:
        fields = {}
        for line in ex.input.split("\n"):
            key, _, value = line.partition(": ")
            if key in names and value.strip():
                fields[names[key]] = value.strip()
        if len(fields) == len(names):
            rows.append({**fields, "target": ex.target, "choices": list(ex.choices or ())})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def run(name: str, work: Path, promptgym: list[str]) -> dict[str, Any]:
    out = work / f"{name}.json"
    if out.exists() and out.read_text().strip():
        return json.loads(out.read_text().strip().splitlines()[-1])
    args = [a.replace("{work}", str(work)) for a in RUNS[name][1]]
    started = time.perf_counter()
    done = subprocess.run([*promptgym, "--store", f"sqlite:///{work / 'runs.sqlite'}", "optimize", *args, "--json"],
                          capture_output=True, text=True)
    (work / f"{name}.err").write_text(done.stderr)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    out.write_text(done.stdout.strip().splitlines()[-1] + "\n")
    summary = json.loads(out.read_text())
    summary["bench_wall_seconds"] = round(time.perf_counter() - started, 1)
    out.write_text(json.dumps(summary) + "\n")
    return summary


def compare(a: dict[str, Any], b: dict[str, Any], work: Path, promptgym: list[str]) -> dict[str, Any] | None:
    done = subprocess.run([*promptgym, "--store", f"sqlite:///{work / 'runs.sqlite'}", "compare", a["run_id"],
                           b["run_id"], "--json"], capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else None


def _n(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}"


def markdown(rows: dict[str, dict[str, Any]], pairs: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = ["# The tasks users bring, run end to end", "",
             f"`python benchmarks/task_kinds.py` on {meta['date']}, {meta['minutes']} minutes of runs (their wall "
             f"times summed) on {meta['cores']} shared cores; the embedded model (SmolLM2-135M) unless the run names Gemma 3 270M; one seed each, so "
             "these say that each feature works through the whole runner, not which setting is better. "
             "Δ: the returned prompt minus the start on the held-out test split, 95% paired bootstrap interval and "
             "p (exact McNemar for 0/1 scores, else a paired test). Calls: the model calls the run made; answers "
             "found in the shared response cache (a run repeating another's requests, as `cal-on` repeats "
             "`cal-off`'s and `judge` an earlier identical run's) cost none and are not counted.", "",
             "| run | what | test n | start | returned | Δ [95%] | p | method's pick on test | kept start | calls | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in rows.items():
        if "error" in s:
            lines.append(f"| {name} | {RUNS[name][0]} | failed: {s['error']} |||||||||")
            continue
        low, high = s.get("test_interval") or (None, None)
        lines.append(f"| {name} | {RUNS[name][0]} | {s.get('test_size')} | {_n(s.get('test_initial'))} | "
                     f"{_n(s.get('test_best'))} | {s.get('test_delta', 0):+.3f} [{low:+.3f}, {high:+.3f}] | "
                     f"{s.get('test_p_value', 1):.2g} | {_n(s.get('test_method_best'))} | {s.get('kept_start')} | "
                     f"{s.get('llm_calls')} | {s.get('bench_wall_seconds', s.get('seconds', 0)):.0f} |")
    if pairs:
        lines += ["", "Paired on the same test examples (the returned prompts, B - A):", ""]
        for p in pairs:
            c = p["paired"]
            lines.append(f"- {p['a']} -> {p['b']}: {c['delta']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}] on "
                         f"{c['n']} examples, p = {c['p_value']:.2g}")
    notes = [f"- {name}: {s['selection']['reasoning']['sentence']}" for name, s in rows.items()
             if ((s.get("selection") or {}).get("reasoning") or {}).get("sentence")]
    notes += [f"- {name}: calibrated; prior of the start {json.dumps(s['calibration']['prior_initial'])}"
              for name, s in rows.items() if s.get("calibration")]
    notes += [f"- {name}: judge {json.dumps({k: v for k, v in s['judge'].items() if k != 'rubric'})}"
              for name, s in rows.items() if s.get("judge")]
    if notes:
        lines += ["", "Per run:", "", *notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default=",".join(RUNS), help="Runs by name, separated by commas.")
    ap.add_argument("--work", type=Path, default=Path("task-kinds-work"))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "task-kinds")
    ap.add_argument("--promptgym", default=f"{sys.executable} -m promptgym.cli",
                    help="How to call promptgym (default: this interpreter's).")
    args = ap.parse_args(argv)
    names = [n for n in args.runs.split(",") if n]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        print(f"task_kinds.py: unknown run(s) {', '.join(unknown)} (known: {', '.join(RUNS)})", file=sys.stderr)
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    if "fields" in names and not (args.work / "liar-fields.jsonl").exists():
        write_liar_fields(args.work / "liar-fields.jsonl")
    promptgym = args.promptgym.split()
    started = time.perf_counter()
    rows = {}
    for name in names:
        print(f"task_kinds: {name}", file=sys.stderr, flush=True)
        rows[name] = run(name, args.work, promptgym)
    pairs = []
    for a, b in PAIRS:
        if a in rows and b in rows and "error" not in rows[a] and "error" not in rows[b]:
            found = compare(rows[a], rows[b], args.work, promptgym)
            if found and found.get("paired"):
                pairs.append(dict(a=a, b=b, paired=found["paired"]))
    run_seconds = sum(s.get("bench_wall_seconds", s.get("seconds", 0)) for s in rows.values() if "error" not in s)
    meta = dict(date=dt.date.today().isoformat(), minutes=round(run_seconds / 60, 1), cores=os.cpu_count(),
                this_call_minutes=round((time.perf_counter() - started) / 60, 1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(dict(meta=meta, runs=rows, pairs=pairs), indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(rows, pairs, meta))
    print(f"written: {args.out.with_suffix('.md')}, {args.out.with_suffix('.json')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
