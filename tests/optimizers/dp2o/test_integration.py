"""DP2O on the real embedded model (SmolLM2-135M) with a tiny pool: the whole path through the
API (dialogue, SUE, llama.cpp embeddings, policy, held-out report, stored policy, predict)."""

from __future__ import annotations

import pytest

from promptgym import api
from promptgym.data.dataset import Dataset, Example

LABELS = ("positive", "negative")
TEXTS = [
    ("The staff were friendly and the room was spotless.", "positive"),
    ("Cold food, rude waiter, never again.", "negative"),
    ("A lovely quiet place with a great view.", "positive"),
    ("The bed was broken and nobody helped us.", "negative"),
    ("Best breakfast we had on the whole trip.", "positive"),
    ("Dirty bathroom and a smell of smoke everywhere.", "negative"),
    ("The doctor listened carefully and explained everything.", "positive"),
    ("We waited three hours and the nurse shouted at us.", "negative"),
    ("Great value, helpful people, we will come back.", "positive"),
    ("Overpriced and noisy, the worst hotel in town.", "negative"),
    ("Delicious pasta and a very kind owner.", "positive"),
    ("The lesson was boring and the teacher was late.", "negative"),
]


@pytest.mark.integration
def test_dp2o_tiny_pool_on_the_embedded_model():
    examples = [Example(f"t{i}", text, (label,), LABELS) for i, (text, label) in enumerate(TEXTS)]
    data = Dataset("tiny-sentiment", examples, description="Is the opinion positive or negative?")
    params = {"seeds": 3, "rounds": 1, "pool_size": 2, "seed_candidates": 3, "sue_examples": 3,
              "episodes": 20, "hidden": 32, "top_k": 2, "max_tokens": 120}
    result = api.optimize(data, method="dp2o", budget=100, train_size=4, dev_size=2, test_size=2,
                          task_model="embedded", optimizer_model="embedded", params=params)
    report = result.summary["dp2o"]
    stats = result.summary["stats"]["dp2o"]
    assert result.summary["budget_used"] <= 100
    dialogue = stats["dialogue"]  # one window, one exchange per label (+ re-asks of dropped replies)
    assert dialogue["turns"] - dialogue["retries"] == len(LABELS)
    assert stats["encoder"]["kind"] == "llama" and stats["encoder"]["dim"] == 576
    if not report["h"]:  # a 135M model may write nothing usable in one turn: then DP2O keeps the start
        assert result.best_prompt == result.initial_prompt
        return
    assert report["completed"] is True
    assert set(report["test_accuracy"]) == {"initial", "best_single", "similarity", "policy_greedy",
                                            "policy_ensemble"}
    assert all(0.0 <= v <= 1.0 for v in report["test_accuracy"].values())
    rows = api.predict(result.run_id, ["The hotel was wonderful."])
    assert rows[0]["prediction"] in LABELS
