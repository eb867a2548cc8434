"""A bench's results: one row per cell, a table per dataset and task model, paired tests, plots.

The tests pool the seeds: each seed has its own test split, and on every one of its examples the
start and the method's returned prompt were both scored, so the per-example pairs of all seeds form
one paired sample (exact McNemar for 0/1 scores, else a paired bootstrap; the interval is the
paired bootstrap interval of the mean difference). With many methods a few p-values fall under
0.05 by chance, so each p-value is also given Benjamini-Hochberg-adjusted over the methods of its
table (q). The two methods whose returned prompts scored best on dev are compared with each other
on the same test examples: is the leader's lead real? (Picked by dev, so test is not used twice.)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
from pathlib import Path
from typing import Any

from promptgym.bench.work import BenchDir, group_key
from promptgym.bench.plots import draw
from promptgym.errors import PromptgymError
from promptgym.evaluation import stats
from promptgym.report.html import template_environment, write_run_report
from promptgym.report.trajectory import train_curve
from promptgym.store.runs import RunStore


def _paired(rows: list[dict[str, Any]], a_field: str, b_rows: list[dict[str, Any]] | None = None,
            b_field: str = "test_best_scores") -> tuple[list[float], list[float]]:
    """Per-example score pairs over seeds: (seed, example) keys present on both sides."""
    left = {(r["seed"], k): v for r in rows for k, v in (r.get(a_field) or {}).items()}
    right = {(r["seed"], k): v for r in (b_rows if b_rows is not None else rows)
             for k, v in (r.get(b_field) or {}).items()}
    keys = sorted(set(left) & set(right), key=str)
    return [left[k] for k in keys], [right[k] for k in keys]


def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per dataset x task model x method, in the order the cells ran."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((*group_key(row), row["variant"]), []).append(row)
    out = []
    for (dataset, model, layout, variant), runs in groups.items():
        ok = [r for r in runs if r["status"] == "ok"]
        s = [r["summary"] for r in ok]
        deltas = [x["test_delta"] for x in s if x.get("test_delta") is not None]
        delta_mean, delta_sd = _mean_sd(deltas)
        rec: dict[str, Any] = dict(
            dataset=dataset, task_model=model, layout=layout, variant=variant, method=runs[0]["method"],
            cells=len(runs), ok=len(ok), failed=[dict(seed=r["seed"], error=r.get("error")) for r in runs
                                                 if r["status"] != "ok"],
            test_initial_mean=_mean_sd([x["test_initial"] for x in s if x.get("test_initial") is not None])[0],
            test_best_mean=_mean_sd([x["test_best"] for x in s if x.get("test_best") is not None])[0],
            # None unless every run has one: a run whose method offered no finalist returned the
            # start unraced, with no dev score (and an average of the rest would flatter the method)
            dev_best_mean=(_mean_sd([x["dev_best"] for x in s])[0]
                           if s and all(x.get("dev_best") is not None for x in s) else None),
            test_delta_mean=delta_mean, test_delta_sd=delta_sd,
            method_pick_delta_mean=_mean_sd([x["test_method_best"] - x["test_initial"] for x in s
                                             if x.get("test_method_best") is not None
                                             and x.get("test_initial") is not None])[0],
            train_delta_mean=_mean_sd([x["best_score"] - x["initial_score"] for x in s])[0],
            kept_start=sum(bool(x.get("kept_start")) for x in s),
            calls_mean=_mean_sd([x["llm_calls"] for x in s])[0],
            budget_used_mean=_mean_sd([x["budget_used"] for x in s])[0],
            tokens_mean=_mean_sd([x["prompt_tokens"] + x["completion_tokens"] for x in s])[0],
            wall_seconds_mean=_mean_sd([r["wall_seconds"] for r in ok])[0],
            resumed=sum(bool(r.get("resumed")) for r in ok))
        a, b = _paired(ok, "test_initial_scores")
        if a:
            c = stats.compare(a, b, "two-sided")
            rec.update(pooled=dict(n=c.n, delta=c.delta, low=c.low, high=c.high, p_value=c.p_value, test=c.test))
        out.append(rec)
    _adjust(out)
    return out


def _adjust(records: list[dict[str, Any]]) -> None:
    """Benjamini-Hochberg q-values over the methods of each dataset x task model table."""
    from scipy.stats import false_discovery_control

    tables: dict[tuple, list[dict[str, Any]]] = {}
    for rec in records:
        if "pooled" in rec:
            tables.setdefault(group_key(rec), []).append(rec)
    for recs in tables.values():
        qs = false_discovery_control([r["pooled"]["p_value"] for r in recs], method="bh")
        for rec, q in zip(recs, qs):
            rec["pooled"]["q_value"] = float(q)


def leaders(rows: list[dict[str, Any]], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per table, the two methods whose returned prompts scored best on dev (the split final
    selection used; never test, so the pair is not picked by the data that then tests it),
    compared with each other on the same test examples (two-sided)."""
    out = []
    for key in dict.fromkeys(map(group_key, records)):
        ranked = sorted((r for r in records if group_key(r) == key and r["dev_best_mean"] is not None),
                        key=lambda r: -r["dev_best_mean"])
        if len(ranked) < 2:
            continue
        first, second = ranked[0], ranked[1]
        pick = lambda v: [r for r in rows if group_key(r) == key and r["variant"] == v and r["status"] == "ok"]
        a, b = _paired(pick(second["variant"]), "test_best_scores", pick(first["variant"]))
        if not a:
            continue
        c = stats.compare(a, b, "two-sided")
        out.append(dict(dataset=key[0], task_model=key[1], layout=key[2], first=first["variant"],
                        second=second["variant"], n=c.n, delta=c.delta, low=c.low, high=c.high,
                        p_value=c.p_value, test=c.test))
    return out


def _f(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def markdown(meta: dict[str, Any], records: list[dict[str, Any]], duels: list[dict[str, Any]]) -> str:
    s = meta["settings"]
    lines = ["# promptgym bench", "",
             f"{meta['date']}; budget {s['budget']} calls per run (search and final selection); train "
             f"{s['train_size']}, dev {s['dev_size']}, test {s['test_size']}; final selection k {s['select_k']}, "
             f"level {s['select_level']}{' (sequential)' if s.get('select_sequential') else ''}{_statistic(s)}; optimizer model `{s['optimizer_model']}`; seeds "
             f"{', '.join(map(str, meta['seeds']))}. One response cache per cell.", "",
             "Δ test: the returned prompt minus the start on the held-out test split (mean ± sd over seeds). "
             "Pooled: all seeds' test examples as one paired sample; 95% paired bootstrap interval, two-sided "
             "p (exact McNemar for 0/1 scores) and q (Benjamini-Hochberg over the table's methods). "
             "Kept start: runs where final selection handed the start back. Method's pick: the method's own "
             "best before final selection. Calls: model calls made (search, selection and the held-out "
             "test); tokens: prompt + completion; wall: seconds per run.", ""]
    for key in dict.fromkeys(map(group_key, records)):
        recs = [r for r in records if group_key(r) == key]
        lines += [f"## `{key[0]}` on `{key[1]}` (layout {key[2]})", "",
                  "| method | runs | test start | test returned | Δ test | pooled Δ [95% interval] | p | q "
                  "| kept start | Δ method's pick | Δ train | calls | tokens | wall s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in recs:
            p = r.get("pooled")
            pooled = f"{p['delta']:+.3f} [{p['low']:+.3f}, {p['high']:+.3f}]" if p else "-"
            runs = f"{r['ok']}/{r['cells']}" + (" (failed: see below)" if r["failed"] else "")
            lines.append(
                f"| {r['variant']} | {runs} | {_f(r['test_initial_mean'])} | {_f(r['test_best_mean'])} | "
                f"{_f(r['test_delta_mean'], '+.3f')} ± {_f(r['test_delta_sd'])} | {pooled} | "
                f"{_f(p and p['p_value'], '.3g')} | {_f(p and p.get('q_value'), '.3g')} | {r['kept_start']}/{r['ok']} | "
                f"{_f(r['method_pick_delta_mean'], '+.3f')} | {_f(r['train_delta_mean'], '+.3f')} | "
                f"{_f(r['calls_mean'], '.0f')} | {_f(r['tokens_mean'], '.0f')} | {_f(r['wall_seconds_mean'], '.0f')} |")
        lines.append("")
        real = [r["variant"] for r in recs if r.get("pooled") and r["pooled"].get("q_value", 1) < 0.05]
        lines.append("Methods whose returned prompt differs from the start at q < 0.05: "
                     + (", ".join(real) if real else "none") + ".")
        if not any(group_key(d) == key for d in duels):
            lines.append("Best two by mean dev score: not compared (fewer than two methods have a dev score "
                         "in every run; a run whose method offered no finalist has none).")
        for d in duels:
            if group_key(d) == key:
                lines.append(f"Best two by mean dev score, tested on test: {d['first']} vs {d['second']}: "
                             f"{d['delta']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] on {d['n']} paired examples, "
                             f"p = {d['p_value']:.3g} ({'a real difference' if d['p_value'] < 0.05 else 'not a real difference'} "
                             "at 0.05).")
        lines.append("")
    failed = [(r, f) for r in records for f in r["failed"]]
    if failed:
        lines += ["## Failed runs", ""] + [f"- {r['variant']} on `{r['dataset']}` / `{r['task_model']}` seed "
                                            f"{f['seed']}: {f['error']}" for r, f in failed] + [""]
    if any(r["resumed"] for r in records):
        lines += ["Some runs were resumed on an existing cache: their wall times and call counts understate a "
                  "cold run.", ""]
    for name, caption in (("test-delta.png", "Δ test per method (pooled 95% interval; dots: seeds)"),
                          ("train-curve.png", "Best training score against budget spent (mean over seeds)")):
        if name in meta.get("plots", []):
            lines += [f"![{caption}](plots/{name})", ""]
    return "\n".join(lines)


def _refresh_curves(bench: BenchDir, rows: list[dict[str, Any]]) -> None:
    """Recompute the training curves from the bench's run store when it is there (so a report made
    by a newer promptgym draws old cells the same way); rows keep theirs otherwise."""
    if not (bench.work / "runs.sqlite").exists():
        return
    store = RunStore(bench.store_url)
    for row in rows:
        if row.get("run_id"):
            row["train_curve"] = train_curve(store, row["run_id"])


def write_run_pages(folder: Path, rows: list[dict[str, Any]]) -> dict[str, str]:
    """Each cell's run page, ``runs/RUN_ID.html`` next to results.html, from the bench's run store
    (``work/runs.sqlite``); returns ``{run_id: relative link}`` for the pages written. A run the
    store does not have (or a bench without its work/ directory) gets no page and no link."""
    db = Path(folder) / "work" / "runs.sqlite"
    if not db.exists():
        return {}
    store = RunStore(f"sqlite:///{db}")
    (Path(folder) / "runs").mkdir(exist_ok=True)
    links: dict[str, str] = {}
    for row in rows:
        run_id = row.get("run_id")
        if not run_id:
            continue
        try:
            write_run_report(store, run_id, Path(folder) / "runs" / f"{run_id}.html")
        except PromptgymError:
            continue
        links[run_id] = f"runs/{run_id}.html"
    return links


def write_report(bench: BenchDir, rows: list[dict[str, Any]], seeds: list[int],
                 seconds: float | None = None) -> dict[str, Any]:
    """results.json, results.md and plots/ in the bench directory, from the given rows."""
    _refresh_curves(bench, rows)
    records = aggregate(rows)
    duels = leaders(rows, records)
    meta: dict[str, Any] = dict(date=dt.datetime.now().isoformat(timespec="seconds"), settings=bench.settings(),
                                seeds=seeds, python=platform.python_version(), cpus=os.cpu_count(),
                                load_average=os.getloadavg(), seconds=seconds)
    try:
        figures = draw(bench.path / "plots", rows, records)
    except ImportError:
        figures = {}
        meta["plots_skipped"] = "matplotlib is not installed (pip install 'promptgym[report]')"
    meta["plots"] = list(figures)
    (bench.path / "results.json").write_text(json.dumps(dict(meta=meta, methods=records, best_two=duels,
                                                             runs=rows), indent=1))
    (bench.path / "results.md").write_text(markdown(meta, records, duels))
    links = write_run_pages(bench.path, rows)
    (bench.path / "results.html").write_text(render_bench(meta, records, duels, figures, rows, links),
                                             encoding="utf-8")
    return dict(meta=meta, methods=records, best_two=duels)



# -- the bench page: results.html ----------------------------------------------------------------------------------
def render_bench(meta: dict[str, Any], records: list[dict[str, Any]], duels: list[dict[str, Any]],
                 figures: dict[str, str], rows: list[dict[str, Any]] | None = None,
                 links: dict[str, str] | None = None) -> str:
    """The bench's tables, best two and figures (inline SVG) as one page; with ``rows`` (the
    cells), each method's runs by seed with their run ids, linked to ``links[run_id]`` (a run
    page next to the bench page) where there is one."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for rec in records:
        groups.setdefault(group_key(rec), []).append(rec)
    runs: dict[tuple, list[dict[str, Any]]] = {}
    for row in sorted(rows or [], key=lambda r: r["seed"]):
        runs.setdefault((*group_key(row), row["variant"]), []).append(dict(
            seed=row["seed"], run_id=row.get("run_id"), status=row["status"],
            link=(links or {}).get(row.get("run_id") or ""),
            delta=(row.get("summary") or {}).get("test_delta")))
    return template_environment().get_template("bench.html").render(meta=meta, groups=groups, duels=duels, figures=figures,
                                                     generated=meta["date"], runs=runs,
                                                     failed=[(r, f) for r in records for f in r["failed"]])


def _statistic(settings: dict[str, Any]) -> str:
    """The race's statistic when it is not the task's score (benches from before it was a setting: accuracy)."""
    statistic = settings.get("select_statistic") or "accuracy"
    if statistic == "accuracy":
        return ""
    return f", on the right option's {statistic} (accuracy may drop at most {settings.get('select_margin') or 0:g})"
