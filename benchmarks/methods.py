"""Issue 5: every LLM-proposer method on the same budget, held out, 3 seeds.

    python benchmarks/methods.py                       # the full benchmark (hours on 2 shared cores)
    python benchmarks/methods.py --tiny                # smoke test: 1 seed, tiny splits and budget
    python benchmarks/methods.py --methods opro evoprompt-ga --seeds 0 --budget 200

Methods (skipped when not registered): ape, opro, protegi (bandit selection, its default), protegi
with ``selector=uniform``, evoprompt-ga, evoprompt-de, gpo (decaying edit limit, its default) and gpo
with ``decay_edit_limit=false``. The embedded model is task and optimizer model; every run gets the
same search-call budget and the same seeded train/test split (so ``test_initial`` is shared by all
methods of one task and seed). Extra method parameters: ``--param METHOD:KEY=VALUE`` (repeatable,
VALUE parsed as JSON when it can be, like the CLI's ``--param``).

Tasks: ``example:sentiment`` (400 rows of multiemo, 4 labels, chance 0.25) and ``paper:rlprompt/sst-2``
(2 labels, chance 0.50), both with room above the start on the embedded model
(``results/baselines.md``). The recorded results used ``bigbench:multiemo/all_sentence_en`` and
``bigbench:misconceptions`` (T/F, chance 0.50), which needs the network now: the second was chosen because the embedded model is above chance on it with the
task's own instruction (0.65 on 40 examples, majority class 0.575; checked with
``Evaluator.run_task``), while e.g. implicatures, sports_understanding and anachronisms sat at chance
(0.50 / 0.475 / 0.475) and intent_recognition / empirical_judgments predicted a single class.

Writes ``benchmarks/results/methods.json`` (every run + per-method aggregates) and
``benchmarks/results/methods.md`` (the table). "Beats start on test?" counts the seeds on which the
method's prompt scored strictly higher than the starting prompt on the held-out test split, and
says "yes" only when that happened on every seed. Spread is the sample standard deviation over
seeds.

Every run has its own response cache (``--workdir``, default ``$PROMPTGYM_HOME/bench-methods``, one
file per task, variant and seed): with one shared cache a method would get free replays of another
method's calls (e.g. the starting prompt's training score) and so, in effect, a larger budget. The
price is that each run scores the starting prompt on test itself. An interrupted benchmark resumes
from these caches when started again; runs whose cache existed beforehand are flagged ``resumed``
and their wall times understate a cold run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from promptgym import api
from promptgym.data.loaders import load_dataset
from promptgym.optimizers import REGISTRY
from promptgym.paths import home

TASKS = ["example:sentiment", "paper:rlprompt/sst-2"]
VARIANTS: list[tuple[str, str, dict[str, Any]]] = [
    ("ape", "ape", {}),
    ("opro", "opro", {}),
    ("protegi", "protegi", {}),
    ("protegi[selector=uniform]", "protegi", {"selector": "uniform"}),
    ("evoprompt-ga", "evoprompt-ga", {}),
    ("evoprompt-de", "evoprompt-de", {}),
    ("gpo", "gpo", {}),
    ("gpo[decay_edit_limit=false]", "gpo", {"decay_edit_limit": False}),
]
RESULTS = Path(__file__).resolve().parent / "results"
TINY = dict(budget=40, train_size=6, test_size=6, seeds=[0])


def parse_params(items: list[str]) -> dict[str, dict[str, Any]]:
    """``METHOD:KEY=VALUE`` items -> {method: {key: value}}."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        method, sep, rest = item.partition(":")
        key, eq, value = rest.partition("=")
        if not sep or not eq or not key:
            raise SystemExit(f"--param '{item}': expected METHOD:KEY=VALUE")
        out.setdefault(method, {})[key] = parse_value(value)
    return out


def parse_variant(label: str) -> tuple[str, str, dict[str, Any]]:
    """``method[key=value,...]`` -> (label, method, params); values read as JSON when they parse."""
    method, bracket, rest = label.partition("[")
    if bracket and not rest.endswith("]"):
        raise SystemExit(f"--methods '{label}': expected METHOD or METHOD[KEY=VALUE,...]")
    params: dict[str, Any] = {}
    for item in filter(None, rest[:-1].split(",")) if bracket else ():
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise SystemExit(f"--methods '{label}': expected KEY=VALUE inside the brackets, got '{item}'")
        params[key.strip()] = parse_value(value)
    return label, method, params


def parse_value(text: str) -> Any:
    """A parameter value from the command line: JSON when it parses (numbers, true/false), else text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def plan(methods: list[str] | None, extra: dict[str, dict[str, Any]]) -> tuple[list, list[str]]:
    """The variants to run (the default set, or the labels asked for, each either a default
    variant or ``method[key=value,...]``), and why some are skipped."""
    todo, skipped = [], []
    known = {label: (label, method, params) for label, method, params in VARIANTS}
    chosen = [known.get(label) or parse_variant(label) for label in methods] if methods else VARIANTS
    for label, method, params in chosen:
        cls = REGISTRY.get(method)
        if cls is None:
            skipped.append(f"{label}: method '{method}' is not registered")
            continue
        merged = {**params, **extra.get(method, {})}
        unknown = sorted(set(merged) - set(cls.defaults))
        if unknown:
            skipped.append(f"{label}: '{method}' has no parameter(s) {', '.join(unknown)}")
            continue
        todo.append((label, method, merged))
    return todo, skipped


def chance(dataset: str) -> float:
    ds = load_dataset(dataset)
    return statistics.fmean(1 / len(e.choices) for e in ds.examples if e.choices)


def run_one(dataset: str, label: str, method: str, params: dict[str, Any], seed: int,
            args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    store_url = f"sqlite:///{workdir / 'runs.sqlite'}"
    name = f"{dataset}-{label}-s{seed}"
    if args.optimizer_model != args.model:
        name += f"-opt-{args.optimizer_model}"
    slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    cache_file = workdir / f"cache-{slug}.sqlite"
    resumed = cache_file.exists()
    cache_url = f"sqlite:///{cache_file}"
    started = time.perf_counter()
    res = api.optimize(dataset, method=method, budget=args.budget, seed=seed, train_size=args.train_size,
                       test_size=args.test_size, dev_size=args.dev_size, task_model=args.model,
                       optimizer_model=args.optimizer_model, params=params, store_url=store_url,
                       cache_url=cache_url, quiet=not args.verbose, select_k=args.select_k,
                       select_level=args.select_level)
    s = res.summary
    return dict(task=dataset, variant=label, method=method, params=params, seed=seed, run_id=s["run_id"],
                test_initial=s["test_initial"], test_best=s["test_best"], train_initial=s["initial_score"],
                train_best=s["best_score"], beats_start=bool(s["test_best"] > s["test_initial"]),
                calls=s["budget_used"], llm_calls=s["llm_calls"], cached_calls=s["cached_calls"],
                wall_seconds=round(time.perf_counter() - started, 2), model_seconds=s["model_seconds"],
                resumed=resumed,
                best_prompt=s["best_prompt"], initial_prompt=s["initial_prompt"], stats=s["stats"],
                dev_size=s["dev_size"], kept_start=s["kept_start"], selection_calls=s["selection"]["calls"],
                test_method_best=s["test_method_best"], method_best_prompt=s["method_best_prompt"],
                test_delta=s["test_delta"], test_interval=s["test_interval"], test_p_value=s["test_p_value"],
                verdict=s["verdict"])


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["task"], row["variant"]), []).append(row)
    out = []
    for (task, variant), runs in groups.items():
        ti, ti_sd = _mean_sd([r["test_initial"] for r in runs])
        tb, tb_sd = _mean_sd([r["test_best"] for r in runs])
        wins = sum(r["beats_start"] for r in runs)
        train_delta = (statistics.fmean(r["train_best"] - r["train_initial"] for r in runs)
                       if all("train_best" in r for r in runs) else None)
        out.append(dict(task=task, variant=variant, seeds=len(runs), test_initial_mean=ti, test_initial_sd=ti_sd,
                        test_best_mean=tb, test_best_sd=tb_sd, delta_mean=tb - ti, train_delta_mean=train_delta,
                        wins=wins,
                        beats_start="yes" if wins == len(runs) else ("no" if wins == 0 else "mixed"),
                        calls_mean=statistics.fmean(r["calls"] for r in runs),
                        worse=sum(r["test_best"] < r["test_initial"] for r in runs),
                        method_pick_worse=sum(r.get("test_method_best", r["test_best"]) < r["test_initial"]
                                              for r in runs),
                        kept_start=sum(bool(r.get("kept_start")) for r in runs),
                        interval_above_zero=sum((r.get("test_interval") or [0])[0] > 0 for r in runs),
                        wall_seconds_mean=statistics.fmean(r["wall_seconds"] for r in runs),
                        resumed_runs=sum(r["resumed"] for r in runs)))
    return out


def markdown(summary: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = ["# Methods benchmark (issue 5)", "",
             f"{meta['date']}; task model `{meta['model']}`, optimizer model "
             f"`{meta.get('optimizer_model', meta['model'])}`; budget {meta['budget']} calls "
             f"per run (search and final selection); train {meta['train_size']}, dev {meta['dev_size']}, test {meta['test_size']}; seeds "
             f"{', '.join(map(str, meta['seeds']))}. Mean ± sample sd over seeds. \"Beats start on test?\": "
             "seeds where the found prompt scored strictly higher than the starting prompt on the held-out "
             "test split (\"yes\" only if on every seed).", ""]
    for task in meta["tasks"]:
        lines += [f"## `{task}` (chance {meta['chance'][task]:.2f})", "",
                  f"| method | test_initial | test_best | Δ test | Δ train (search split) | beats start on test? "
                  f"| calls (budget {meta['budget']}) | wall s | kept start | worse on test (returned / method's pick) "
                  f"| test interval above 0 |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for a in (a for a in summary if a["task"] == task):
            lines.append(f"| {a['variant']} | {a['test_initial_mean']:.3f} ± {a['test_initial_sd']:.3f} | "
                         f"{a['test_best_mean']:.3f} ± {a['test_best_sd']:.3f} | {a['delta_mean']:+.3f} | "
                         f"{'-' if a.get('train_delta_mean') is None else format(a['train_delta_mean'], '+.3f')} | "
                         f"{a['beats_start']} ({a['wins']}/{a['seeds']}) | {a['calls_mean']:.0f} | "
                         f"{a['wall_seconds_mean']:.0f} | {a.get('kept_start', 0)}/{a['seeds']} | "
                         f"{a.get('worse', '-')} / {a.get('method_pick_worse', '-')} | "
                         f"{a.get('interval_above_zero', 0)}/{a['seeds']} |")
        lines.append("")
    worse = sum(a.get("worse", 0) for a in summary)
    method_worse = sum(a.get("method_pick_worse", 0) for a in summary)
    total = sum(a["seeds"] for a in summary)
    lines += [f"Runs whose returned prompt is worse than the start on test: {worse} of {total} "
              f"(the methods' own picks, before final selection: {method_worse} of {total}).", ""]
    if meta["skipped"]:
        lines += ["Skipped: " + "; ".join(meta["skipped"]), ""]
    if meta.get("merged_from"):
        lines += ["Merged from " + ", ".join(f"`{Path(m['file']).name}` ({', '.join(m['tasks'])}; {m['date']})"
                                             for m in meta["merged_from"])
                  + (f"; {meta['replaced_runs']} runs of earlier files replaced by a later file's run of the same "
                     "task, variant and seed." if meta.get("replaced_runs") else "."), ""]
    if any(a["resumed_runs"] for a in summary):
        lines += ["Some runs were resumed or repeated on an existing cache: their wall times understate "
                  "a cold run.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", nargs="+", default=TASKS)
    ap.add_argument("--methods", nargs="+", default=None,
                    help="variant labels: METHOD or METHOD[KEY=VALUE,...], e.g. protegi 'protegi[selector=uniform]' (default: the set above)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--budget", type=int, default=300, help="search-call budget of every run")
    ap.add_argument("--train-size", type=int, default=30)
    ap.add_argument("--dev-size", type=int, default=0, help="dev split for final selection (0: off, as in the issue-5 runs)")
    ap.add_argument("--select-k", type=int, default=3, help="finalists that race the start on dev")
    ap.add_argument("--select-level", type=float, default=0.1)
    ap.add_argument("--test-size", type=int, default=100)
    ap.add_argument("--model", default="embedded", help="task model spec (and optimizer model, unless given)")
    ap.add_argument("--optimizer-model", default=None,
                    help="optimizer model spec, e.g. openai:gemma@http://127.0.0.1:8765/v1 (default: --model)")
    ap.add_argument("--param", action="append", default=[], help="METHOD:KEY=VALUE, for every run of METHOD")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="run store + caches (default $PROMPTGYM_HOME/bench-methods)")
    ap.add_argument("--out", type=Path, default=RESULTS / "methods.json")
    ap.add_argument("--tiny", action="store_true", help="1 seed, train/test 6, budget 40: a smoke test only")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                    help="run nothing: combine the runs of earlier result files (e.g. one per task, run side by "
                         "side) into --out and its table; later files' runs replace the same task/variant/seed")
    args = ap.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out)
    args.optimizer_model = args.optimizer_model or args.model
    if args.tiny:
        args.budget, args.train_size, args.test_size, args.seeds = (TINY["budget"], TINY["train_size"],
                                                                    TINY["test_size"], TINY["seeds"])
    variants, skipped = plan(args.methods, parse_params(args.param))
    if args.methods and skipped:  # asked for by name: a typo must not pass silently
        raise SystemExit("--methods: " + "; ".join(skipped))
    for why in skipped:
        print(f"skip {why}", file=sys.stderr)
    workdir = args.workdir or home() / "bench-methods"
    workdir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    rows = []
    progress = args.out.with_suffix(".partial.jsonl")
    progress.parent.mkdir(parents=True, exist_ok=True)
    progress.write_text("")
    for dataset in args.tasks:
        for seed in args.seeds:
            for label, method, params in variants:
                row = run_one(dataset, label, method, params, seed, args, workdir)
                rows.append(row)
                with progress.open("a") as fh:  # a killed benchmark keeps what it finished
                    fh.write(json.dumps(row) + "\n")
                print(f"{dataset} seed {seed} {label:28s} test {row['test_initial']:.3f} -> {row['test_best']:.3f} "
                      f"calls {row['calls']} ({row['wall_seconds']:.0f}s)", file=sys.stderr, flush=True)
    meta = dict(date=dt.datetime.now().isoformat(timespec="seconds"), model=args.model,
                optimizer_model=args.optimizer_model, budget=args.budget, train_size=args.train_size, dev_size=args.dev_size, test_size=args.test_size, seeds=args.seeds,
                tasks=args.tasks, chance={t: chance(t) for t in args.tasks}, skipped=skipped,
                variants=[dict(label=l, method=m, params=p) for l, m, p in variants], tiny=args.tiny,
                total_seconds=round(time.perf_counter() - started, 1), python=platform.python_version(),
                cpus=os.cpu_count(), load_average=os.getloadavg())
    write(args.out, meta, rows)
    progress.unlink()
    return 0


def write(out: Path, meta: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    summary = aggregate(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(meta=meta, summary=summary, runs=rows), indent=2))
    table = markdown(summary, meta)
    out.with_suffix(".md").write_text(table)
    print(table)


def merge(files: list[Path], out: Path) -> int:
    """One table from result files written by separate invocations with the same settings; a run
    repeated in a later file (e.g. one method re-run after a fix) replaces the earlier one."""
    parts = []
    for f in files:
        try:
            part = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"{f}: cannot read it as JSON ({exc})") from None
        if not isinstance(part, dict) or "runs" not in part or "tasks" not in part.get("meta", {}):
            raise SystemExit(f"{f}: not a methods.py results file (no meta.tasks or runs)")
        parts.append(part)
    for part in parts:  # files from before --optimizer-model existed used one model for both roles
        part["meta"].setdefault("optimizer_model", part["meta"]["model"])
    settings = ("model", "optimizer_model", "budget", "train_size", "dev_size", "test_size", "seeds")
    first = parts[0]["meta"]
    for f, part in zip(files[1:], parts[1:]):
        differ = [k for k in settings if part["meta"].get(k) != first.get(k)]
        if differ:
            raise SystemExit(f"{f}: settings differ from {files[0]} ({', '.join(differ)}); not merged")
    variants = {v["label"]: v for p in parts for v in p["meta"]["variants"]}
    meta = dict(first, tasks=list(dict.fromkeys(t for p in parts for t in p["meta"]["tasks"])), variants=list(variants.values()),
                chance={t: c for p in parts for t, c in p["meta"]["chance"].items()},
                skipped=sorted({s for p in parts for s in p["meta"]["skipped"]}),
                total_seconds=round(sum(p["meta"]["total_seconds"] for p in parts), 1),
                merged_from=[dict(file=str(f), date=p["meta"]["date"], tasks=p["meta"]["tasks"],
                                  total_seconds=p["meta"]["total_seconds"], load_average=p["meta"]["load_average"])
                             for f, p in zip(files, parts)])
    rows: dict[tuple[str, str, int], dict[str, Any]] = {}
    for p in parts:  # a later file's run of the same task, variant and seed replaces the earlier one
        for row in p["runs"]:
            rows[(row["task"], row["variant"], row["seed"])] = row
    meta["replaced_runs"] = sum(len(p["runs"]) for p in parts) - len(rows)
    write(out, meta, list(rows.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
