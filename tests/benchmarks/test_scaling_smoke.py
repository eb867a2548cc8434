"""Smoke test of ``benchmarks/scaling.py``: it starts its own Ray cluster, runs the grid on it and
in-process against the loopback server, stops the cluster and writes the documented JSON and table.

The ratios are not checked (one worker, two cells, a shared machine): the measurement is run by
hand (docs/scaling.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "scaling.py"


@pytest.mark.integration  # a Ray head and a worker node as processes, a loopback server in a child
def test_scaling_benchmark_writes_its_json_and_table(tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "scaling.json"
    env = dict(os.environ, PROMPTGYM_HOME=str(tmp_path / "home"))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--workers", "1", "--seeds", "2", "--methods", "ape",
                           "--budget", "40", "--delay", "0.05", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(out.read_text())
    rows = {(m["executor"], m["workers"]): m for m in record["measurements"]}
    assert set(rows) == {("in-process", 1), ("ray", 1)}
    assert rows[("ray", 1)]["fraction_of_ideal"] == 1.0 and rows[("ray", 1)]["cells"] == 2
    assert rows[("ray", 1)]["requests"] == rows[("in-process", 1)]["requests"] > 0  # the same work, counted at the server
    assert "| ray | 1 |" in out.with_suffix(".md").read_text()
