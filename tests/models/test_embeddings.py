"""Frozen encoders: TF-IDF (numpy) and llama.cpp mean-pooled embeddings with an on-disk cache."""

from __future__ import annotations

import numpy as np
import pytest

from promptgym.evaluation.cache import ResponseCache
from promptgym.models import embeddings
from promptgym.models.embeddings import EmbeddingCache, LlamaCppEmbedder, TfidfEmbedder, embedder_from_spec


def test_tfidf_fit_and_embed():
    texts = ["The food was great", "the staff was rude", "Great food, great price"]
    enc = TfidfEmbedder.fit(texts)
    assert enc.vocab == sorted(enc.vocab) and "great" in enc.vocab
    out = enc.embed(texts + ["nothing known here", ""])
    assert out.shape == (5, len(enc.vocab))
    assert np.linalg.norm(out[:3], axis=1) == pytest.approx([1, 1, 1])
    assert not out[4].any()
    # a word in every text gets the lowest idf; sublinear tf: "great" twice counts 1 + ln 2
    assert enc.idf[enc.index["great"]] > enc.idf[enc.index["was"]] - 1e-9
    row = out[2] / out[2][enc.index["price"]] * enc.idf[enc.index["price"]]
    assert row[enc.index["great"]] == pytest.approx((1 + np.log(2)) * enc.idf[enc.index["great"]])


def test_tfidf_min_df_and_spec_round_trip():
    enc = TfidfEmbedder.fit(["a b c", "a b", "a"], min_df=2)
    assert enc.vocab == ["a", "b"]
    again = embedder_from_spec(enc.spec())
    assert again.identity == enc.identity
    assert again.embed(["b a"]) == pytest.approx(enc.embed(["b a"]))


def test_embedding_cache_round_trip(tmp_path):
    cache = EmbeddingCache(ResponseCache(f"sqlite:///{tmp_path / 'c.sqlite'}").engine)
    key = EmbeddingCache.key("enc", "hello")
    cache.put(key, np.array([0.5, -1.25, 3.0]))
    cache.put(key, np.array([9.0, 9.0, 9.0]))  # first write wins
    assert cache.get_many([key, "missing"])[key] == pytest.approx([0.5, -1.25, 3.0])


class _FakeLlama:
    def __init__(self):
        self.calls = 0

    def embed(self, text, truncate=True):
        self.calls += 1
        return [float(len(text)), 1.0, -1.0]


def test_llama_embedder_caches_on_disk_and_loads_lazily(tmp_path, monkeypatch):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"not really a model")
    fake = _FakeLlama()
    monkeypatch.setitem(embeddings._LLAMAS, str(gguf.resolve()), fake)
    cache = EmbeddingCache(ResponseCache(f"sqlite:///{tmp_path / 'c.sqlite'}").engine)
    enc = LlamaCppEmbedder(gguf, cache=cache)
    out = enc.embed(["ab", "abcd", "ab"])
    assert out[:, 0].tolist() == [2.0, 4.0, 2.0]
    assert (enc.calls, enc.cached, fake.calls) == (2, 1, 2)
    monkeypatch.delitem(embeddings._LLAMAS, str(gguf.resolve()))  # a fresh process: no model loaded
    again = LlamaCppEmbedder(gguf, cache=cache)
    assert again.embed(["abcd", "ab"])[:, 0].tolist() == [4.0, 2.0]
    assert (again.calls, again.cached) == (0, 2)
    assert str(gguf.resolve()) not in embeddings._LLAMAS  # answered from disk without loading
    assert embedder_from_spec(again.spec(), cache).identity == again.identity


@pytest.mark.integration
def test_real_embedded_model_gives_576_dims_and_replays(tmp_path):
    cache = EmbeddingCache(ResponseCache(f"sqlite:///{tmp_path / 'c.sqlite'}").engine)
    enc = LlamaCppEmbedder(cache=cache)
    texts = ["The room was clean and quiet.", "The waiter was rude to us."]
    first = enc.embed(texts)
    assert first.shape == (2, 576) and np.isfinite(first).all()
    assert not np.allclose(first[0], first[1])
    again = LlamaCppEmbedder(cache=cache)
    assert again.embed(texts) == pytest.approx(first, rel=1e-6)
    assert again.calls == 0
