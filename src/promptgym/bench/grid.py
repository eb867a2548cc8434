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

Who runs the cells is an executor's business (``bench.executors``): one after another in this
process, or spread over a Ray cluster; either way only the process that called ``run_grid`` writes
``cells.jsonl``, and the run store and the caches are shared.

A method that fails in a cell (an error, a crash) is a result too: the row says so, with the error's
last line, and the grid goes on.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from promptgym.errors import PromptgymError
from promptgym.report.trajectory import train_curve

if TYPE_CHECKING:
    from promptgym.bench.executors import Executor

# Datasets with room above the start on the embedded model (benchmarks/results/baselines.md): the
# start scores 0.42 on example:sentiment (4 labels, chance 0.25) and 0.62 on SST-2 (2 labels).
# example:sentiment ships in the package, so the quick preset runs anywhere with no download;
# paper:rlprompt/sst-2 is the RLPrompt / DP2O line's task, downloaded on first use (or built
# offline by benchmarks/data/build.py).
PRESETS: dict[str, dict[str, Any]] = {
    # About 10 minutes here: every method once on one dataset, small splits. A first look only.
    "quick": dict(methods="all", datasets=["example:sentiment"], seeds=[0], budget=100,
                  train_size=20, dev_size=20, test_size=50, select_k=2),
    # Every method, 3 seeds, on two tasks (docs/benchmarks.md has the recorded run and its data).
    "full": dict(methods="all", datasets=["example:sentiment", "paper:rlprompt/sst-2"],
                 seeds=[0, 1, 2], budget=200, train_size=20, dev_size=30, test_size=100, select_k=2),
}
SETTING_KEYS = ("budget", "train_size", "dev_size", "test_size", "select_k", "select_level",
                "optimizer_model", "split_files", "select_sequential")
SETTING_DEFAULTS = {"select_sequential": False}  # settings added later: what a bench.json without them meant


@dataclass(frozen=True)
class Variant:
    """A method with fixed parameters; ``label`` names it in tables (``protegi[selector=uniform]``)."""

    label: str
    method: str
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Cell:
    dataset: str
    task_model: str
    layout: str
    variant: Variant
    seed: int

    @property
    def key(self) -> str:
        return f"{self.dataset}|{self.task_model}|{self.layout}|{self.variant.label}|s{self.seed}"

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in self.key)


@dataclass
class Settings:
    """What every cell of one bench directory shares."""

    budget: int
    train_size: int | None  # None with split files: the files' rows
    dev_size: int | None
    test_size: int | None
    select_k: int
    select_level: float
    optimizer_model: str
    split_files: dict[str, str] | None = None  # {"train": PATH, "dev": PATH, "test": PATH}
    select_sequential: bool = False


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
    """``all`` (every registered method at its defaults) or ``METHOD`` / ``METHOD[KEY=VALUE,...]``
    items; values are read as JSON when they parse. Unknown methods and parameters fail here, in
    one line, before any cell runs."""
    from promptgym.optimizers import REGISTRY, get_method

    items = split_list(spec) if isinstance(spec, str) else list(spec)
    if items == ["all"]:
        return [Variant(name, name) for name in REGISTRY]
    out = []
    for item in items:
        method, params = parse_method(item)
        get_method(method)(**params)  # unknown method or bad parameter: one line now
        out.append(Variant(item if params else method, method, params))
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


class BenchDir:
    """A bench directory: ``bench.json`` (settings), ``work/`` (run store, one cache per cell,
    ``cells.jsonl``), and the report files the report module writes next to them."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.work = self.path / "work"
        self.cells_file = self.work / "cells.jsonl"

    @property
    def store_url(self) -> str:
        return f"sqlite:///{self.work / 'runs.sqlite'}"

    def cache_url(self, cell: Cell) -> str:
        return f"sqlite:///{self.work / 'caches' / (cell.slug + '.sqlite')}"

    def bind(self, settings: Settings) -> None:
        """Write the settings on first use; later benches in the same directory must match them."""
        manifest = self.path / "bench.json"
        mine = {k: getattr(settings, k) for k in SETTING_KEYS}
        if manifest.exists():
            try:
                theirs = json.loads(manifest.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise PromptgymError(f"{manifest}: unreadable ({exc})") from None
            theirs = {k: theirs.get(k, SETTING_DEFAULTS.get(k)) for k in SETTING_KEYS}
            differ = [k for k in SETTING_KEYS if theirs[k] != mine[k]]
            if differ:
                raise PromptgymError(
                    f"{self.path}: made with other settings ({', '.join(f'{k} {theirs[k]!r}' for k in differ)}); "
                    "use those or another --out")
            return
        (self.work / "caches").mkdir(parents=True, exist_ok=True)
        manifest.write_text(json.dumps(mine, indent=2))

    def settings(self) -> dict[str, Any]:
        return json.loads((self.path / "bench.json").read_text())

    def rows(self) -> list[dict[str, Any]]:
        """Finished cells, last record of each key wins (a failed cell re-run with --retry-failed)."""
        if not self.cells_file.exists():
            return []
        rows: dict[str, dict[str, Any]] = {}
        for n, line in enumerate(self.cells_file.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill: that cell simply runs again
                continue
            rows[row["key"]] = row
        return list(rows.values())

    def append(self, row: dict[str, Any]) -> None:
        """One line per row; a line a kill cut short gets its newline first, so the row is never
        glued to it. (Files of earlier versions have a blank line before each row: ``rows`` skips
        blank lines.)"""
        self.work.mkdir(parents=True, exist_ok=True)
        with self.cells_file.open("ab+") as fh:
            end = fh.seek(0, 2)
            torn = False
            if end > 0:
                fh.seek(end - 1)
                torn = fh.read(1) != b"\n"
            fh.write((b"\n" if torn else b"") + json.dumps(row).encode() + b"\n")
            fh.flush()


def run_grid(bench: BenchDir, settings: Settings, todo: list[Cell], retry_failed: bool = False,
             on_cell: Callable[[dict[str, Any], bool, int, int], None] | None = None,
             executor: Executor | None = None) -> list[dict[str, Any]]:
    """Run the cells not finished yet on ``executor`` (default: one after another in this process);
    returns every row of the asked-for cells (finished before or now), in ``todo`` order.
    ``on_cell(row, ran, number, total)`` is told about each: the ones finished before first, then
    the others as they finish (in ``todo`` order in this process, in any order on a cluster)."""
    from promptgym.bench.executors import InProcess

    check_selection(settings)  # before anything is written: one line, not a failed row per cell
    bench.bind(settings)
    done = {r["key"]: r for r in bench.rows()}
    pending = [c for c in todo if c.key not in done or (retry_failed and done[c.key]["status"] != "ok")]
    if not settings.split_files:  # bad data is one line before any run, not a failed row per cell
        from promptgym.data.loaders import load_dataset

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
    from promptgym.evaluation.selection import plan_selection

    dev_size = settings.dev_size
    files = settings.split_files or {}
    if files:
        if not files.get("dev"):
            return  # selection is off without a dev file
        from promptgym.data.loaders import load_split_files

        dev_size = len(load_split_files(files["train"], files.get("dev"), files.get("test")).dev)
    try:
        plan_selection(10**9, settings.budget, dev_size, settings.select_k, settings.select_level)
    except ValueError as exc:
        raise PromptgymError(str(exc)) from None


def cell_row(cell: Cell) -> dict[str, Any]:
    """A row's identifying fields (the rest is the result, or the error)."""
    return dict(key=cell.key, dataset=cell.dataset, task_model=cell.task_model, layout=cell.layout,
                variant=cell.variant.label, method=cell.variant.method, params=cell.variant.params, seed=cell.seed)


def run_cell(bench: BenchDir, settings: Settings, cell: Cell) -> dict[str, Any]:
    """One cell, start to finish; an earlier run of it that did not finish (a killed process) is
    resumed rather than started again, and a finished one whose row was lost gives its row back."""
    from promptgym import api

    row = cell_row(cell)
    files = settings.split_files or {}
    cache_file = bench.work / "caches" / (cell.slug + ".sqlite")
    row["resumed"] = cache_file.exists()  # its wall time and curve then understate a cold run
    started = time.perf_counter()
    try:
        earlier = cell_run(bench, cell)
        row["resumed"] = row["resumed"] or earlier is not None
        if earlier is not None:
            await_lease(bench, earlier)
            result = api.resume(earlier, store_url=bench.store_url, quiet=True)
        else:
            result = api.optimize(
                cell.dataset, method=cell.variant.method, params=cell.variant.params, seed=cell.seed,
                budget=settings.budget, train_size=settings.train_size, dev_size=settings.dev_size,
                test_size=settings.test_size, select_k=settings.select_k, select_level=settings.select_level,
                select_sequential=settings.select_sequential, task_model=cell.task_model, optimizer_model=settings.optimizer_model, layout=cell.layout,
                store_url=bench.store_url, cache_url=bench.cache_url(cell), quiet=True,
                **{f"{k}_file": v for k, v in files.items()})
    except Exception as exc:  # a method failing in one cell is that cell's result
        last = str(exc).strip().splitlines()[-1:] or [type(exc).__name__]
        where = traceback.extract_tb(exc.__traceback__)[-1:]
        row.update(status="failed", error=f"{type(exc).__name__}: {last[0]}",
                   error_at=f"{where[0].filename}:{where[0].lineno}" if where else None,
                   wall_seconds=round(time.perf_counter() - started, 2))
        return row
    row.update(status="ok", wall_seconds=round(time.perf_counter() - started, 2),
               summary=result.summary.to_dict(full=False),
               **_from_store(bench, result))
    return row


def cell_run(bench: BenchDir, cell: Cell) -> str | None:
    """The newest run of ``cell`` that can be resumed (running, interrupted, or finished with its
    row lost), or None. A cell's runs are the ones with its cache URL; a failed run (the method's
    own error) is not resumed: ``--retry-failed`` starts it afresh."""
    from promptgym.store.runs import RunStore

    runs = RunStore(bench.store_url).runs_with_cache(bench.cache_url(cell))
    return runs[0]["run_id"] if runs and runs[0]["status"] != "failed" else None


def await_lease(bench: BenchDir, run_id: str) -> None:
    """Wait (at most one lease period and a heartbeat) for the lease of a run whose process was lost
    to lapse: on this host a dead pid frees it at once, from another host only time does. If it is
    still held then, ``api.resume`` says by whom, in one line."""
    from promptgym.store.lease import holder_state, lease_settings
    from promptgym.store.runs import RunStore

    store = RunStore(bench.store_url)
    heartbeat, lease = lease_settings()
    deadline = time.monotonic() + lease + heartbeat
    while holder_state(store.get_run(run_id), lease) == "live" and time.monotonic() < deadline:
        time.sleep(min(heartbeat, 1.0))


def _from_store(bench: BenchDir, result: Any) -> dict[str, Any]:
    """Per-example test scores (for the paired tests across seeds and methods) and the search's
    best training score against the budget it had spent (for the plots)."""
    from promptgym.store.runs import RunStore

    store = RunStore(bench.store_url)
    test = {s["candidate_id"]: s["per_example"] for s in store.scores(result.run_id) if s["split"] == "test"}
    return dict(run_id=result.run_id, test_initial_scores=test.get(result.initial_prompt.id),
                test_best_scores=test.get(result.best_prompt.id), train_curve=train_curve(store, result.run_id))

