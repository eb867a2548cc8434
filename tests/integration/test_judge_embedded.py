"""A run on the shipped style-rewrite task with the embedded model as task model and as judge (its
digits' log-probabilities): the judge's calls reach the ledger under their own role, its scores are
the examples' scores, and the same run again is answered by the cache. Small: the embedded model is
slow on 2 cores, and nothing here measures quality (a 135M judge is mostly noise)."""

from __future__ import annotations

import pytest

from promptgym import api
from promptgym.paths import default_store_url
from promptgym.store.runs import RunStore

pytestmark = pytest.mark.integration

RUN = dict(method="ape", budget=12, seed=0, train_size=2, dev_size=0, test_size=2, task_model="embedded",
           optimizer_model="embedded", judge_model="embedded", quiet=True,
           params={"num_subsamples": 1, "prompts_per_subsample": 1, "num_demos": 2})


def test_the_embedded_model_judges_a_style_rewrite_run_end_to_end():
    result = api.optimize("example:formal-rewrite", **RUN)
    s = result.summary
    judge = s["judge"]
    assert judge["model"] == s["task_model"] and judge["scoring"] == "logprob" and judge["rubric"] == (
        "example:formal-rewrite")
    assert judge["calls"] > 0 and judge["unparsed"] == 0
    check = judge["reference_check"]  # the test answers against the references, by ROUGE-L
    assert check["metric"] == "rouge-l" and 0.0 <= check["start"] <= 1.0
    assert check["low"] <= check["delta"] <= check["high"]
    store = RunStore(default_store_url())
    rows = [r for r in store.call_rows(result.run_id) if r["role"] == "judge"]
    assert rows and {r["kind"] for r in rows} == {"score"}
    assert any(r["charged"] for r in rows) and any(not r["charged"] for r in rows)  # search / held-out test
    test_rows = [r for r in store.scores(result.run_id) if r["split"] == "test"]
    assert test_rows and all(0.0 <= v <= 1.0 for r in test_rows for v in r["per_example"].values())
    assert 0.0 < s["test_initial"] < 1.0  # an expected score: neither certain 1 nor certain 5
    again = api.optimize("example:formal-rewrite", **RUN)
    assert again["test_initial"] == s["test_initial"] and again["test_best"] == s["test_best"]
    assert not [r for r in store.call_rows(again.run_id) if not r["cached"]]  # all from the cache
