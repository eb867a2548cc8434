"""Rich tables. Honest by construction: the verdict line compares held-out numbers only."""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

console = Console()


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _e(value: Any) -> str:
    return str(value)


def _row(table: Table, *cells: str) -> None:
    """Cells as literal Text: '[bold]' or a backslash in data or model output is not rich markup
    (``rich.markup.escape`` misses '\\[' and other non-tag brackets)."""
    table.add_row(*(Text(c) for c in cells))


def _print(text: str) -> None:
    """A line of text: wrapped at a terminal's width; whole elsewhere (a pipe or a file keeps it on
    one line, for grep)."""
    console.print(Text(text), soft_wrap=not console.is_terminal)


def _table(table: Table) -> None:
    """A table at a terminal's width; elsewhere (a pipe, a file) at its natural width, so nothing is
    cut or dropped at rich's default of 80 columns."""
    if console.is_terminal:
        console.print(table)
    else:
        Console(file=console.file, width=max(_natural_width(table), 20), no_color=True).print(table)


def _natural_width(table: Table) -> int:
    """The width the table takes with no limit: every cell on its line, nothing folded or cut."""
    return Measurement.get(console, console.options.update_width(100_000), table).maximum


def summary_table(s: dict[str, Any]) -> None:
    table = Table(title=Text(f"run {_e(s['run_id'])}: {_e(s['method'])} on {_e(s['dataset'])}"))
    table.add_column("prompt")
    table.add_column(f"train ({s['train_size']})", justify="right")
    table.add_column(f"test ({s['test_size']}, held out)", justify="right")
    _row(table, f"initial: {_e(s['initial_prompt'])}", _fmt(s["initial_score"]), _fmt(s["test_initial"]))
    _row(table, f"returned: {_e(s['best_prompt'])}", _fmt(s["best_score"]), _fmt(s["test_best"]))
    if s.get("method_best_prompt") not in (None, s["best_prompt"]):  # the guard overruled the method
        _row(table, f"method's pick: {_e(s['method_best_prompt'])}", "", _fmt(s.get("test_method_best")))
    _table(table)
    fields = s.get("field_scores") or {}
    if fields.get("start"):
        per_field = ", ".join(f"{_e(name)} {_fmt(score)} -> {_fmt(fields['returned'].get(name))}"
                              for name, score in fields["start"].items())
        _print(f"per field on test (initial -> returned): {per_field}")
    selection = s.get("selection") or {}
    if selection.get("enabled"):
        n = len(selection.get("candidates", [])) - 1
        _print(f"final selection: {n} finalist{'' if n == 1 else 's'} raced your prompt on "
                      f"{s['dev_size']} dev examples (dev {_fmt(s['dev_initial'])} -> {_fmt(s['dev_best'])}), "
                      f"{selection.get('calls', 0)} calls")
        if (selection.get("race") or {}).get("sentence"):
            _print(f"sequential race: {_e(selection['race']['sentence'])}")
    if (selection.get("reasoning") or {}).get("sentence"):
        _print(f"answer mode: {_e(selection['reasoning']['sentence'])}")
    elif s.get("answer_mode") == "reasoning":
        _print("answer mode: the returned prompt reasons before it answers (its reply ends with 'Answer: <option>')")
    if s.get("verdict"):
        interval = s.get("test_interval")
        held_out = (f"; test {s['test_delta']:+.3f}, 95% interval [{interval[0]:+.3f}, {interval[1]:+.3f}]"
                    if interval and s.get("test_delta") is not None else "")
        _print(f"Result: {_e(s['verdict'])}{held_out}.")
        if s.get("test_share_better") is not None:
            _print(f"The returned prompt beat yours in {s['test_share_better']:.0%} of paired bootstrap resamples "
                   "of the test examples (held-out evidence, not a posterior probability).")
        if (s.get("detectable") or {}).get("sentence"):
            _print(f"What the dev split could show: {_e(s['detectable']['sentence'])}.")
    elif s["test_best"] is not None and s["test_initial"] is not None:  # a run stored before final selection
        delta = s["test_best"] - s["test_initial"]
        verdict = ("better than" if delta > 0 else "no better than") + " the starting prompt on held-out data"
        _print(f"The best prompt is {verdict} ({delta:+.3f}).")
    if s.get("calibration"):
        _print(calibration_line(s["calibration"]))
    judge = s.get("judge")
    if judge:
        _print(f"judge: {judge_line(judge)}")
        if (judge.get("reference_check") or {}).get("flagged"):
            _print(judge_check_line(judge["reference_check"]))
    used = s["budget_used"] - selection.get("calls", 0)
    _print(f"model calls {s['llm_calls']} (budget {s['budget']}: search used {used}, final selection "
                  f"{selection.get('calls', 0)}), "
                  f"cached {s['cached_calls']}, tokens {s['prompt_tokens']}+{s['completion_tokens']}, "
                  f"{s['seconds']:.1f} s")


METRIC_NAMES = {"rouge-l": "ROUGE-L", "token-f1": "token F1", "exact-match": "exact match"}


def judge_line(judge: dict[str, Any]) -> str:
    """Who judged a run's answers, against what, at what cost, and what its guards caught."""
    guards = ", ".join(f"{judge[k]} {label}" for k, label in (
        ("unparsed", "unreadable replies scored 0"), ("rubric_copies", "copies of the rubric scored 0"),
        ("empty", "empty answers scored 0"), ("cut", "answers cut to the length limit")) if judge.get(k))
    return (f"{_e(judge['model'])} scored {judge['answers']} distinct answers against "
            f"{_e(judge['rubric'] or 'the rubric given as text')} ({judge['calls']} judge calls, "
            f"{judge['cached_calls']} cached{'; ' + guards if guards else ''})")


def judge_check_line(check: dict[str, Any]) -> str:
    """The warning of a judged run whose returned prompt the references score clearly lower."""
    name = METRIC_NAMES.get(check["metric"], check["metric"])
    return (f"judge check: the returned prompt scores lower against the references ({_e(name)} "
            f"{check['start']:.3f} -> {check['returned']:.3f}, {check['delta']:+.3f} [{check['low']:+.3f}, "
            f"{check['high']:+.3f}]): the judge may have been gamed; compare the answers before using it")


def calibration_line(calibration: dict[str, Any]) -> str:
    """That a run's choice scores are calibrated, how, and the returned prompt's prior."""
    inputs = ", ".join(repr(t) for t in calibration.get("content_free_inputs") or [])
    prior = calibration.get("prior_best") or {}
    shown = ", ".join(f"{_e(label)} {p:.2f}" for label, p in prior.items())
    return (f"Scores are calibrated: each option's probability divided by the prompt's prior for it, read from "
            f"the content-free inputs {inputs}" + (f"; the returned prompt's prior: {shown}." if shown else "."))


RUNS_COLUMNS = ("run_id", "created", "method", "dataset", "status", "best_score", "test start -> returned",
                "delta", "kept start", "calls")


def _runs_cells(r: dict[str, Any]) -> list[str]:
    created = dt.datetime.fromtimestamp(r["created"]).strftime("%Y-%m-%d %H:%M")
    test = ("-" if r.get("test_best") is None else f"{_fmt(r.get('test_initial'))} -> {_fmt(r['test_best'])}")
    delta = "-" if r.get("test_delta") is None else f"{r['test_delta']:+.3f}"
    kept = {True: "yes", False: "no"}.get(r.get("kept_start"), "-")
    return [_e(r["run_id"]), created, _e(r["method"]), _e(r["dataset"]), _e(r["status"]), _fmt(r["best_score"]),
            test, delta, kept, _fmt(r.get("llm_calls"))]


def runs_table(rows: list[dict[str, Any]], filtered: bool = False) -> None:
    """One run a row; the held-out columns (test start -> returned, delta) are '-' until a run finishes.
    At a terminal too narrow for the table (80 columns), one block of three lines a run instead;
    no runs: one line that says so (``filtered``: none passed the filters)."""
    if not rows:
        _print("no runs match these filters (see: promptgym runs --help)" if filtered else
               "no runs yet (start one: promptgym optimize --help)")
        return
    table = Table()
    for i, col in enumerate(RUNS_COLUMNS):
        table.add_column(col, justify="right" if i >= 6 else "left")
    cells = [_runs_cells(r) for r in rows]
    for row in cells:
        _row(table, *row)
    if not console.is_terminal or _natural_width(table) <= console.width:
        _table(table)
        return
    for run_id, created, method, dataset, status, train, test, delta, kept, calls in cells:
        _print(f"{run_id}  {created}  {method}  {status}")
        console.print(Text(f"  {dataset}", overflow="fold"))  # a long path folds
        _print(f"  train {train} | test {test} | delta {delta} | kept start {kept} | calls {calls}")


def candidates_table(run: dict[str, Any], candidates: list[dict[str, Any]], scores: list[dict[str, Any]]) -> None:
    latest: dict[tuple[str, str], float] = {}
    for row in scores:
        latest[(row["candidate_id"], row["split"])] = row["score"]
    splits = sorted({split for _, split in latest})
    table = Table(title=Text(f"run {_e(run['run_id'])} ({_e(run['method'])}, {_e(run['status'])})"))
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("parents", no_wrap=True)
    table.add_column("operation", no_wrap=True)
    table.add_column("instruction", ratio=1, min_width=30, overflow="fold")
    for split in splits:
        table.add_column(split, justify="right", no_wrap=True)
    seq = {c["candidate_id"]: str(c["seq"]) for c in candidates}
    for c in candidates:
        marker = " *" if c["candidate_id"] == run.get("best_candidate") else ""
        parents = ",".join(seq.get(p, p[:8]) for p in c.get("parents") or ()) or "-"
        reasons = " [reasons first]" if (c.get("prompt") or {}).get("reasoning") else ""
        _row(table, str(c["seq"]) + marker, parents, _e(c["operation"]), _e(c["instruction"]) + reasons,
             *[_fmt(latest.get((c["candidate_id"], s))) for s in splits])
    _table(table)
    _print("#: candidate (* the returned prompt); parents: the candidates it was made from"
           + ("; [reasons first]: it reasons before its answer (--reasoning)"
              if any((c.get("prompt") or {}).get("reasoning") for c in candidates) else ""))
    if (run.get("config") or {}).get("calibrate"):
        _print("scores are calibrated: each option's probability divided by the prompt's prior for it "
               "(contextual calibration, from content-free inputs)")


def compare_table(record: dict[str, Any]) -> None:
    """Two runs side by side, then the paired test of their returned prompts (or why there is none)."""
    a, b = record["a"], record["b"]
    table = Table(title=Text(f"run {_e(a['run_id'])} (A) against run {_e(b['run_id'])} (B)"))
    table.add_column("")
    table.add_column("A", overflow="fold")
    table.add_column("B", overflow="fold")

    def scores(s: dict[str, Any], start: str, returned: str) -> str:
        return f"{_fmt(s[start])} -> {_fmt(s[returned])}"

    def interval(s: dict[str, Any]) -> str:
        if s.get("test_delta") is None:
            return "-"
        low_high = s.get("test_interval")
        return f"{s['test_delta']:+.3f}" + (f" [{low_high[0]:+.3f}, {low_high[1]:+.3f}]" if low_high else "")

    rows = [
        ("method", lambda s: _e(s["method"])),
        ("dataset", lambda s: _e(s["dataset"])),
        ("task model", lambda s: _e(s["task_model"])),
        ("optimizer model", lambda s: _e(s["optimizer_model"])),
        ("seed", lambda s: _e(s["seed"])),
        ("budget (used)", lambda s: f"{_e(s['budget'])} ({_e(s['budget_used'])})"),
        ("model calls (cached)", lambda s: f"{_e(s['llm_calls'])} ({_e(s['cached_calls'])})"),
        ("tokens", lambda s: f"{_e(s['prompt_tokens'])}+{_e(s['completion_tokens'])}"),
        ("time", lambda s: "-" if s["seconds"] is None else f"{s['seconds']:.1f} s"),
        ("start prompt", lambda s: _e(s["initial_prompt"])),
        ("returned prompt", lambda s: _e(s["best_prompt"])),
        ("splits train/dev/test", lambda s: f"{_e(s['train_size'])}/{_e(s['dev_size'])}/{_e(s['test_size'])}"),
        ("train start -> returned", lambda s: scores(s, "initial_score", "best_score")),
        ("dev start -> returned", lambda s: scores(s, "dev_initial", "dev_best")),
        ("test start -> returned", lambda s: scores(s, "test_initial", "test_best")),
        ("test delta [95%]", interval),
        ("kept start", lambda s: _e(s["kept_start"]) if s["kept_start"] is not None else "-"),
        ("verdict", lambda s: _e(s["verdict"] or "-")),
    ]
    for name, cell in rows:
        _row(table, name, cell(a), cell(b))
    _table(table)
    paired = record.get("paired")
    if paired is None:
        _print(_e(record.get("paired_note")))
        return
    test = "exact McNemar" if paired["test"] == "mcnemar-exact" else "paired bootstrap"
    _print(f"returned prompts on the same {paired['n']} test examples: B - A = {paired['delta']:+.3f}, "
           f"95% paired bootstrap interval [{paired['low']:+.3f}, {paired['high']:+.3f}], "
           f"p = {paired['p_value']:.3g} ({test}, two-sided)")
