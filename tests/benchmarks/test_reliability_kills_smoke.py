"""Short version of benchmarks/reliability_kills.py (the long one: ``--trials 20``, see
docs/reliability.md): 3 runs killed with SIGKILL at random points and resumed reach the result of
an uninterrupted run; no completed call is made again (the server sees at most one request more
per kill: the one in flight); store and cache pass ``PRAGMA integrity_check`` after every kill;
two runs writing one store and one cache at once both finish."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("openai")

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("reliability_kills", ROOT / "benchmarks" / "reliability_kills.py")
kills = importlib.util.module_from_spec(spec)
spec.loader.exec_module(kills)

pytestmark = pytest.mark.integration


def test_kill_resume_and_two_writers(tmp_path):
    result = kills.main(["--trials", "3", "--writers", "1", "--budget", "40", "--seed", "1",
                         "--out", str(tmp_path / "kills.json")])
    totals = result["totals"]
    assert (tmp_path / "kills.json").exists()
    assert totals["kills"] >= 3
    assert totals["same_prompt_and_scores"] == 3, result["trials"]
    # a kill between the cache's commit and the ledger's loses that call's ledger row (the call is
    # not repeated: resume finds it in the cache); at most one per kill, never a count above the reference
    assert 0 <= totals["ledger_rows_lost"] <= totals["kills"], result["trials"]
    assert totals["repeats_within_kills"] and totals["ledger_repeated"] == 0, result["trials"]
    assert totals["over_budget"] == 0
    assert totals["integrity_passed"] == totals["integrity_checks"]
    assert totals["writer_runs_finished"] == 2 and totals["writer_locked_errors"] == 0, result["writers"]
    assert totals["writer_integrity_passed"] == 1
