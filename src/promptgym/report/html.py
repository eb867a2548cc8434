"""A run as one self-contained HTML page (``promptgym report RUN_ID``); a bench's page
(``bench.report``) is drawn with the same templates.

The page is read from the run store only (no model call): the task and models, the starting and
the returned prompt part by part with a word diff, final selection's record, the held-out result in
plain words, the search trajectory, every candidate (sortable, filterable) with its parents and the
operation that made it, the lineage graph, the cost, the test examples that flipped, and DP2O's pool.
Everything the page needs is inside it: CSS, a small script for the table, figures as inline SVG.
Jinja2 autoescapes every value, so text a model wrote shows as text, never as markup.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from promptgym.data.download import no_download
from promptgym.errors import PromptgymError
from promptgym.report import charts
from promptgym.report.tables import METRIC_NAMES, judge_check_line, judge_line
from promptgym.report.trajectory import curve_of, points_of
from promptgym.runner.config import dataset_from_config
from promptgym.store.lease import holder_state, lease_settings
from promptgym.store.runs import CALIBRATION_ROLE
from promptgym.tasks.prompt import Prompt

PLOTS_MISSING = "no figures: matplotlib is not installed (pip install 'promptgym[report]')"


def template_environment() -> Environment:
    """The pages' Jinja2 environment (templates in ``report/templates``; every value autoescaped)."""
    env = Environment(loader=PackageLoader("promptgym.report", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters["num"] = lambda x, spec=".3f": "-" if x is None else format(x, spec)
    env.filters["when"] = lambda t: "-" if t is None else dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")
    env.filters["pretty"] = lambda x: json.dumps(x, indent=1, ensure_ascii=False)
    return env


# -- pieces -------------------------------------------------------------------------------------------
def word_diff(before: str, after: str) -> list[tuple[str, str]]:
    """``[(op, text), ...]`` with op ``same``, ``del`` or ``ins``: a word-level diff (whitespace
    kept with its word, so joining the ``same`` and ``ins`` parts gives ``after`` back)."""
    a, b = re.findall(r"\s*\S+|\s+", before), re.findall(r"\s*\S+|\s+", after)
    out: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(("same", "".join(a[i1:i2])))
        else:
            if i2 > i1:
                out.append(("del", "".join(a[i1:i2])))
            if j2 > j1:
                out.append(("ins", "".join(b[j1:j2])))
    return out


def _demo_text(demo: Any) -> str:
    """One demonstration as ``input -> answer`` (stored as a pair, or as any JSON value)."""
    if isinstance(demo, (list, tuple)) and len(demo) == 2:
        return f"{demo[0]} -> {demo[1]}"
    if isinstance(demo, dict) and {"input", "answer"} <= set(demo):
        return f"{demo['input']} -> {demo['answer']}"
    return json.dumps(demo, ensure_ascii=False)


def _label_words(verbalizers: list[Any] | None) -> str:
    """Stored verbalizers (``[[label, word], ...]``) as ``label: word, ...``; a bare word as itself."""
    return ", ".join(f"{v[0]}: {v[1]}" if isinstance(v, (list, tuple)) and len(v) == 2 else str(v)
                     for v in verbalizers or [])


def _demos_text(demos: list[Any]) -> str:
    return "\n".join(_demo_text(d) for d in demos)


def prompt_parts(start: dict[str, Any], chosen: dict[str, Any]) -> list[dict[str, Any]]:
    """Each part of a prompt (instruction, layout, label words, demonstrations, and the answer mode
    when either reasons first), start vs chosen, with a word diff and whether it changed."""
    def layout(p: dict[str, Any]) -> str:
        lay = p.get("layout") or {}
        lines = [f"name: {lay.get('name', '')}"]
        for key in ("system", "user", "answer_prefix", "demo"):
            if lay.get(key):
                lines.append(f"{key}: {lay[key]}")
        return "\n".join(lines)

    parts = [("instruction", start.get("instruction", ""), chosen.get("instruction", "")),
             ("layout", layout(start), layout(chosen)),
             ("label words", _label_words(start.get("verbalizers")) or "(the labels themselves)",
              _label_words(chosen.get("verbalizers")) or "(the labels themselves)"),
             ("demonstrations", _demos_text(start.get("demos") or []) or "(none)",
              _demos_text(chosen.get("demos") or []) or "(none)")]
    if start.get("reasoning") or chosen.get("reasoning"):
        parts.append(("answer mode", _answer_mode(start), _answer_mode(chosen)))
    return [dict(name=name, start=a, chosen=b, changed=a != b, diff=word_diff(a, b)) for name, a, b in parts]


def _answer_mode(prompt: dict[str, Any]) -> str:
    return "reasoning, then \"Answer: <option>\"" if prompt.get("reasoning") else "direct"


LEVEL = 0.05  # the headline's level: two-sided, on the paired test the summary's p comes from
TEST_NAMES = {"mcnemar-exact": "exact McNemar test", "paired-bootstrap": "paired bootstrap test"}


def _kept_reason(s: dict[str, Any], finalists: list[dict[str, Any]] | None) -> str:
    """Why final selection kept the start, true to the dev scores: a finalist may have scored higher
    on dev without being clearly better (the paired test at the selection level decides)."""
    sel = s.get("selection") or {}
    level, p = sel.get("level"), sel.get("p_value")
    start = next((f for f in finalists or [] if f.get("rank") == -1), None)
    others = [f for f in finalists or [] if f.get("rank") != -1 and f.get("dev_n") and f.get("dev_score") is not None]
    if finalists is not None and not others:
        return "the method offered no other candidate to race it"
    if not others or start is None or not start.get("dev_n") or start.get("dev_score") is None:
        return "no candidate was clearly better on dev"
    best = max(others, key=lambda f: f["dev_score"])
    name = f"#{best['seq']}" if best.get("seq") is not None else "the best finalist"
    detail = f"{name} scored {best['dev_score']:.3f} on dev against your {start['dev_score']:.3f}"
    if p is not None:
        detail += f"; p = {p:.3g}" + (f", needed below {level:g}" if level is not None else "")
    if best["dev_score"] > start["dev_score"]:
        return f"no candidate was clearly better on dev ({detail})"
    return f"no candidate scored higher on dev ({detail})"


def headline(s: dict[str, Any], finalists: list[dict[str, Any]] | None = None,
             test_name: str | None = None) -> dict[str, str]:
    """The one verdict, with how sure it is: ``{"cls", "text"}``. Kept start: final selection's
    decision on dev. Otherwise the two-sided paired test on test (the summary's ``test_p_value``:
    exact McNemar for 0/1 scores, else a paired bootstrap) at 0.05; the bootstrap interval is shown
    below it as detail, never as a second verdict."""
    sel = s.get("selection") or {}
    off = "" if sel.get("enabled", True) or not sel.get("reason") else f"Final selection {sel['reason']}. "
    if s.get("kept_start"):
        return dict(cls="kept", text=f"Your prompt was kept: {_kept_reason(s, finalists)}.")
    n, p, delta = s.get("test_size"), s.get("test_p_value"), s.get("test_delta")
    if p is None or delta is None or s.get("test_initial") is None:
        return dict(cls="", text=off + "No held-out test split: nothing to judge the returned prompt by.")
    if s.get("best_prompt_full") == s.get("initial_prompt_full"):
        return dict(cls="kept", text=off + "The returned prompt is your prompt.")
    how = f"{delta:+.3f} on {n} held-out test examples, p = {p:.3g} ({test_name or 'paired test'}, two-sided)"
    if p < LEVEL:
        word = "Better" if delta > 0 else "Worse"
        return dict(cls="better" if delta > 0 else "worse",
                    text=off + f"{word} than your prompt: {how}. A difference this large would arise by chance "
                               f"less than {LEVEL:.0%} of the time if the prompts were equally good.")
    if abs(delta) < 1e-12:
        return dict(cls="", text=off + f"Not distinguishable from your prompt: the same score on {n} held-out "
                                       f"test examples, {how.split(', ', 1)[1]}.")
    return dict(cls="", text=off + f"Not distinguishable from your prompt: {how}. A difference this large arises "
                                   f"by chance {p * 100:.3g}% of the time between equally good prompts, so these "
                                   f"{n} examples cannot tell the two apart.")


def result_in_words(s: dict[str, Any]) -> str:
    """The held-out result as a sentence a reader without statistics can check: the scores, and the
    bootstrap interval as supporting detail (the verdict is ``headline``'s, from the paired test)."""
    if s.get("test_initial") is None or s.get("test_best") is None:
        return "There was no held-out test split, so nothing can be said about new data."
    n = s.get("test_size")
    if s.get("kept_start") or s.get("best_prompt_full") == s.get("initial_prompt_full"):
        head = (f"Your prompt was handed back. On {n} held-out test examples it scores {s['test_initial']:.3f}.")
        pick = s.get("test_method_best")
        if pick is not None and s.get("method_best_prompt") != s.get("initial_prompt"):
            head += (f" The method's own pick, which final selection did not accept, scores {pick:.3f} there "
                     f"({pick - s['test_initial']:+.3f}).")
        return head
    delta, interval, p = s.get("test_delta"), s.get("test_interval"), s.get("test_p_value")
    text = (f"On {n} held-out test examples, which the search never saw, your prompt scores "
            f"{s['test_initial']:.3f} and the returned prompt {s['test_best']:.3f}: {delta:+.3f}.")
    if interval:
        low, high = interval
        text += (f" Supporting detail: the 95% paired bootstrap interval of the difference is "
                 f"[{low:+.3f}, {high:+.3f}].")
        if p is not None and (p < LEVEL) != (low > 0 or high < 0):
            text += (" It and the paired test disagree here, as they can on few examples; the verdict above "
                     "is the paired test's.")
    return text


def _latest(scores: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (candidate, split): the score row on the most examples (the last such row)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for row in scores:
        key = (row["candidate_id"], row["split"])
        if key not in out or row["n"] >= out[key]["n"]:
            out[key] = row
    return out


def _cost(calls: list[dict[str, Any]], summary: dict[str, Any] | None) -> dict[str, Any]:
    """The ledger by phase: search (optimizer model, task model, a judge), final selection, held-out
    (task model, a judge); the judge's phases only for a run that had a judge."""
    phases = {"search: writing prompts": lambda c: c["role"] == "optimizer",
              "search: scoring prompts": lambda c: c["role"] == "task" and c["charged"],
              "search: content-free inputs (calibration)": lambda c: c["role"] == CALIBRATION_ROLE and c["charged"],
              "search: judging answers": lambda c: c["role"] == "judge" and c["charged"],
              "final selection": lambda c: c["role"] == "select",
              "held-out evaluation (not charged)": lambda c: c["role"] in ("task", CALIBRATION_ROLE) and not c["charged"],
              "held-out evaluation: judging (not charged)": lambda c: c["role"] == "judge" and not c["charged"]}
    if not any(c["role"] == CALIBRATION_ROLE for c in calls):  # a run that did not calibrate has no such row
        del phases["search: content-free inputs (calibration)"]
    rows = []
    for name, belongs in phases.items():
        mine = [c for c in calls if belongs(c) and c["kind"] != "embed"]
        if "judg" in name and not mine:
            continue  # a run without a judge keeps its table as it was
        made = [c for c in mine if not c["cached"]]
        rows.append(dict(phase=name, calls=len(made), cached=len(mine) - len(made),
                         prompt_tokens=sum(c["prompt_tokens"] for c in made),
                         completion_tokens=sum(c["completion_tokens"] for c in made),
                         seconds=sum(c["seconds"] for c in made)))
    embeds = [c for c in calls if c["kind"] == "embed"]
    faults: dict[str, int] = {}
    for c in calls:
        for kind, n in (json.loads(c["faults"]) if c.get("faults") else {}).items():
            faults[kind] = faults.get(kind, 0) + int(n)
    total = dict(phase="all", **{k: sum(r[k] for r in rows) for k in
                                 ("calls", "cached", "prompt_tokens", "completion_tokens", "seconds")})
    return dict(rows=rows, total=total, embeddings=len([c for c in embeds if not c["cached"]]),
                cached_embeddings=len([c for c in embeds if c["cached"]]), faults=faults,
                wall_seconds=(summary or {}).get("seconds"), budget=(summary or {}).get("budget"),
                budget_used=(summary or {}).get("budget_used"))


def _examples_by_id(config: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The dataset's examples by id (to show a flipped example's input), or why not."""
    try:
        with no_download():
            return {e.id: e for e in dataset_from_config(config).examples}, ""
    except (PromptgymError, OSError) as exc:
        return {}, f"inputs not shown: the dataset could not be read here ({str(exc).splitlines()[0]})"


def flipped(latest: dict[tuple[str, str], dict[str, Any]], a: str, b: str,
            examples: dict[str, Any]) -> list[dict[str, Any]]:
    """Test examples whose score differs between candidates ``a`` and ``b``."""
    ra, rb = latest.get((a, "test")), latest.get((b, "test"))
    if not ra or not rb:
        return []
    out = []
    for eid, sa in ra["per_example"].items():
        sb = rb["per_example"].get(eid)
        if sb is None or sb == sa:
            continue
        e = examples.get(eid)
        out.append(dict(id=eid, input=e.input if e else None, target=" | ".join(e.targets) if e else None,
                        start_score=sa, chosen_score=sb, start_answer=ra["predictions"].get(eid, ""),
                        chosen_answer=rb["predictions"].get(eid, "")))
    return sorted(out, key=lambda r: (r["chosen_score"] - r["start_score"], r["id"]))


def _dp2o(store: Any, run_id: str, summary: dict[str, Any] | None, seq: dict[str, int]) -> dict[str, Any] | None:
    """DP2O's pool: each prompt's screening score, dev accuracy, and how often the policy picked it
    on the test inputs (stored by runs made since the report existed)."""
    artifact = store.get_artifact(run_id, "dp2o")
    if not artifact:
        return None
    report = (summary or {}).get("dp2o") or {}  # a method's own held-out numbers sit at the top
    chosen = report.get("policy_choices") or []
    pool = []
    sue = artifact.get("pool_sue") or []
    for i, p in enumerate(artifact.get("pool") or []):
        prompt = Prompt.from_dict(p)
        pool.append(dict(index=i, seq=seq.get(prompt.id), instruction=prompt.instruction,
                         demos=len(prompt.demos), screening=sue[i] if i < len(sue) else None,
                         chosen=chosen[i] if i < len(chosen) else None, best=i == artifact.get("best_index")))
    return dict(pool=pool, report=report, has_choices=bool(chosen))


def _live(run: dict[str, Any]) -> dict[str, Any] | None:
    """Who holds a running run whose lease is live (a resume would be refused), else None."""
    if run.get("status") != "running" or holder_state(run, lease_settings()[1]) != "live":
        return None
    return dict(pid=run.get("owner_pid"), host=run.get("owner_host"), heartbeat=run.get("heartbeat"))


# -- the run page ----------------------------------------------------------------------------------------
def judge_check_text(check: dict[str, Any] | None) -> dict[str, Any] | None:
    """A judged run's held-out check against the references, in words: the warning of the terminal
    table when the returned prompt is clearly worse there, else the scores as supporting detail."""
    if not check:
        return None
    if check.get("error"):
        return dict(flagged=False, text=f"The check against the references could not be made: {check['error']}")
    if check.get("flagged"):
        line = judge_check_line(check)
        return dict(flagged=True, text=line[0].upper() + line[1:] + ".")
    name = METRIC_NAMES.get(check["metric"], check["metric"])
    return dict(flagged=False, text=(
        f"Judge check: against the test examples' references, by {name}, "
        f"your prompt scores {check['start']:.3f} and the returned prompt {check['returned']:.3f}: "
        f"{check['delta']:+.3f} [{check['low']:+.3f}, {check['high']:+.3f}], 95% paired bootstrap interval. "
        "The search optimized the judge's score, never this one, so a judge it gamed would show here."))


def run_page_data(store: Any, run_id: str) -> dict[str, Any]:
    """Everything the run page shows, as plain data (the template only lays it out)."""
    run = store.get_run(run_id)
    config, summary = run["config"], run["result"]
    cands = store.candidates(run_id)
    scores = store.scores(run_id)
    calls = store.call_rows(run_id)  # read once: the trajectory, the curve and the cost use them
    latest = _latest(scores)
    seq = {c["candidate_id"]: c["seq"] for c in cands}
    start_id = next((c["candidate_id"] for c in cands if c["operation"] == "initial"), None)
    chosen_id = run.get("best_candidate")
    # the method's own pick, when final selection did not return it: the other prompt scored on test
    pick_id = next((cid for (cid, split) in latest if split == "test" and cid not in (start_id, chosen_id)), None)
    selection = (summary or {}).get("selection") or {}
    finalists = {f["candidate_id"]: f for f in selection.get("candidates", [])}
    shown = {"train", "dev", "select", "train-final", "test"}  # the table's and the result's columns
    extra_splits = sorted({split for _, split in latest if split not in shown and not split.startswith("train")})

    def role(cid: str) -> str:
        return ("chosen" if cid == chosen_id and cid != start_id else "start" if cid == start_id
                else "pick" if cid == pick_id else "other")

    def train_score(cid: str) -> dict[str, Any] | None:
        """The search's training score; for a candidate the search never scored (your prompt, under
        methods that score only their own candidates) the score on the full training split after
        the search, so no scored prompt is drawn as unscored."""
        rows = [r for (c, split), r in latest.items() if c == cid and split.startswith("train")
                and split != "train-final"]
        return max(rows, key=lambda r: (r["n"], r["id"]), default=latest.get((cid, "train-final")))

    table = []
    for c in cands:
        cid = c["candidate_id"]
        train = train_score(cid)
        table.append(dict(
            seq=c["seq"], id=cid, operation=c["operation"], role=role(cid),
            parents=[seq[p] for p in c["parents"] if p in seq], instruction=c["prompt"].get("instruction", ""),
            layout=(c["prompt"].get("layout") or {}).get("name", "") + (" +reasoning" if c["prompt"].get("reasoning") else ""),
            verbalizers=_label_words(c["prompt"].get("verbalizers")), demos=len(c["prompt"].get("demos") or []),
            demo_texts=[_demo_text(d) for d in c["prompt"].get("demos") or []],
            train=train["score"] if train else None, train_n=train["n"] if train else None,
            dev=(latest.get((cid, "select")) or latest.get((cid, "dev")) or {}).get("score"),
            test=(latest.get((cid, "test")) or {}).get("score"),
            finalist=cid in finalists, dropped_after=(finalists.get(cid) or {}).get("dropped_after"),
            created=c["created"]))
    points = points_of(calls, scores)
    curve = curve_of(calls, scores)
    batch = max((p["n"] for p in points), default=0)
    examples, examples_note = ({}, "") if not summary else _examples_by_id(config)
    flip_against = chosen_id if chosen_id and chosen_id != start_id else pick_id
    flips = flipped(latest, start_id, flip_against, examples) if start_id and flip_against else []
    start_train = next((r["train"] for r in table if r["id"] == start_id), None)
    tests = {role(cid): r["score"] for (cid, split), r in latest.items() if split == "test"}
    binary = all(v in (0, 1) for (_, split), r in latest.items() if split == "test" for v in r["per_example"].values())
    test_name = TEST_NAMES["mcnemar-exact" if binary else "paired-bootstrap"]
    figures: dict[str, str] = {}
    figures_note = ""
    try:
        if points:
            figures["trajectory"] = charts.trajectory(points, curve, seq, start_train, batch, tests,
                                                      bool(summary) and chosen_id in (None, start_id))
        figures["lineage"] = charts.lineage([dict(seq=r["seq"], parents=r["parents"], score=r["train"],
                                                  role=r["role"]) for r in table])
    except ImportError:
        figures_note = PLOTS_MISSING
    dp2o = _dp2o(store, run_id, summary, seq)
    finalists_seq = [dict(f, seq=seq.get(f["candidate_id"])) for f in selection.get("candidates", [])]
    if dp2o and dp2o["has_choices"] and not figures_note:
        figures["dp2o"] = charts.bars([f"pool prompt {p['index']}" for p in dp2o["pool"]],
                                      [p["chosen"] or 0 for p in dp2o["pool"]],
                                      "test inputs for which the policy chose it",
                                      next((p["index"] for p in dp2o["pool"] if p["best"]), None))
    return dict(
        run=run, config=config, summary=summary, table=table, extra_splits=extra_splits,
        operations=sorted({r["operation"] for r in table}), start_id=start_id, chosen_id=chosen_id,
        pick_id=pick_id, seq=seq, pick_row=next((r for r in table if r["id"] == pick_id), None),
        parts=prompt_parts(summary["initial_prompt_full"], summary["best_prompt_full"]) if summary else [],
        pick_parts=(prompt_parts(summary["initial_prompt_full"],
                                 next(c["prompt"] for c in cands if c["candidate_id"] == pick_id))
                    if summary and pick_id else []),
        words=result_in_words(summary) if summary else None, selection=selection,
        judge_line=judge_line(summary["judge"]) if summary and summary.get("judge") else None,
        judge_check=judge_check_text(((summary or {}).get("judge") or {}).get("reference_check")),
        headline=headline(summary, finalists_seq, test_name) if summary else None, live=_live(run),
        finalists=finalists_seq,
        # runs stored before a race-less selection said None there recorded 0.0: not a dev score
        raced_on_dev=any(f.get("dev_n") for f in selection.get("candidates", [])),
        cost=_cost(calls, summary), flips=flips,
        flip_counts=dict(better=sum(f["chosen_score"] > f["start_score"] for f in flips),
                         worse=sum(f["chosen_score"] < f["start_score"] for f in flips)),
        flips_against=role(flip_against) if flip_against else None,
        examples_note=examples_note, figures=figures, figures_note=figures_note, dp2o=dp2o,
        params=config.get("params") or {}, generated=dt.datetime.now().isoformat(timespec="seconds"))


def render_run(data: dict[str, Any]) -> str:
    return template_environment().get_template("run.html").render(**data)


def write_run_report(store: Any, run_id: str, out: str | Path) -> Path:
    path = Path(out)
    path.write_text(render_run(run_page_data(store, run_id)), encoding="utf-8")
    return path
