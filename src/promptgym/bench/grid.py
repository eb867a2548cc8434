"""The benchmark grid: every method x dataset x seed (x task model) on the same work.

A cell is one ``api.optimize`` run. All cells of a bench directory share the settings (budget, split
sizes, final selection, optimizer model) written to its ``bench.json`` on first use, so every row
of the table was bought with the same money. Each cell has its own response cache: with a shared
one a method would be handed another method's answers (the start's training score, say) for free,
in effect a larger budget. Finished cells are appended to ``work/cells.jsonl`` as they end, so an
interrupted bench picks up where it stopped and a finished cell is never run again. A cell that was
killed half-way is found by its cache (each cell's run stores its own cache URL) and its run is
resumed (``api.resume``: the lease says whether its process is gone, the cache replays finished
calls, the ledger carries the budget already spent), so a kill never buys a cell a second budget.

What a bench is made of (variants, cells, settings, its directory) is ``bench.work``; one cell's
run is ``bench.cell``. Who runs the cells is an executor's business (``bench.executors``): one after another in this
process, or spread over a Ray cluster; either way only the process that called ``run_grid`` writes
``cells.jsonl``, and the run store and the caches are shared.

A method that fails in a cell (an error, a crash) is a result too: the row says so, with the error's
last line, and the grid goes on.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable

from promptgym.bench.executors import Executor, InProcess
from promptgym.bench.work import RUN_OPTIONS, BenchDir, Cell, Settings, Variant
from promptgym.data.loaders import load_dataset, load_split_files
from promptgym.errors import PromptgymError
from promptgym.evaluation.selection import DEFAULT_K, plan_selection
from promptgym.optimizers import get_method, method_names

# Datasets with room above the start on the embedded model (benchmarks/results/baselines.md): the
# start scores 0.42 on example:sentiment (4 labels, chance 0.25) and 0.62 on SST-2 (2 labels).
# example:sentiment ships in the package, so the quick preset runs anywhere with no download;
# paper:rlprompt/sst-2 is the RLPrompt / DP2O line's task, downloaded on first use (or built
# offline by benchmarks/data/build.py).
PRESETS: dict[str, dict[str, Any]] = {
    # About 10 minutes here: every method once on one dataset, small splits. A first look only.
    "quick": dict(methods="all", datasets=["example:sentiment"], seeds=[0], budget=100,
                  train_size=20, dev_size=None, test_size=50, select_k=DEFAULT_K),
    # Every method, 3 seeds, on two tasks, at optimize's defaults: budget 300, one finalist on the
    # dev split optimize chooses (75 at budget 300), as issue 23's measurement settled them.
    "full": dict(methods="all", datasets=["example:sentiment", "paper:rlprompt/sst-2"],
                 seeds=[0, 1, 2], budget=300, train_size=20, dev_size=None, test_size=150, select_k=DEFAULT_K),
}
# dev_size None: the split ``optimize`` chooses when --dev-size is left out (see default_dev_size).


def default_dev_size(budget: int, select_k: int, select_level: float) -> int | None:
    """The dev split ``optimize`` takes at ``budget`` when the user gives none (data permitting):
    a bench left to its preset measures what users get. None when the budget cannot pay for
    selection (``check_selection`` then says why, in one line)."""
    try:
        return plan_selection(10**9, budget, None, select_k, select_level).dev_size
    except ValueError:
        return None


def split_list(text: str) -> list[str]:
    """``a,b[x=1,y=2],c`` -> ``["a", "b[x=1,y=2]", "c"]``: commas inside brackets stay."""
    items, depth, current = [], 0, ""
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            items.append(current.strip())
            current = ""
        else:
            current += ch
    items.append(current.strip())
    return [i for i in items if i]


def split_models(text: str) -> list[str]:
    """Model specs separated by commas, a pool's URL list kept whole: an item that starts with
    ``http://`` or ``https://`` (no spec does) continues the pool before it, so
    ``openai:m@http://a/v1,http://b/v1,embedded`` -> ``["openai:m@http://a/v1,http://b/v1", "embedded"]``."""
    models: list[str] = []
    for item in split_list(text):
        if models and item.startswith(("http://", "https://")) and models[-1].startswith("openai:"):
            models[-1] += "," + item
        else:
            models.append(item)
    return models


def parse_variants(spec: str | Iterable[str]) -> list[Variant]:
    """``all`` (every method at its defaults, installed packages' too) or ``METHOD`` / ``METHOD[KEY=VALUE,...]``
    items; values are read as JSON when they parse. A key of ``RUN_OPTIONS`` is a run option, not a
    parameter (``ape[calibrate=true]``). Unknown methods and parameters fail here, in one line,
    before any cell runs."""
    items = split_list(spec) if isinstance(spec, str) else list(spec)
    if items == ["all"]:
        return [Variant(name, name) for name in method_names()]
    out = []
    for item in items:
        method, params = parse_method(item)
        options = {k: params.pop(k) for k in RUN_OPTIONS if k in params}
        for key, value in options.items():
            if not isinstance(value, bool):
                raise PromptgymError(f"--methods '{item}': {key} must be true or false, got {value!r}")
        get_method(method)(**params)  # unknown method or bad parameter: one line now
        out.append(Variant(item if params or options else method, method, params, options))
    return out


def parse_method(item: str, flag: str = "--methods") -> tuple[str, dict[str, Any]]:
    """``METHOD`` or ``METHOD[KEY=VALUE,...]`` -> (method, parameters); values are read as JSON when
    they parse. A malformed item is one line naming ``flag``."""
    method, bracket, rest = item.partition("[")
    if bracket and not rest.endswith("]"):
        raise PromptgymError(f"{flag} '{item}': expected METHOD or METHOD[KEY=VALUE,...]")
    params: dict[str, Any] = {}
    for pair in split_list(rest[:-1]) if bracket else []:
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise PromptgymError(f"{flag} '{item}': expected KEY=VALUE inside the brackets, got '{pair}'")
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    return method.strip(), params


def cells(datasets: list[str], task_models: list[str], layout: str, variants: list[Variant],
          seeds: list[int]) -> list[Cell]:
    """In the order they run: dataset, task model, seed, then method, so a bench stopped early
    has every method on the first seeds rather than a few methods on all of them."""
    return [Cell(d, m, layout, v, s) for d in datasets for m in task_models for s in seeds for v in variants]


def run_grid(bench: BenchDir, settings: Settings, todo: list[Cell], retry_failed: bool = False,
             on_cell: Callable[[dict[str, Any], bool, int, int], None] | None = None,
             executor: Executor | None = None) -> list[dict[str, Any]]:
    """Run the cells not finished yet on ``executor`` (default: one after another in this process);
    returns every row of the asked-for cells (finished before or now), in ``todo`` order.
    ``on_cell(row, ran, number, total)`` is told about each: the ones finished before first, then
    the others as they finish (in ``todo`` order in this process, in any order on a cluster)."""
    check_selection(settings)  # before anything is written: one line, not a failed row per cell
    bench.bind(settings)
    done = {r["key"]: r for r in bench.rows()}
    pending = [c for c in todo if c.key not in done or (retry_failed and done[c.key]["status"] != "ok")]
    if not settings.split_files:  # bad data is one line before any run, not a failed row per cell
        for dataset in dict.fromkeys(c.dataset for c in pending):
            load_dataset(dataset)
    waiting = {c.key for c in pending}
    rows = {c.key: done[c.key] for c in todo if c.key not in waiting}
    number = 0
    for cell in todo:
        if cell.key in rows and on_cell:
            number += 1
            on_cell(rows[cell.key], False, number, len(todo))
    for row in (executor or InProcess()).run(bench, settings, pending):
        bench.append(row)
        rows[row["key"]] = row
        number += 1
        if on_cell:
            on_cell(row, True, number, len(todo))
    return [rows[c.key] for c in todo]


def check_selection(settings: Settings) -> None:
    """Refuse, in one line, settings whose budget cannot pay for final selection: every cell would
    fail with the same error (``api.optimize`` checks each run the same way)."""
    dev_size = settings.dev_size
    files = settings.split_files or {}
    if files:
        if not files.get("dev"):
            return  # selection is off without a dev file
        dev_size = len(load_split_files(files["train"], files.get("dev"), files.get("test")).dev)
    try:
        plan_selection(10**9, settings.budget, dev_size, settings.select_k, settings.select_level)
    except ValueError as exc:
        raise PromptgymError(str(exc)) from None


