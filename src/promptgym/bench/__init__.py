"""``promptgym bench``: every method on the same work (datasets, seeds, task models, split, budget),
with paired tests, a table and plots. ``grid`` runs the cells, ``report`` writes the results;
``bench`` is the one call the CLI makes (and a Python user can)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

from promptgym.bench.executors import EXECUTORS, Executor, InProcess, RayCluster, make_executor
from promptgym.bench.grid import PRESETS, cells, default_dev_size, parse_variants, run_grid
from promptgym.bench.work import BenchDir, Cell, Settings, Variant
from promptgym.bench.report import write_report
from promptgym.errors import PromptgymError

__all__ = ["EXECUTORS", "PRESETS", "BenchDir", "Cell", "Executor", "InProcess", "RayCluster", "Settings", "Variant",
           "bench", "cells", "make_executor", "parse_variants", "run_grid", "write_report"]


def bench(out: str | Path = "promptgym-bench", preset: str = "full", methods: str | Sequence[str] | None = None,
          datasets: Sequence[str] | None = None, seeds: Sequence[int] | None = None, budget: int | None = None,
          train_size: int | None = None, dev_size: int | None = None, test_size: int | None = None,
          select_k: int | None = None, select_level: float = 0.1, select_sequential: bool = False,
          select_statistic: str = "accuracy", select_margin: float = 0.0,
          task_models: Sequence[str] = ("embedded",), optimizer_model: str = "embedded", layout: str = "chat",
          train_file: str | None = None, dev_file: str | None = None, test_file: str | None = None,
          retry_failed: bool = False,
          on_cell: Callable[[dict[str, Any], bool, int, int], None] | None = None,
          executor: str = "in-process", address: str | None = None) -> dict[str, Any]:
    """Run the grid into ``out`` (finished cells are never run again) and write its report; returns
    ``{"meta", "methods", "best_two"}``. Every argument left None takes the ``preset``'s value; with
    split files the split sizes are the files' (a size given too must agree). ``on_cell(row, ran,
    number, total)`` hears about each cell (``ran`` False: finished before). ``executor``:
    ``in-process`` (one cell after another) or ``ray`` (cells spread over the Ray cluster at
    ``address``; see ``promptgym.bench.executors``)."""
    runner = make_executor(executor, address)
    if preset not in PRESETS:
        raise PromptgymError(f"preset '{preset}': use one of {', '.join(PRESETS)}")
    p = PRESETS[preset]
    files = {k: v for k, v in (("train", train_file), ("dev", dev_file), ("test", test_file)) if v}
    if files and "train" not in files:
        raise PromptgymError("--dev and --test need --train")
    sizes = dict(train_size=train_size, dev_size=dev_size, test_size=test_size)
    budget = budget or p["budget"]
    select_k = p["select_k"] if select_k is None else select_k
    if not files:
        sizes = {k: p[k] if v is None else v for k, v in sizes.items()}
        if sizes["dev_size"] is None:
            sizes["dev_size"] = default_dev_size(budget, select_k, select_level)
    settings = Settings(budget=budget, **sizes, select_k=select_k,
                        select_level=select_level, select_sequential=select_sequential,
                        select_statistic=select_statistic, select_margin=select_margin,
                        optimizer_model=optimizer_model,
                        split_files={k: str(Path(v).resolve()) for k, v in files.items()} or None)
    dataset_list = list(datasets) if datasets else ([files["train"]] if files else p["datasets"])
    todo = cells(dataset_list, list(task_models), layout, parse_variants(methods or p["methods"]),
                 list(seeds) if seeds else p["seeds"])
    folder = BenchDir(Path(out))
    started = time.perf_counter()
    run_grid(folder, settings, todo, retry_failed=retry_failed, on_cell=on_cell, executor=runner)
    rows = folder.rows()  # every cell of the directory, this call's and earlier ones'
    return write_report(folder, rows, sorted({r["seed"] for r in rows}), seconds=round(time.perf_counter() - started, 1))
