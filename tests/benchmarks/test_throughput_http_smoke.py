"""Smoke test of ``benchmarks/throughput.py --part http``: it runs end to end without any model and
writes the documented JSON shape.

The numbers are not checked (two levels, a few requests, a shared machine): the full measurement is
run by hand, see benchmarks/README.md (Throughput).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "throughput.py"


@pytest.mark.integration  # a real loopback server in a child process, ~0.1 s per request wave
def test_throughput_http_part_writes_its_json(tmp_path):
    out = tmp_path / "throughput-http.json"
    env = dict(os.environ, PROMPTGYM_HOME=str(tmp_path / "home"))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--part", "http", "--levels", "1", "4", "--waves", "2",
                           "--repeats", "1", "--delay", "0.05", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "achieved/ideal" in proc.stdout and "goal" not in proc.stdout  # no 16 in flight: no verdict
    result = json.loads(out.read_text())
    for key in ("date", "machine", "delay_seconds", "levels", "requests_per_level", "seconds",
                "server_max_in_flight", "achieved_over_ideal", "goal"):
        assert key in result, key
    assert result["delay_seconds"] == 0.05 and result["levels"] == [1, 4]
    assert result["machine"]["cpu_count"] >= 1 and len(result["machine"]["loadavg_before"]) == 3
    assert set(result["modes"]) == {"raw", "generate", "score"}
    for mode in result["modes"]:
        assert result["requests_per_level"][mode] == {"1": 2, "4": 8}
        assert all(len(v) == 1 and v[0] > 0 for v in result["seconds"][mode].values())
        # the server saw requests overlap (every level's requests were really in flight together)
        assert result["server_max_in_flight"][mode]["1"] == [1]
        assert 1 < result["server_max_in_flight"][mode]["4"][0] <= 4
        for ratio in result["achieved_over_ideal"][mode].values():
            assert set(ratio) == {"median", "min", "max", "per_round"} and 0 < ratio["median"] < 1.5
    assert result["goal"]["met"] is None and result["goal"]["achieved_over_ideal_at_least"] == 0.8
    assert all(v[0] > 0 for m in result["modes"] for v in result["client_cpu_ms_per_request"][m].values())
    assert not list(tmp_path.glob("*.tmp"))
