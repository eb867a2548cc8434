"""Smoke test of benchmarks/throughput.py: it runs end to end and writes the documented JSON shape.

The numbers are not checked (3 examples, 1 round on a shared machine say nothing); the full
benchmark is run by hand, see benchmarks/README.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "throughput.py"
TASK = "multiemo/all_sentence_en/task.json"


def _bigbench_home(tmp_path: Path) -> Path:
    """A PROMPTGYM_HOME holding the extracted multiemo task, copied from the user's own home."""
    source = Path(os.environ.get("PROMPTGYM_TEST_DOWNLOADS", Path.home() / ".promptgym" / "downloads"))
    tasks = source / "bigbench-1.0.0-tasks"
    if not (tasks / "index.json").exists() or not (tasks / TASK).exists():
        pytest.skip(f"BIG-bench multiemo not downloaded under {source}")
    home = tmp_path / "bench-home"
    target = home / "downloads" / "bigbench-1.0.0-tasks"
    (target / TASK).parent.mkdir(parents=True)
    shutil.copy(tasks / "index.json", target / "index.json")
    shutil.copy(tasks / TASK, target / TASK)
    return home


@pytest.mark.integration
def test_throughput_benchmark_writes_its_json(tmp_path):
    out = tmp_path / "throughput.json"
    env = dict(os.environ, PROMPTGYM_HOME=str(_bigbench_home(tmp_path)))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--examples", "3", "--rounds", "1", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
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
