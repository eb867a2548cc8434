"""GRIPS on the real embedded model, tiny settings: it runs end to end without the optimizer
model (no ``sub``), records each candidate's edit, and its plan fits the budget."""

from __future__ import annotations

import sqlite3

import pytest

from promptgym import api

pytestmark = pytest.mark.integration


def test_grips_without_an_optimizer_model(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTGYM_HOME", str(tmp_path))
    params = {"edits": "del,swap,add", "score_set": 8, "candidates": 3, "num_iter": 2}
    result = api.optimize("example:sentiment", method="grips", budget=40, train_size=8, test_size=8,
                          dev_size=0, seed=0, params=params)
    summary = result.summary
    assert summary.stats["grips"]["plan"] == {"num_iter": 1, "candidates": 3}  # 8 + 1 x 3 x 8 <= 40
    assert summary.budget_used <= 40 and summary.test_best is not None
    made = api.show(summary.run_id).candidates
    assert {c["operation"] for c in made[1:]} <= {"del", "swap", "add", "layout", "labels"} and len(made) > 1
    with sqlite3.connect(tmp_path / "runs.sqlite") as conn:
        roles = {role for (role,) in conn.execute("select distinct role from calls where run_id = ?",
                                                  (summary.run_id,))}
    assert "optimizer" not in roles
