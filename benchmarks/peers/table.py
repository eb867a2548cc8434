"""The table of a peers run over several tasks and seeds: per system and task, the start's and the
returned prompt's test accuracy pooled over seeds, the paired delta with its 95% interval, how often
the returned prompt was worse than the start, calls and wall time; and per task our best method
against the best peer on the same test examples, twice: by the returned prompts' accuracy, and by
what the searches added over their own starts (each system asks the model in its own way, so the
first mixes the asking with the search; the second takes the asking out); and per task a constant
answer as the bar (``result["constant"]``, which run.py reads from the splits). No model call: it
reads the results file only.

A row is one system on one task and seed (``peer``, ``dataset``, ``seed``, ``framework``,
``status``; ``test_start`` and ``test_final``: 0/1 per test example in the test file's order;
``calls_search``, ``refused_search``, ``over_budget_search``, ``wall_seconds``, ``error``).
Pooling: every (seed, example) pair of a system's finished runs counts once, as promptgym's bench
pools (one bootstrap over all pairs, the exact McNemar test on the discordant ones).
"""

from __future__ import annotations

from typing import Any, Callable

from common import paired

OURS = "promptgym"


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def is_ours(row: dict[str, Any]) -> bool:
    return str(row.get("framework", "")).startswith(OURS) or str(row.get("peer", "")).startswith(f"{OURS}-")


def finished(row: dict[str, Any]) -> bool:
    return row.get("status") == "ok" and bool(row.get("test_start")) and bool(row.get("test_final"))


def gains(row: dict[str, Any]) -> list[int]:
    """Per test example, what the search added: the returned prompt's score minus the start's (-1, 0, 1)."""
    return [f - s for s, f in zip(row["test_start"], row["test_final"])]


def pairs(rows: list[dict[str, Any]], value_a: Callable[[dict[str, Any]], list[int]],
          value_b: Callable[[dict[str, Any]], list[int]],
          other: list[dict[str, Any]] | None = None) -> tuple[list[int], list[int]]:
    """(seed, example) pairs: ``value_a`` of ``rows`` against ``value_b`` of ``other`` (default:
    the same rows), over the keys both have."""
    left = {(r["seed"], i): v for r in rows if finished(r) for i, v in enumerate(value_a(r))}
    right = {(r["seed"], i): v for r in (rows if other is None else other) if finished(r)
             for i, v in enumerate(value_b(r))}
    keys = sorted(set(left) & set(right))
    return [left[k] for k in keys], [right[k] for k in keys]


def start(row: dict[str, Any]) -> list[int]:
    return row["test_start"]


def final(row: dict[str, Any]) -> list[int]:
    return row["test_final"]


def pool(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per task x system, in the order the rows came."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["peer"]), []).append(row)
    out = []
    for (dataset, system), runs in groups.items():
        ok = [r for r in runs if finished(r)]
        rec: dict[str, Any] = {
            "dataset": dataset, "system": system, "ours": is_ours(runs[0]), "runs": len(runs), "ok": len(ok),
            "seeds": sorted(r["seed"] for r in runs),
            "failed": [{"seed": r["seed"], "status": r.get("status"), "error": r.get("error")}
                       for r in runs if not finished(r)],
            "worse": sum(1 for r in ok if sum(r["test_final"]) < sum(r["test_start"])),
            "calls_mean": _mean([r["calls_search"] for r in runs if r.get("calls_search") is not None]),
            "calls_max": max((r["calls_search"] for r in runs if r.get("calls_search") is not None), default=None),
            "refused": sum(r.get("refused_search") or 0 for r in runs),
            "over_budget": sum(r.get("over_budget_search") or 0 for r in runs),
            "wall_seconds_mean": _mean([r["wall_seconds"] for r in runs if r.get("wall_seconds") is not None])}
        before, after = pairs(ok, start, final)
        if before:
            p = paired(before, after)
            rec.update(n=len(before), start=_mean(before), final=_mean(after), delta=p["delta"],
                       interval=p["interval"], p_value=p["p_value"])
        out.append(rec)
    return out


def versus(rows: list[dict[str, Any]], records: list[dict[str, Any]], by: str = "final") -> list[dict[str, Any]]:
    """Per task: our method and the peer best by ``by``, compared on the same test examples (ours
    minus the peer's). ``by="final"``: the pooled test accuracy of the returned prompts. ``by="delta"``:
    the pooled gain over each one's own start, compared per example as our gain minus the peer's, so
    the way each system asks the model (which sets its start) drops out and what is left is what the
    searches added. Both sides are picked on this test, so the leader's margin is if anything
    flattered; the interval is this pair's, p a two-sided sign test on the examples that differ (for
    0/1 scores, the exact McNemar test)."""
    value = final if by == "final" else gains
    out = []
    for dataset in dict.fromkeys(r["dataset"] for r in records):
        recs = [r for r in records if r["dataset"] == dataset and r.get(by) is not None]
        ours = max((r for r in recs if r["ours"]), key=lambda r: r[by], default=None)
        peer = max((r for r in recs if not r["ours"]), key=lambda r: r[by], default=None)
        if ours is None or peer is None:
            continue
        here = [r for r in rows if r["dataset"] == dataset]
        a, b = pairs([r for r in here if r["peer"] == peer["system"]], value, value,
                     [r for r in here if r["peer"] == ours["system"]])
        if not a:
            continue
        p = paired(a, b)
        lo, hi = p["interval"]
        ahead = ours["system"] if lo > 0 else peer["system"] if hi < 0 else None
        out.append({"dataset": dataset, "by": by, "ours": ours["system"], "peer": peer["system"], "n": len(a),
                    f"ours_{by}": _mean(b), f"peer_{by}": _mean(a), "delta": p["delta"], "interval": [lo, hi],
                    "p_value": p["p_value"], "ahead": ahead})
    return out


def floor(result: dict[str, Any], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per task: a constant answer, each seed's most common train+dev label (``result["constant"]``:
    dataset, seed, label, 0/1 per test example), pooled over the seeds' test examples, and the system
    whose returned prompts scored best on test against it on the same examples (best minus constant).
    On a skewed task this is the bar a classifier prompt has to clear before its accuracy says it read
    the input; the constant never sees test, the best system is picked on it (an upper end)."""
    out = []
    for dataset in dict.fromkeys(r["dataset"] for r in records):
        answers = [dict(c, status="ok", test_start=c["test"], test_final=c["test"])
                   for c in result.get("constant", []) if c["dataset"] == dataset and c["test"]]
        if not answers:
            continue
        rec: dict[str, Any] = {"dataset": dataset, "labels": sorted({str(c["label"]) for c in answers}),
                               "seeds": sorted(c["seed"] for c in answers),
                               "n": sum(len(c["test"]) for c in answers),
                               "accuracy": _mean([v for c in answers for v in c["test"]])}
        best = max((r for r in records if r["dataset"] == dataset and r.get("final") is not None),
                   key=lambda r: r["final"], default=None)
        if best is not None:
            a, b = pairs(answers, final, final, [r for r in result["rows"]
                                                  if r["dataset"] == dataset and r["peer"] == best["system"]])
            if a:
                p = paired(a, b)
                rec.update(best=best["system"], best_final=_mean(b), paired_n=len(a), constant_paired=_mean(a),
                           delta=p["delta"], interval=p["interval"], p_value=p["p_value"])
        out.append(rec)
    return out


def _floor_line(f: dict[str, Any]) -> str:
    said = (f"Constant answer (each seed's most common train+dev label: {', '.join(f'`{x}`' for x in f['labels'])}): "
            f"{_pct(f['accuracy'])} on {f['n']} test examples.")
    if f.get("best"):
        said += (f" The best returned prompts ({f['best']}, {_pct(f['best_final'])}) minus it on the same "
                 f"{f['paired_n']} (where it scores {_pct(f['constant_paired'])}): "
                 f"{_delta(f['delta'], f['interval'])}, p {f['p_value']:.3g}.")
    return said


def _model(config: dict[str, Any], role: str) -> str:
    spec, file = config[f"{role}_model"], config.get(f"{role}_model_file")
    return f"`{spec}` ({file})" if file else f"`{spec}`"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _delta(x: float | None, ci: list[float] | None) -> str:
    if x is None:
        return "-"
    return f"{x:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else f"{x:+.3f}"


def verdict(v: dict[str, Any]) -> str:
    said = f"{v['ours']} vs {v['peer']}: {_delta(v['delta'], v['interval'])} on {v['n']} paired test examples"
    if v["ahead"]:
        return f"{said}: {v['ahead']} is ahead (the interval excludes 0)"
    return f"{said}: no real difference (the interval includes 0)"


DUELS = {  # by: (section title, what it says, the compared column)
    "final": ("Our best against the best peer",
              "Per task, our method and the peer whose returned prompts scored best on test (pooled), compared on "
              "the same test examples: ours minus the peer's accuracy, 95% paired bootstrap interval, exact McNemar p. "
              "Both were picked on this test, so read the winner's margin as an upper end. Each system asks the "
              "model in its own way (its start row above), so this mixes the asking with the search.", "final"),
    "delta": ("Our search against the peers' search",
              "Per task, our method and the peer whose searches gained most over their own start (pooled Δ), compared "
              "on the same test examples: per example, our gain (returned minus start: -1, 0 or 1) minus the peer's, "
              "95% paired bootstrap interval, two-sided sign test p. The way each system asks drops out: this says "
              "whose search added more. Both were picked on this test, so read the winner's margin as an upper end.",
              "Δ"),
}


def _number(x: float | None, by: str) -> str:
    return _pct(x) if by == "final" else ("-" if x is None else f"{x:+.3f}")


def markdown(result: dict[str, Any]) -> str:
    c = result["config"]
    records = result["records"]
    lines = [f"# Peers on {c['task_model']}: {', '.join(c['datasets'])}", "",
             f"Task model {_model(c, 'task')} ({'a base model: plain completion, no chat template' if c.get('task_plain') else 'chat'}), "
             f"optimizer / reflection model {_model(c, 'optimizer')}, each behind llama.cpp's server and one counting "
             f"proxy. Seeds {', '.join(map(str, c['seeds']))}; per seed promptgym's split: train {c['train_size']}, "
             f"dev {c['dev_size']}, test {c['test_size']}. Every system may make {c['budget']} calls before its test "
             f"(search and any selection, both models, counted at the proxy); test calls are counted apart. "
             f"Started {c['started']}, {result.get('seconds', 0) / 3600:.1f} h in all.", "",
             "Test accuracy pooled over the seeds' test examples (each system answers and parses in its own way, so "
             "starts differ); Δ: returned minus start, paired, 95% bootstrap interval; p: exact McNemar; worse: runs "
             "whose returned prompt scored below its start on test; calls: before the test, mean per run "
             "(refused past the budget in all runs).", ""]
    unrun = [d for d in c["datasets"] if not any(r["dataset"] == d for r in records)]
    if unrun:  # a run in parts: say what the table does not cover yet
        lines += [f"**Not run yet** (the same command resumes): {', '.join(f'`{d}`' for d in unrun)}.", ""]
    systems = {r["peer"] for r in result["rows"]}
    short = {d: [s for s in c["seeds"] if {r["peer"] for r in result["rows"]
                                            if r["dataset"] == d and r["seed"] == s} != systems]
             for d in c["datasets"] if d not in unrun}
    if any(short.values()):  # a task part-way through its seeds: its numbers cover the rows run
        lines += ["**Not complete yet** (the same command resumes; a task's numbers cover its rows so far): "
                  + ", ".join(f"`{d}` seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))}" for d, seeds in short.items() if seeds)
                  + ".", ""]
    for dataset in dict.fromkeys(r["dataset"] for r in records):
        lines += [f"## `{dataset}`", "",
                  "| system | runs ok | test start | test final | Δ [95% interval] | p | worse | calls/run (refused) | wall s/run |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in records if r["dataset"] == dataset):
            p = "-" if r.get("p_value") is None else f"{r['p_value']:.3g}"
            calls = "-" if r["calls_mean"] is None else f"{r['calls_mean']:.0f} ({r['refused']})"
            wall = "-" if r["wall_seconds_mean"] is None else f"{r['wall_seconds_mean']:.0f}"
            lines.append(f"| {r['system']} | {r['ok']}/{r['runs']} | {_pct(r.get('start'))} | {_pct(r.get('final'))} "
                         f"| {_delta(r.get('delta'), r.get('interval'))} | {p} | {r['worse']}/{r['ok']} | {calls} | {wall} |")
        lines.append("")
        lines += [_floor_line(f) + "\n" for f in result.get("floor", []) if f["dataset"] == dataset]
    duels_of = {"final": result["versus"], "delta": result.get("versus_gain", [])}
    for by, (title, intro, column) in DUELS.items():
        lines += [f"## {title}", "", intro, ""]
        if duels_of[by]:
            lines += [f"| task | ours | peer | ours {column} | peer {column} | ours − peer [95%] | p | ahead |",
                      "|---|---|---|---|---|---|---|---|"]
            for v in duels_of[by]:
                lines.append(f"| `{v['dataset']}` | {v['ours']} | {v['peer']} | {_number(v[f'ours_{by}'], by)} | "
                             f"{_number(v[f'peer_{by}'], by)} | {_delta(v['delta'], v['interval'])} | "
                             f"{v['p_value']:.3g} | {v['ahead'] or 'neither (interval includes 0)'} |")
        else:
            lines.append("No task has a finished run of ours and of a peer.")
        lines.append("")
    lines += ["## Failures and notes", ""]
    for r in records:
        for f in r["failed"]:
            lines.append(f"- **{r['system']}** on `{r['dataset']}`, seed {f['seed']} ({f['status']}): {f['error']}")
        if r["over_budget"]:
            lines.append(f"- **{r['system']}** on `{r['dataset']}`: {r['over_budget']} calls past the budget at the proxy "
                         "(its own cap should have stopped them)")
    notes = [row for row in result["rows"] if finished(row) and row.get("error")]
    for row in notes:
        lines.append(f"- **{row['peer']}** on `{row['dataset']}`, seed {row['seed']} (ok): {row['error']}")
    lines += ["", "## Returned prompts", ""]
    for row in result["rows"]:
        if row.get("final_prompt"):
            text = " ".join(str(row["final_prompt"]).split())
            lines.append(f"- **{row['peer']}**, `{row['dataset']}`, seed {row['seed']}: "
                         f"{text[:200]}{'...' if len(text) > 200 else ''}")
    return "\n".join(lines) + "\n"


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with its ``records``, ``versus``, ``versus_gain`` and ``floor`` (re)computed from its
    rows and its constant answers."""
    records = pool(result["rows"])
    return dict(result, records=records, versus=versus(result["rows"], records),
                versus_gain=versus(result["rows"], records, by="delta"), floor=floor(result, records))
