"""What a bench is made of: its methods with their parameters (``Variant``), its cells (one run
each), the ``Settings`` every cell shares and its directory (``BenchDir``: settings, run store,
caches, finished rows). Plain data, below everything that runs cells."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptgym.errors import PromptgymError

SETTING_KEYS = ("budget", "train_size", "dev_size", "test_size", "select_k", "select_level",
                "optimizer_model", "split_files", "select_sequential", "select_statistic", "select_margin")
SETTING_DEFAULTS = {"select_sequential": False, "select_statistic": "accuracy", "select_margin": 0.0}  # settings added later: what a bench.json without them meant


RUN_OPTIONS = ("calibrate",)  # keys in a variant's brackets that are the run's options, not the method's


@dataclass(frozen=True)
class Variant:
    """A method with fixed parameters; ``label`` names it in tables (``protegi[selector=uniform]``).
    ``options``: run options given in the brackets too (``ape[calibrate=true]``: ``api.optimize``'s
    ``calibrate``), so one bench compares a method with and without them."""

    label: str
    method: str
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


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
    select_statistic: str = "accuracy"  # what final selection tests (optimize's --select-statistic)
    select_margin: float = 0.0


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


def cell_row(cell: Cell) -> dict[str, Any]:
    """A row's identifying fields (the rest is the result, or the error)."""
    return dict(key=cell.key, dataset=cell.dataset, task_model=cell.task_model, layout=cell.layout,
                variant=cell.variant.label, method=cell.variant.method, params=cell.variant.params, seed=cell.seed,
                **({"options": cell.variant.options} if cell.variant.options else {}))


def group_key(row: dict[str, Any]) -> tuple[str, str, str]:
    """The table a row (or a method's record) belongs to: its dataset, task model and layout."""
    return row["dataset"], row["task_model"], row["layout"]
