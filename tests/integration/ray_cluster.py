"""A Ray cluster of separate processes on this machine, for tests and benchmarks: a head that only
schedules (0 CPUs) and ``workers`` worker nodes of ``cpus`` CPUs each.

Each node is a ``ray start --block`` process in a session of its own; ``stop()`` sends SIGTERM to
those processes, and each one stops the raylet, workers and services it started (its reaper kills
its process group). Nothing else is touched: no ``ray stop``, which would end every Ray process on
the machine. ``kill_node(i)`` ends one worker node the same way.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRayCluster:
    def __init__(self, workers: int = 1, cpus: int = 1, env: dict[str, str] | None = None,
                 log_dir: str | Path | None = None, start_timeout: float = 120.0):
        self.workers, self.cpus = workers, cpus
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
        self.log_dir = Path(log_dir or f"/tmp/promptgym-ray-{os.getpid()}-{time.time_ns()}")
        self.start_timeout = start_timeout
        self.port = free_port()
        self.nodes: list[subprocess.Popen] = []  # the head first

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _node(self, name: str, args: list[str]) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{name}.log").open("w")
        proc = subprocess.Popen([RAY, "start", "--block", "--disable-usage-stats", *args], env=self.env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.nodes.append(proc)
        return proc

    def _wait_started(self, name: str, proc: subprocess.Popen) -> None:
        deadline = time.monotonic() + self.start_timeout
        log = self.log_dir / f"{name}.log"
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray node {name} did not start: see {log}")
            time.sleep(0.2)

    def start(self) -> "LocalRayCluster":
        try:
            head = self._node("head", ["--head", f"--port={self.port}", "--node-ip-address=127.0.0.1",
                                       "--num-cpus=0", "--include-dashboard=false"])
            self._wait_started("head", head)
            for i in range(self.workers):  # one at a time: nodes starting together on 2 cores time out
                self._wait_started(f"worker{i}", self.add_worker())
            if self.workers:
                self.wait_for_cpus(self.workers * self.cpus)
        except BaseException:
            self.stop()
            raise
        return self

    def add_worker(self) -> subprocess.Popen:
        return self._node(f"worker{len(self.nodes) - 1}", [f"--address={self.address}", f"--num-cpus={self.cpus}"])

    def wait_for_cpus(self, cpus: int) -> None:
        """Until the cluster offers ``cpus`` CPUs (asked from a short-lived driver process)."""
        probe = ("import ray, time, sys\n"
                 f"ray.init(address='{self.address}', logging_level='ERROR', log_to_driver=False)\n"
                 f"deadline = time.monotonic() + {self.start_timeout}\n"
                 f"while ray.cluster_resources().get('CPU', 0) < {cpus}:\n"
                 "    if time.monotonic() > deadline: sys.exit(1)\n"
                 "    time.sleep(0.2)\n")
        subprocess.run([sys.executable, "-c", probe], env=self.env, check=True, timeout=self.start_timeout + 30,
                       capture_output=True)

    def kill_node(self, index: int) -> None:
        """Stop worker node ``index`` (0-based) as ``stop`` stops them all."""
        self._terminate([self.nodes[1 + index]])

    def stop(self) -> None:
        self._terminate(self.nodes[::-1])

    @staticmethod
    def _terminate(procs: list[subprocess.Popen]) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: the group is its own
                proc.wait(timeout=10)

    def __enter__(self) -> "LocalRayCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
