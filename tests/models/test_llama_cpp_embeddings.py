"""Embeddings of the embedded model (SmolLM2-135M, llama.cpp mean pooling) through the Evaluator."""

from __future__ import annotations

import numpy as np
import pytest

from promptgym.evaluation.cache import ResponseCache
from promptgym.evaluation.evaluator import Evaluator

pytestmark = pytest.mark.integration


def test_real_model_gives_576_dims_and_a_fresh_backend_replays_without_loading(tmp_path):
    from promptgym.models.llama_cpp_backend import LlamaCppBackend

    cache = ResponseCache(f"sqlite:///{tmp_path / 'c.sqlite'}")
    backend = LlamaCppBackend()
    texts = ["The room was clean and quiet.", "The waiter was rude to us."]
    first = Evaluator(backend, backend, cache).embed(texts)
    assert first.shape == (2, 576) and np.isfinite(first).all()
    assert not np.allclose(first[0], first[1])
    backend.close()
    fresh = LlamaCppBackend()
    evaluator = Evaluator(fresh, fresh, cache)
    assert (evaluator.embed(texts) == first).all()  # exact: the cache round-trips float64
    assert evaluator.usage.cached_embeddings == 2 and evaluator.usage.embeddings == 0
    assert fresh._embedding_llm is None  # answered from the cache: no embedding context made
    fresh.close()
