"""DP2O end to end against a served model: ``llama_cpp.server`` on 127.0.0.1 with embeddings on is
both the task model (option log-probabilities over ``/v1/completions`` echo, input embeddings over
``/v1/embeddings``) and the optimizer model (the dialogue over ``/v1/chat/completions``); the run
goes through the API, so the store's ledger shows what was asked of whom.

Only the plumbing is checked: llama-cpp-python's echoed prompt log-probabilities are shifted by one
token (see ``openai_backend``), so no accuracy is asserted.
"""

from __future__ import annotations

import pytest

pytest.importorskip("openai")

from promptgym import api  # noqa: E402
from promptgym.evaluation.cache import request_key  # noqa: E402
from promptgym.models.base import EmbeddingRequest  # noqa: E402
from promptgym.models.openai_backend import OpenAIBackend  # noqa: E402
from promptgym.paths import default_store_url  # noqa: E402
from promptgym.store.runs import RunStore  # noqa: E402

from support import TINY_LABELS as LABELS  # noqa: E402
from support import tiny_sentiment  # noqa: E402

try:  # tests/integration may or may not be a package
    from .llama_server import ALIAS, llama_cpp_server
except ImportError:
    from llama_server import ALIAS, llama_cpp_server  # type: ignore[no-redef]

pytestmark = pytest.mark.integration

# As small as DP2O goes: each scoring over HTTP costs seconds (the server sorts the whole vocabulary
# for every echoed token), so 3 train / 1 dev / 1 test inputs, 2 seeds, a pool of 1.
PARAMS = {"seeds": 2, "rounds": 1, "pool_size": 1, "seed_candidates": 2, "sue_examples": 2,
          "episodes": 5, "hidden": 8, "top_k": 1, "max_tokens": 40, "encoder": "model"}


def test_dp2o_with_every_model_call_over_http():
    data = tiny_sentiment()
    with llama_cpp_server(embedding=True) as base:
        backend = OpenAIBackend(ALIAS, base_url=base, logprob_scoring=True, max_concurrency=2)
        spec = f"openai:{ALIAS}@{base}"
        backends = {spec: backend}  # the spec has no logprob flag
        result = api.optimize(data, method="dp2o", budget=40, train_size=3, dev_size=1, test_size=1,
                              task_model=spec, optimizer_model=spec, layout="plain", scoring="logprob",
                              params=PARAMS, backends=backends)
        rows = api.predict(result.run_id, ["The hotel was wonderful."], backends=backends)
    summary, stats = result.summary, result.summary["stats"]["dp2o"]
    assert summary["task_model"] == summary["optimizer_model"] == backend.identity
    assert summary["budget_used"] <= 40
    assert stats["h"] >= 1, "the dialogue wrote no usable demonstration: nothing was embedded"
    assert stats["encoder"]["kind"] == "model" and stats["encoder"]["dim"] == 576
    report = summary["dp2o"]
    assert report["completed"] and set(report["test_accuracy"]) == {
        "initial", "best_single", "similarity", "policy_greedy", "policy_ensemble"}
    assert rows[0]["prediction"] in LABELS

    ledger = RunStore(default_store_url()).call_rows(result.run_id)
    assert {r["kind"] for r in ledger} == {"generate", "score", "embed"}
    embedded = [r for r in ledger if r["kind"] == "embed"]
    assert not any(r["charged"] for r in embedded)
    held_out = summary["test_size"]  # the held-out report embeds the test inputs after the search
    assert sum(not r["cached"] for r in embedded) == stats["encoder"]["embedding_calls"] + held_out
    # the vectors came from the served model: their keys are its identity + each text
    input_keys = {request_key(backend.identity, EmbeddingRequest(e.input)) for e in data.examples}
    assert len(input_keys & {r["key"] for r in embedded}) >= 3 + 1 + 1  # train, dev, test inputs
