"""DP2O on the real embedded model (SmolLM2-135M) with a tiny pool: the whole path through the
API (dialogue, SUE, the model's embeddings, policy, held-out report, stored policy, predict)."""

from __future__ import annotations

import pytest

from promptgym import api
from support import TINY_LABELS as LABELS
from support import tiny_sentiment


@pytest.mark.integration
def test_dp2o_tiny_pool_on_the_embedded_model():
    data = tiny_sentiment()
    params = {"seeds": 3, "rounds": 1, "pool_size": 2, "seed_candidates": 3, "sue_examples": 3,
              "episodes": 20, "hidden": 32, "top_k": 2, "max_tokens": 120}
    result = api.optimize(data, method="dp2o", budget=100, train_size=4, dev_size=2, test_size=2,
                          task_model="embedded", optimizer_model="embedded", params=params)
    report = result.summary["dp2o"]
    stats = result.summary["stats"]["dp2o"]
    assert result.summary["budget_used"] <= 100
    dialogue = stats["dialogue"]  # one window, one exchange per label (+ re-asks of dropped replies)
    assert dialogue["turns"] - dialogue["retries"] == len(LABELS)
    assert stats["encoder"]["kind"] == "model" and stats["encoder"]["dim"] == 576
    # a pool to train on: an empty one (nothing usable written) is tested on the scripted model
    assert report["h"] >= 1, dialogue
    assert report["completed"] is True
    assert set(report["test_accuracy"]) == {"initial", "best_single", "similarity", "policy_greedy",
                                            "policy_ensemble"}
    assert all(0.0 <= v <= 1.0 for v in report["test_accuracy"].values())
    rows = api.predict(result.run_id, ["The hotel was wonderful."])
    assert rows[0]["prediction"] in LABELS
