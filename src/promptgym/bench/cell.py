"""One cell of a bench, start to finish, wherever it runs (in this process or on a Ray worker): an
``api.optimize`` run, or the resume of an earlier run of it that did not finish; its row says how
it went (or the method's error: a failing method is a result too)."""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import time
import traceback
from pathlib import Path
from typing import Any

from promptgym import api
from promptgym.bench.work import BenchDir, Cell, Settings, cell_row
from promptgym.report.trajectory import train_curve
from promptgym.store.lease import holder_state, lease_settings
from promptgym.store.runs import RunStore


def run_cell(bench: BenchDir, settings: Settings, cell: Cell) -> dict[str, Any]:
    """One cell, start to finish; an earlier run of it that did not finish (a killed process) is
    resumed rather than started again, and a finished one whose row was lost gives its row back."""
    row = cell_row(cell)
    row["machine"] = machine()
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
                select_sequential=settings.select_sequential, select_statistic=settings.select_statistic,
                select_margin=settings.select_margin, task_model=cell.task_model,
                optimizer_model=settings.optimizer_model, layout=cell.layout,
                store_url=bench.store_url, cache_url=bench.cache_url(cell), quiet=True,
                **{f"{k}_file": v for k, v in files.items()}, **cell.variant.options)
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


SIMD_FLAGS = ("avx", "avx2", "avx512f", "avx512_bf16", "avx_vnni", "amx_tile", "fma", "f16c", "neon", "asimd")


@functools.cache
def machine() -> dict[str, Any]:
    """Where a cell ran: the CPU and the SIMD extensions llama.cpp picks its kernels by, and the
    llama-cpp-python version. The same run on another CPU can score a few examples differently (its
    kernels round differently), so a bench pooled from several machines' runs says which ran where."""
    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                cpu = value.strip()
            elif key.strip() in ("flags", "Features"):
                flags |= set(value.split())
    except OSError:  # not Linux: the processor name alone
        pass
    try:
        llama = importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        llama = None
    return dict(cpu=cpu, simd=[f for f in SIMD_FLAGS if f in flags], llama_cpp_python=llama)


def cell_run(bench: BenchDir, cell: Cell) -> str | None:
    """The newest run of ``cell`` that can be resumed (running, interrupted, or finished with its
    row lost), or None. A cell's runs are the ones with its cache URL; a failed run (the method's
    own error) is not resumed: ``--retry-failed`` starts it afresh."""
    runs = RunStore(bench.store_url).runs_with_cache(bench.cache_url(cell))
    return runs[0]["run_id"] if runs and runs[0]["status"] != "failed" else None


def await_lease(bench: BenchDir, run_id: str) -> None:
    """Wait (at most one lease period and a heartbeat) for the lease of a run whose process was lost
    to lapse: on this host a dead pid frees it at once, from another host only time does. If it is
    still held then, ``api.resume`` says by whom, in one line."""
    store = RunStore(bench.store_url)
    heartbeat, lease = lease_settings()
    deadline = time.monotonic() + lease + heartbeat
    while holder_state(store.get_run(run_id), lease) == "live" and time.monotonic() < deadline:
        time.sleep(min(heartbeat, 1.0))


def _from_store(bench: BenchDir, result: Any) -> dict[str, Any]:
    """Per-example test scores (for the paired tests across seeds and methods) and the search's
    best training score against the budget it had spent (for the plots)."""
    store = RunStore(bench.store_url)
    test = {s["candidate_id"]: s["per_example"] for s in store.scores(result.run_id) if s["split"] == "test"}
    return dict(run_id=result.run_id, test_initial_scores=test.get(result.initial_prompt.id),
                test_best_scores=test.get(result.best_prompt.id), train_curve=train_curve(store, result.run_id))
