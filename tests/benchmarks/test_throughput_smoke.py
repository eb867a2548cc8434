"""Smoke test of benchmarks/throughput.py: it runs end to end and writes the documented JSON shape.

The numbers are not checked (3 examples, 1 round on a shared machine say nothing); the full
benchmark is run by hand, see benchmarks/README.md. It uses the shipped example:sentiment sample.
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


@pytest.mark.integration
def test_throughput_benchmark_writes_its_json(tmp_path):
    out = tmp_path / "throughput.json"
    env = dict(os.environ, PROMPTGYM_HOME=str(tmp_path / "home"))
    # The shipped sample of the same task: no 358 MB download, never skipped on a fresh machine.
    proc = subprocess.run([sys.executable, str(SCRIPT), "--examples", "3", "--rounds", "1",
                           "--dataset", "example:sentiment", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ours / raw" in proc.stdout
    result = json.loads(out.read_text())
    for key in ("date", "machine", "llama_cpp_python", "model", "n_examples", "rounds",
                "seconds_per_round", "ratios", "checks", "goal"):
        assert key in result, key
    assert result["n_examples"] == 3 and result["rounds"] == 1
    assert result["machine"]["cpu_count"] >= 1
    assert result["model"]["identity"].startswith("llamacpp:")
    assert set(result["seconds_per_round"]) == {"ours", "raw", "reuse_on", "reuse_off"}
    assert all(len(v) == 1 and v[0] > 0 for v in result["seconds_per_round"].values())
    for name in ("ours_vs_raw", "reuse_off_vs_on", "backend_vs_raw", "ours_vs_backend"):
        ratio = result["ratios"][name]
        assert set(ratio) == {"median", "min", "max", "per_round"} and len(ratio["per_round"]) == 1
    assert result["checks"]["max_abs_logprob_diff_ours_vs_raw"] <= result["checks"]["atol"]
    assert isinstance(result["goal"]["met"], bool) and result["goal"]["ours_vs_raw_at_most"] == 1.10
    assert not list(tmp_path.glob("*.tmp"))
