"""Write docs/benchmarks.md from the recorded result files; runs no model.

    python benchmarks/make_docs.py

It reads ``benchmarks/results/bench-full/`` and ``bench-quick/`` (``promptgym bench``),
``peers.json`` and ``peers-gemma.json`` (``benchmarks/peers/run.py``), ``throughput-http.json``, ``throughput-pool.json`` and
``bench-warm.json`` (``benchmarks/throughput.py``), copies the bench plots to ``docs/img/bench/`` and writes the page.
A missing file is said on the page ("not recorded yet"), never invented.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs"

FULL_COMMANDS = """```sh
B="--budget 200 --dev-size 30 --test-size 100 --select-k 2"  # the full preset's values then (today it runs at optimize's defaults)
promptgym bench --preset full $B --datasets bigbench:multiemo/all_sentence_en,bigbench:misconceptions \\
    --out benchmarks/results/bench-full
promptgym bench --preset full $B --datasets bigbench:multiemo/all_sentence_en \\
    --task-model gemma3-270m --layout plain --out benchmarks/results/bench-full \\
    --methods "ape,opro,evoprompt-ga,evoprompt-de,protegi,gpo,dp2o,grips[format_edits=false],promptbreeder,rlprompt"
```

GRIPS runs on Gemma with `format_edits=false`: its format edits switch to chat layouts, which a model
without a chat template cannot take (promptgym refuses that run up front). These results were
recorded with BIG-bench's tasks from the bigbench 1.0.0 sdist, which the package index no longer
serves: `bigbench:` now fetches the task files from the BIG-bench repository, so the commands need
the network (or `PROMPTGYM_BIGBENCH_SDIST`). The full preset itself has since moved to data that
loads offline ([benchmarks/README.md](../benchmarks/README.md))."""


def _load(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _tables(results_md: str) -> str:
    """The per-table sections of a bench's results.md, headings one level down, plots dropped."""
    keep, on = [], False
    for line in results_md.splitlines():
        if line.startswith("## "):
            on = True
        if on and not line.startswith("!["):
            keep.append("#" + line if line.startswith("## ") else line)
    return "\n".join(keep).strip()


def _fmt(x: float | None, spec: str = "+.3f") -> str:
    return "-" if x is None else format(x, spec)


def bench_section(full: dict[str, Any] | None, quick: dict[str, Any] | None, results: Path = RESULTS) -> list[str]:
    out = ["## Every method on the same work (`promptgym bench`)", ""]
    if not full:
        return out + ["Not recorded yet: run the commands below.", "", FULL_COMMANDS, ""]
    s, runs, methods = full["meta"]["settings"], full["runs"], full["methods"]
    ok = [r for r in runs if r["status"] == "ok"]
    worse = [r for r in ok if (r["summary"].get("test_delta") or 0) < 0]
    picks_worse = [r for r in ok if r["summary"].get("test_method_best") is not None
                   and r["summary"]["test_method_best"] < r["summary"]["test_initial"]]
    kept = sum(bool(r["summary"].get("kept_start")) for r in ok)
    real = [m for m in methods if m.get("pooled") and m["pooled"].get("q_value", 1) < 0.05]
    models = sorted({r["task_model"] for r in runs})
    datasets = sorted({r["dataset"] for r in runs})
    cold = sum(r["wall_seconds"] for r in runs)
    out += [f"Recorded {full['meta']['date'][:10]} on this 2-core machine: {len({r['method'] for r in runs})} methods "
            f"({len({r['variant'] for r in runs})} variants: defaults, and parameters where the label says), {len(datasets)} datasets ({', '.join(f'`{d}`' for d in datasets)}), seeds "
            f"{', '.join(map(str, full['meta']['seeds']))}, task models {', '.join(f'`{m}`' for m in models)}; budget "
            f"{s['budget']} calls per run (search and final selection), train {s['train_size']}, dev {s['dev_size']}, "
            f"test {s['test_size']}, final selection k {s['select_k']} at level {s['select_level']}; optimizer model "
            f"`{s['optimizer_model']}`. {len(runs)} runs, {len(runs) - len(ok)} failed; "
            f"{cold / 60:.0f} minutes of runs.", "",
            "What it says:", "",
            f"- The start was handed back in {kept} of {len(ok)} runs. The returned prompt was worse than the start "
            f"on test in {len(worse)} of {len(ok)} runs; the methods' own picks, before final selection, in "
            f"{len(picks_worse)} of {len(ok)}.",
            "- Methods whose returned prompt differs from the start at q < 0.05 (pooled over seeds, "
            "Benjamini-Hochberg over each table): " + (", ".join(f"{m['variant']} on `{m['dataset']}` / "
                                                                  f"`{m['task_model']}` ({_fmt(m['pooled']['delta'])})"
                                                                  for m in real) if real else "none") + "."]
    for d in full.get("best_two", []):
        out.append(f"- `{d['dataset']}` / `{d['task_model']}`: best two by mean dev score, {d['first']} vs "
                   f"{d['second']}, on test: {_fmt(d['delta'])} [{_fmt(d['low'])}, {_fmt(d['high'])}], p = {d['p_value']:.3g}.")
    out += ["", "How to read it: Δ test is the returned prompt minus the start on the held-out test split; the pooled "
            "interval treats all seeds' test examples as one paired sample. \"Δ method's pick\" is what the method "
            "itself would have returned without final selection. Where no candidate is better than the start by more "
            "than the dev split can tell, the start comes back: that is the guard working, not a method failing to "
            "run. Ties between methods that all kept the start are listed in the order the methods ran.", ""]
    if len(models) > 1:
        out += cross_model(methods, models), ""
    out += [_tables((results / "bench-full" / "results.md").read_text()), "",
            "![Δ test per method](img/bench/test-delta.png)", "",
            "Δ test per method: the bar is the pooled 95% paired interval, black dots the returned prompt per seed, "
            "red circles the method's own pick before final selection.", "",
            "![Best training score against budget spent](img/bench/train-curve.png)", "",
            "Best score so far on the method's own training batches against the search calls spent, mean over seeds "
            "(methods score batches of different sizes, so compare shapes, not heights across methods).", "",
            "Reproduce (the second command adds the Gemma cells to the same directory; a finished cell is never run "
            "again, so re-running either only rewrites the report):", "", FULL_COMMANDS, ""]
    out += ["### The quick preset", ""]
    if quick:
        q = quick["meta"]["settings"]
        total = sum(r["wall_seconds"] for r in quick["runs"])
        out += [f"`promptgym bench --preset quick` ({len(quick['runs'])} runs: every method once on "
                f"`{quick['runs'][0]['dataset']}`, budget {q['budget']}, train {q['train_size']}, dev {q['dev_size']}, "
                f"test {q['test_size']}, k {q['select_k']}) took {total / 60:.1f} minutes of runs here"
                + (f" ({quick['meta']['wall_clock_seconds'] / 60:.1f} minutes wall clock, loading included)"
                   if quick["meta"].get("wall_clock_seconds") else "")
                + ". A first look at the machinery, not evidence: one seed and 50 test examples.", ""]
    else:
        out += ["Not recorded yet.", ""]
    return out


DELIVER_COMMANDS = """```sh
export PROMPTGYM_PAPER_DATA=DIR   # the papers' tasks, built by benchmarks/data/build.py (or downloaded on first use)
G="--task-model gemma3-270m --layout plain" M="--methods ape,gpo,evoprompt-ga" T="--test-size 150 --train-size 20"
K2="--dev-size 30 --select-k 2"  # final selection before issue 23's measurement
promptgym bench --preset full --datasets example:sentiment,paper:rlprompt/sst-2 --seeds 0,1 --budget 200 $K2 $T $M $G --out deliver-a
promptgym bench --preset full --datasets example:sentiment,paper:rlprompt/sst-2 --seeds 0,1 --budget 200 $K2 $T \\
    --methods "ape[candidate_eval=halving,saved_calls=candidates],evoprompt-ga[candidate_eval=halving,saved_calls=candidates]" \\
    $G --out deliver-b
S="--preset full --datasets example:sentiment,paper:protegi/ethos"
promptgym bench $S --seeds 0,1 --budget 400 $K2 $T $M $G --out deliver-c
# one finalist on a larger dev split, tested on the right option's probability ...
promptgym bench $S --seeds 0,1 --budget 400 --dev-size 90 --select-k 1 --select-statistic probability $T $M $G --out deliver-d
promptgym bench $S --seeds 0,1 --budget 300 --dev-size 75 --select-k 1 --select-statistic probability $T $M $G --out deliver-e
promptgym bench $S --seeds 0,1 --budget 300 --dev-size 75 --select-k 1 --select-statistic probability $T $M --out deliver-e-smol
# ... and on accuracy (today's defaults at budget 300: dev 75, k 1); copy each probability run's
# work/caches/ into the accuracy run's first: the same searches, answered from the cache
promptgym bench $S --seeds 0,1,2 --budget 400 --dev-size 90 --select-k 1 $T $M $G --out deliver-d-acc
promptgym bench $S --seeds 0,1,2 --budget 300 --dev-size 75 --select-k 1 $T $M $G --out deliver-e-acc
promptgym bench $S --seeds 0,1,2 --budget 300 --dev-size 75 --select-k 1 $T $M --out deliver-e-smol-acc
promptgym bench --preset full --datasets paper:rlprompt/mr,paper:protegi/liar --seeds 0,1,2 --budget 300 --dev-size 75 \\
    --select-k 1 $T $M $G --out deliver-h
# every other method at today's defaults, in the same directories (GRIPS's format edits switch to chat
# layouts, which a base model has not: its runs at its defaults fail on Gemma, listed; format_edits=false runs)
O7="opro,protegi,evoprompt-de,promptbreeder,dp2o,rlprompt" O="$O7,grips"
promptgym bench $S --seeds 0,1,2 --budget 300 --dev-size 75 --select-k 1 $T --methods "$O,grips[format_edits=false]" \\
    $G --out deliver-e-acc
promptgym bench --preset full --datasets paper:rlprompt/mr,paper:protegi/liar --seeds 0,1,2 --budget 300 --dev-size 75 \\
    --select-k 1 $T --methods "$O7,grips[format_edits=false]" $G --out deliver-h
promptgym bench $S --seeds 0,1,2 --budget 300 --dev-size 75 --select-k 1 $T --methods "$O" --out deliver-e-smol-acc
# the embedded model on mr + liar, every method, in the same directory
promptgym bench --preset full --datasets paper:rlprompt/mr,paper:protegi/liar --seeds 0,1,2 --budget 300 --dev-size 75 \\
    --select-k 1 $T --methods "ape,gpo,evoprompt-ga,$O" --out deliver-e-smol-acc
# 2x today's default budget (600; dev 100, optimize's default there), every method; measured in parts
# (sentiment + ethos, seeds 0-2 on 2026-12-07, one machine; seed 0 first ran on 2026-12-06 on another
# machine, whose CPU scored the same start 0.353 where this one scores 0.340: the same seed on another
# CPU is another sample, so that run, whose directory is gone, was replaced, not pooled), see below
promptgym bench $S --seeds 0,1,2 --budget 600 --dev-size 100 --select-k 1 $T \\
    --methods "ape,gpo,evoprompt-ga,$O7,grips[format_edits=false]" $G --out deliver-g2x
# mr + liar, seeds 0-2, the same machine (seed 0's first 17 runs on 2026-12-07 morning, the rest after)
promptgym bench --preset full --datasets paper:rlprompt/mr,paper:protegi/liar --seeds 0,1,2 --budget 600 --dev-size 100 \\
    --select-k 1 $T --methods "ape,gpo,evoprompt-ga,$O7,grips[format_edits=false]" $G --out deliver-g2x-mrliar
# the embedded model at 600, every method, the four tasks (120 runs, 2026-12-07, in three parts on the
# machine of the Gemma runs at 600)
promptgym bench --preset full --datasets example:sentiment,paper:protegi/ethos,paper:rlprompt/mr,paper:protegi/liar \\
    --seeds 0,1,2 --budget 600 --dev-size 100 --select-k 1 $T --methods "ape,gpo,evoprompt-ga,$O" --out deliver-e2x
# DP2O once more after its fix (08ef264: before it, a 75-example dev split left its pool empty), in its own directory
promptgym bench $S --seeds 0,1,2 --budget 300 --dev-size 75 --select-k 1 $T --methods dp2o $G --out deliver-e-acc-dp2o
python benchmarks/deliver.py --bench "k 2, dev 30, budget 200=deliver-a" --bench "pools raced=deliver-b" \\
    --bench "2x budget (400), k 2, dev 30=deliver-c" --bench "today's defaults: budget 300, k 1, dev 75=deliver-e-acc" \\
    --bench "today's defaults: budget 300, k 1, dev 75=deliver-e-acc-dp2o" --superseded dp2o=deliver-e-acc \\
    --bench "today's defaults: budget 300, k 1, dev 75=deliver-h" \\
    --bench "today's defaults, embedded model=deliver-e-smol-acc" --bench "2x budget (400), k 1, dev 90=deliver-d-acc" \\
    --bench "budget 300, k 1, dev 75, probability=deliver-e" --bench "the same, embedded model=deliver-e-smol" \\
    --bench "2x budget (400), k 1, dev 90, probability=deliver-d" \\
    --bench "2x today's default (600), k 1, dev 100=deliver-g2x" \\
    --together "today's defaults, both models=today's defaults: budget 300, k 1, dev 75+today's defaults, embedded model" \\
    --together "k 1 on accuracy, every setting=today's defaults: budget 300, k 1, dev 75+today's defaults, embedded model+2x budget (400), k 1, dev 90" \\
    --out benchmarks/results/deliver
python benchmarks/selection_statistic.py $(for d in a b c d e e-smol; do echo --store sqlite:///deliver-$d/work/runs.sqlite; done) \\
    --out benchmarks/results/selection-statistic.json
# Since 2026-12-07 (the directories above went with their machine): the finished settings are carried
# as recorded, and a setting measured in parts saves its runs (per-example test scores) with the
# results, so each part pools with the ones before it
X="2x today's default (600), k 1, dev 100" R=benchmarks/results/deliver-runs/gemma-600.jsonl
E="2x today's default (600), embedded model" RE=benchmarks/results/deliver-runs/embedded-600.jsonl
python benchmarks/deliver.py --carry-rest benchmarks/results/deliver.json --superseded dp2o=deliver-e-acc \\
    --runs "$X=$R" --bench "$X=deliver-g2x" --bench "$X=deliver-g2x-mrliar" --save-runs "$X=$R" \\
    --bench "$E=deliver-e2x" --save-runs "$E=$RE" \\
    --together "today's defaults, both models=today's defaults: budget 300, k 1, dev 75+today's defaults, embedded model" \\
    --together "2x today's default, both models=$X+$E" \\
    --together "k 1 on accuracy, every setting=today's defaults: budget 300, k 1, dev 75+today's defaults, embedded model+2x budget (400), k 1, dev 90" \\
    --out benchmarks/results/deliver
```"""


def deliver_section(results: Path = RESULTS) -> list[str]:
    """Found and delivered (``benchmarks/deliver.py``) and the replay of final selection with each
    statistic (``benchmarks/selection_statistic.py``), when recorded."""
    lines = ["## Found and delivered: how much of a found gain reaches the user", ""]
    deliver = results / "deliver.md"
    if not deliver.exists():
        return lines + ["Not recorded yet (`benchmarks/deliver.py`).", ""]
    body = deliver.read_text().split("\n", 1)[1].strip()  # its own title dropped
    lines += [body.replace("\n## ", "\n### "), ""]
    replay = _load(results / "selection-statistic.json")
    if replay and replay.get("comparable"):
        lines += ["Final selection replayed on the same races with each statistic (no model call; "
                  "`benchmarks/selection_statistic.py`): how often the start would have been replaced, and the "
                  "chosen prompt's test delta (mean over the races whose chosen prompt was scored on test).", "",
                  "| statistic | races | replaced | worse on test | test unknown | mean test Δ |", "|---|---|---|---|---|---|"]
        for r in replay["comparable"]:
            lines.append(f"| {r['statistic']} | {r['runs']} | {r['replaced']} | {r['worse_on_test']} | "
                         f"{r['test_unknown']} | {_fmt(r['mean_test_delta'], '+.4f')} |")
        by = {r["statistic"]: r for r in replay["comparable"]}
        if "accuracy" in by and "probability" in by:
            a, p = by["accuracy"], by["probability"]
            verdict = (f"the probability's extra replacements include {p['worse_on_test']} prompts worse than the start "
                       f"on test against {a['worse_on_test']} for accuracy, so the default stays accuracy"
                       if p["worse_on_test"] > a["worse_on_test"] else
                       "no more regressions than accuracy here; the default stays accuracy until runs on more "
                       "models agree")
            lines += ["", f"What it says: on {a['runs']} races, testing the right option's probability would have "
                          f"replaced the start {p['replaced']} times against {a['replaced']} for accuracy "
                          f"({p['test_unknown']} chose a prompt never scored on test); {verdict}."]
        lines.append("")
    return lines + ["Reproduce:", "", DELIVER_COMMANDS, ""]


def task_kinds_section(results: Path = RESULTS) -> list[str]:
    """Each kind of task users bring, run once end to end (``benchmarks/task_kinds.py``), when recorded."""
    lines = ["## The tasks users bring, end to end", ""]
    found = results / "task-kinds.md"
    if not found.exists():
        return lines + ["Not recorded yet (`python benchmarks/task_kinds.py`).", ""]
    body = found.read_text().split("\n", 1)[1].strip()  # its own title dropped
    return lines + [body, "", "Reproduce: `python benchmarks/task_kinds.py` (the paper tasks need "
                    "`PROMPTGYM_PAPER_DATA`, see docs/data.md).", ""]


def cross_model(methods: list[dict[str, Any]], models: list[str]) -> str:
    """Per dataset measured on several task models: each method's pooled Δ on each."""
    by = {(m["dataset"], m["task_model"], m["variant"]): m for m in methods}
    lines = []
    for dataset in sorted({m["dataset"] for m in methods}):
        have = [mo for mo in models if any(k[0] == dataset and k[1] == mo for k in by)]
        if len(have) < 2:
            continue
        lines += [f"### Does it hold on another model? `{dataset}`", "",
                  "| method | " + " | ".join(f"`{mo}`: start → returned, pooled Δ [95%]" for mo in have) + " |",
                  "|---|" + "---|" * len(have)]
        for variant in dict.fromkeys(m["variant"] for m in methods if m["dataset"] == dataset):
            cells = []
            for mo in have:
                m = by.get((dataset, mo, variant))
                p = m and m.get("pooled")
                cells.append(f"{_fmt(m['test_initial_mean'], '.3f')} → {_fmt(m['test_best_mean'], '.3f')}, "
                             f"{_fmt(p['delta'])} [{_fmt(p['low'])}, {_fmt(p['high'])}]" if p else "-")
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def peers_section(peers: dict[str, Any] | None, results: Path = RESULTS) -> list[str]:
    out = ["## Peers on the same split and budget (`benchmarks/peers/`)", ""]
    if not peers:
        return out + ["Not recorded yet: see benchmarks/peers/README.md.", ""]
    md = results / "peers.md"
    rows = peers.get("rows", [])
    crashed = [r["peer"] for r in rows if r.get("status") != "ok"]
    done = [r for r in rows if r.get("status") == "ok"]
    out += ["What it says: " + (f"{len(crashed)} of {len(rows)} crashed ({', '.join(crashed)}; a crash is a result, "
                                "the peer is not patched). " if crashed else "")
            + f"Of the {len(done)} that finished, "
            + (f"{sum(1 for r in done if (r.get('delta') or 0) != 0)} changed the test score; "
               if any("delta" in r for r in done) else "")
            + "the start scores differ between frameworks because each one's own program answers and parses the "
              "answer its own way (DSPy's adapters expect structured fields and score 0 when this model answers "
              "free-form). promptgym's final selection keeps (k + 1) x dev calls of the budget back, so its methods "
              "search with fewer calls than the peers.", ""]
    replicate = _load(results / "peers-replicate.json")
    if replicate:
        same = all(any(r["peer"] == q["peer"] and r.get("score_start") == q.get("score_start")
                       and r.get("score_final") == q.get("score_final") and r.get("calls_search") == q.get("calls_search")
                       for r in rows) for q in replicate.get("rows", []))
        out += [f"A second run of {', '.join(q['peer'] for q in replicate['rows'])} on its own server "
                f"(`peers-replicate.json`) gave {'the same' if same else 'different'} scores and search calls.", ""]
    out += [md.read_text().split("\n", 1)[1].strip() if md.exists() else "", "",
            "Reproduce: `bash benchmarks/peers/setup.sh`, then `" + _peers_command(peers.get("config", {}), peers.get("rows", [])) + "`.", ""]
    return out


def _peers_command(c: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The recorded run's settings as the command to repeat it (paths of this checkout)."""
    if not c:
        return "see benchmarks/peers/README.md"
    return (f"benchmarks/peers/.venv/bin/python benchmarks/peers/run.py --dataset {c['dataset']} --budget {c['budget']} "
            f"--seed {c['seed']} --train-size {c['train_size']} --dev-size {c['dev_size']} --test-size {c['test_size']} "
            f"--threads {c.get('threads', 2)}"
            + (f" --promptgym-methods {','.join(ours)}" if (ours := [r["peer"].removeprefix("promptgym-") for r in rows
                                                                     if r.get("framework") == "promptgym"]) else ""))


def peers_gemma_section(results: Path = RESULTS) -> list[str]:
    """Peers on Gemma 3 270M over tasks and seeds (``benchmarks/peers/run.py``, ``peers-gemma.json``):
    the table ``benchmarks/peers/table.py`` wrote, with who is ahead on each task in words."""
    out = ["## Peers where there is something to find: Gemma 3 270M (`benchmarks/peers/`)", ""]
    result, md = _load(results / "peers-gemma.json"), results / "peers-gemma.md"
    if not result or not md.exists():
        return out + ["Not recorded yet: the command is in benchmarks/peers/README.md (Gemma 3 270M as task model, "
                      "two tasks, three seeds, equal calls before the test).", ""]
    for key, lead, what in (("versus", "What it says", "in test accuracy"),
                            ("versus_gain", "And in what the search added over its own start", "in gain")):
        said = []
        for v in result.get(key, []):
            lo, hi = v["interval"]
            said.append(f"on `{v['dataset']}`, " + (f"{v['ahead']} is ahead" if v["ahead"] else "neither is ahead")
                        + f" ({v['ours']} minus {v['peer']} {what}: {v['delta']:+.3f} [{lo:+.3f}, {hi:+.3f}], "
                        f"{v['n']} paired test examples)")
        out += [f"{lead}: " + ("; ".join(said) + "." if said else "no task has a finished run of ours and of a peer."),
                ""]
    out += _peers_gemma_starts(result)
    body = md.read_text().split("\n", 1)[1].strip()  # its own title dropped
    out += [body.replace("\n## ", "\n### "), "",
            "Reproduce: `bash benchmarks/peers/setup.sh`, then `" + _peers_gemma_command(result) + "`.", ""]
    return out


def _peers_gemma_starts(result: dict[str, Any]) -> list[str]:
    """Why the two comparisons differ, in the run's own numbers: the same starting instruction scores
    differently per system, because each asks the base model in its own way."""
    said = []
    for dataset in dict.fromkeys(r["dataset"] for r in result.get("records", [])):
        starts = {ours: [r["start"] for r in result["records"] if r["dataset"] == dataset and r["ours"] == ours
                         and r.get("start") is not None] for ours in (True, False)}
        if starts[True] and starts[False]:
            said.append(f"on `{dataset}` ours {min(starts[True]):.3f}-{max(starts[True]):.3f}, "
                        f"the peers' {min(starts[False]):.3f}-{max(starts[False]):.3f}")
    if not said:
        return []
    return ["Every system starts from the same instruction, yet the starts differ (test accuracy, pooled): "
            + "; ".join(said) + ". On a base model the way a prompt is put to the model decides whether it answers "
            "with a label at all: promptgym's plain layout (instruction, input, answer cue) already does, so much "
            "of what a peer's search can add is the format its start lacks (see its returned prompts, some of "
            "them not instructions). The first comparison is what a user gets; the second, whose search added "
            "more. A constant answer under each task's table is the bar a returned prompt has to clear.", ""]


def _peers_gemma_command(result: dict[str, Any]) -> str:
    """The recorded run's settings as the command to repeat it (paths of this checkout)."""
    c, rows = result["config"], result.get("rows", [])
    systems = list(dict.fromkeys(r["peer"] for r in rows))
    peers = [s for s in systems if not s.startswith("promptgym-")]
    ours = [s.removeprefix("promptgym-") for s in systems if s.startswith("promptgym-")]
    return (f"benchmarks/peers/.venv/bin/python benchmarks/peers/run.py --datasets {','.join(c['datasets'])} "
            f"--seeds {','.join(map(str, c['seeds']))} --budget {c['budget']} --train-size {c['train_size']} "
            f"--dev-size {c['dev_size']} --test-size {c['test_size']} --task-model {c['task_model']} "
            f"--optimizer-model {c['optimizer_model']} --peers {shlex.quote(','.join(peers))} "
            f"--promptgym-methods {shlex.quote(','.join(ours))} --out benchmarks/results/peers-gemma.json")


def throughput_section(http: dict[str, Any] | None, warm: dict[str, Any] | None) -> list[str]:
    out = ["## Throughput", ""]
    if http:
        levels = [str(n) for n in http["levels"]]
        out += ["Concurrency on the OpenAI-compatible path against a loopback server that answers every request "
                f"after {http['delay_seconds']:g} s. `generate` and `score` are the real promptgym path "
                "(`Evaluator.run_task` over `OpenAIBackend`, with cache and ledger); `raw` is a bare httpx client, the "
                "ceiling the server and loopback allow. Achieved requests per second as a fraction of ideal "
                f"(in flight / delay), median of {http['repeats']} repeats in one run "
                f"({http['waves']} waves of requests per level):", "",
                "| mode | " + " | ".join(f"{n} in flight" for n in levels) + " |",
                "|---|" + "---|" * len(levels)]
        for mode in http["modes"]:
            out.append(f"| {mode} | " + " | ".join(f"{http['achieved_over_ideal'][mode][n]['median']:.2f}"
                                                   for n in levels) + " |")
        goal = http["goal"]
        out += ["", f"Goal: at least {goal['achieved_over_ideal_at_least']:.0%} of ideal at {goal['in_flight']} in "
                f"flight ({', '.join(goal['modes'])}): {'met' if goal['met'] else 'NOT met'}. Load average before and "
                f"after: {http['machine']['loadavg_before'][0]} / {http['machine']['loadavg_after'][0]}. Reproduce: "
                "`python benchmarks/throughput.py --part http`.", ""]
    else:
        out += ["HTTP concurrency: not recorded yet.", ""]
    if warm:
        out += [f"A warm re-run of the finished full bench (`{warm['command']}`) made {warm['new_calls']} model calls "
                f"and {warm['new_runs']} new runs and took {warm['warm_seconds']:.1f} s, "
                f"{100 * warm['ratio']:.2f}% of the cold runs' {warm['cold_seconds'] / 60:.0f} minutes "
                f"(goal: 0 calls and under 5%: {'met' if warm['goal_met'] else 'NOT met'}).", ""]
    else:
        out += ["Warm re-run of a finished bench: not recorded yet.", ""]
    return out


def pool_section(pool: dict[str, Any] | None) -> list[str]:
    """Pools of 1, 2, 4 loopback endpoints (``throughput.py --part pool``)."""
    out = ["### Pools of endpoints", ""]
    if not pool:
        return out + ["Pools of endpoints: not recorded yet (`python benchmarks/throughput.py --part pool`).", ""]
    out += [f"One model spec listing 1, 2 or 4 loopback servers (one process each, every answer after "
            f"{pool['delay_seconds']:g} s), {pool['limit_per_endpoint']} requests in flight per endpoint, through "
            "`Evaluator.run_task` (generating, one request per example). Ideal = live endpoints x limit / delay; "
            "`1 at N` is one endpoint with the same total in flight, `(1 dead)` a pool whose first URL is a port "
            f"where nothing listens. Median of {pool['repeats']} repeats ({pool['waves']} waves each):", "",
            "| endpoints | in flight | requests | achieved / ideal (min-max) | requests per endpoint | client CPU ms/request |",
            "|---|---|---|---|---|---|"]
    for name in pool["pools"]:
        r = pool["achieved_over_ideal"][name]
        in_flight = pool["live_endpoints"][name] * pool.get("limit_of_pool", {}).get(name, pool["limit_per_endpoint"])
        cpu = pool.get("client_cpu_ms_per_request", {}).get(name)
        cpu_text = f"{sorted(cpu)[len(cpu) // 2]:.1f}" if cpu else "-"
        out.append(f"| {name} | {in_flight} | {pool['requests_per_pool'][name]} | {r['median']:.2f} "
                   f"({r['min']:.2f}-{r['max']:.2f}) | {pool['requests_per_endpoint'][name][-1]} | {cpu_text} |")
    out += ["", f"Load average before and after: {pool['machine']['loadavg_before'][0]} / "
            f"{pool['machine']['loadavg_after'][0]} on {pool['machine']['cpu_count']} CPUs. Reproduce: "
            "`python benchmarks/throughput.py --part pool`.", ""]
    return out


def main(results: Path = RESULTS, docs: Path = DOCS) -> int:
    full = _load(results / "bench-full" / "results.json")
    quick = _load(results / "bench-quick" / "results.json")
    if full:
        (docs / "img" / "bench").mkdir(parents=True, exist_ok=True)
        for png in (results / "bench-full" / "plots").glob("*.png"):
            shutil.copyfile(png, docs / "img" / "bench" / png.name)
    lines = ["# Benchmarks", "",
             "Generated by `python benchmarks/make_docs.py` from the result files under `benchmarks/results/`; "
             "each section gives the command that made its numbers. All runs on this project's 2-core machine "
             "with no GPU; times are only compared within one run.", ""]
    lines += bench_section(full, quick, results)
    lines += deliver_section(results)
    lines += task_kinds_section(results)
    lines += peers_section(_load(results / "peers.json"), results)
    lines += peers_gemma_section(results)
    lines += throughput_section(_load(results / "throughput-http.json"), _load(results / "bench-warm.json"))
    lines += pool_section(_load(results / "throughput-pool.json"))
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "benchmarks.md").write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {docs / 'benchmarks.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
