"""Who runs a bench's cells: ``InProcess`` (one after another, here; the default) or ``RayCluster``
(one Ray task per cell, spread over a cluster's workers).

The contract is one method, ``run(bench, settings, cells)``, yielding each cell's row as the cell
finishes; the caller (``grid.run_grid``) writes the rows. Every cell is ``cell.run_cell`` wherever
it runs, so what a cell computes does not depend on the executor: workers open the bench's run
store and the cell's cache by URL, the same files the in-process executor uses.

Ray (``pip install 'promptgym[ray]'``, imported only when asked for):

- A worker that dies (killed, out of memory, its node lost) has its task retried by Ray
  (``max_retries``) on any worker. The retry is ``run_cell`` again, which finds the cell's run in
  the store and resumes it: the lease (``store.lease``) shows the dead owner, the cell's cache
  answers every call that completed, the ledger carries the budget already spent. Only calls in
  flight at the moment of the kill are made again (their answers never arrived).
- The budget of a cell is charged in the one process running its run, so it holds however many
  workers the grid has; a resumed run meets the same meter (the ledger's charged rows).
- Workers need the bench directory at the same path (same machine, or a shared file system) and
  the environment's ``PROMPTGYM_*`` settings, which are passed along; API keys are not (set
  ``OPENAI_API_KEY`` where the workers start; a key in a model URL would travel in the task's
  arguments). Relative dataset paths are read from the driver's working directory.
- Rows come back in the order cells finish; the bench report does not depend on that order.
- Within a cell, an HTTP model's batches can be spread over Ray tasks too (``PROMPTGYM_RAY_FANOUT``,
  see ``promptgym.models.ray_fanout``); the run's own process still charges every call.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Iterator, Protocol

from promptgym.bench.cell import run_cell
from promptgym.bench.work import BenchDir, Cell, Settings, cell_row
from promptgym.errors import PromptgymError
from promptgym.models.ray_fanout import import_ray

EXECUTORS = ("in-process", "ray")


class Executor(Protocol):
    def run(self, bench: BenchDir, settings: Settings, cells: list[Cell]) -> Iterator[dict[str, Any]]:
        """Run every cell; yield each one's row when it is finished (any order)."""


class InProcess:
    """The cells one after another in this process, in the order given."""

    def run(self, bench: BenchDir, settings: Settings, cells: list[Cell]) -> Iterator[dict[str, Any]]:
        for cell in cells:
            yield run_cell(bench, settings, cell)


class RayCluster:
    """One Ray task per cell on the cluster at ``address`` (``auto``, ``HOST:PORT``, ``ray://...``;
    None: ``RAY_ADDRESS`` or a cluster of this machine started for the bench and stopped after).

    ``cpus_per_cell`` is the share of a worker's CPUs one cell takes (a cell on an HTTP model
    mostly waits; on the embedded model it computes); ``max_retries`` is how often a cell whose
    worker died is tried again."""

    def __init__(self, address: str | None = None, cpus_per_cell: float = 1.0, max_retries: int = 3):
        self.address = address
        self.cpus_per_cell = cpus_per_cell
        self.max_retries = max_retries

    def run(self, bench: BenchDir, settings: Settings, cells: list[Cell]) -> Iterator[dict[str, Any]]:
        if not cells:
            return
        ray = import_ray()
        started_here = not ray.is_initialized()
        if started_here:
            check_reachable(self.address)
            env = {k: v for k, v in os.environ.items() if k.startswith("PROMPTGYM_")}
            try:
                ray.init(address=self.address, runtime_env={"env_vars": env} if env else None,
                         log_to_driver=False, logging_level="WARNING", configure_logging=True)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise PromptgymError(f"ray cluster {self.address or '(local)'}: cannot connect "
                                     f"({str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__})") from None
        try:
            task = ray.remote(run_cell_task).options(num_cpus=self.cpus_per_cell, max_retries=self.max_retries,
                                                     retry_exceptions=False)
            where = str(Path(bench.path).resolve())
            cwd = os.getcwd()
            waiting = {task.remote(where, settings, cell, cwd): cell for cell in cells}
            while waiting:
                ready, _ = ray.wait(list(waiting), num_returns=1)
                cell = waiting.pop(ready[0])
                try:
                    yield ray.get(ready[0])
                except ray.exceptions.RayError as exc:  # the worker died more than max_retries times
                    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    yield {**cell_row(cell), "status": "failed", "error": f"{type(exc).__name__}: {reason}",
                           "error_at": None, "wall_seconds": None}
        finally:
            if started_here:
                ray.shutdown()


def run_cell_task(bench_path: str, settings: Settings, cell: Cell, cwd: str) -> dict[str, Any]:
    """A Ray task's body: ``run_cell`` in the driver's working directory (relative data paths)."""
    if os.path.isdir(cwd):
        os.chdir(cwd)
    return run_cell(BenchDir(Path(bench_path)), settings, cell)


def check_reachable(address: str | None) -> None:
    """A ``HOST:PORT`` or ``ray://HOST:PORT`` that nothing answers is one line in seconds (Ray itself
    keeps trying to connect for minutes); ``auto`` and None are left to Ray."""
    if not address or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise PromptgymError(f"--address '{address}': expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise PromptgymError(f"ray cluster {address}: nothing answers there ({exc.strerror or exc}); "
                             "start one with `ray start --head` or check the address") from None


def make_executor(name: str = "in-process", address: str | None = None) -> Executor:
    """The executor a CLI name asks for; ``address`` only means something to Ray."""
    if name not in EXECUTORS:
        raise PromptgymError(f"--executor '{name}': use one of {', '.join(EXECUTORS)}")
    if name == "in-process":
        if address is not None:
            raise PromptgymError("--address is a Ray cluster's: add --executor ray")
        return InProcess()
    import_ray()  # missing: one line now, before any cell
    return RayCluster(address=address)
