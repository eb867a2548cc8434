"""Request keys and the persistent response cache."""

from __future__ import annotations

import dataclasses

import pytest

from promptgym.evaluation.cache import ResponseCache, request_key
from promptgym.models.base import (Completion, Embedding, EmbeddingRequest, GenerationRequest, OptionScores,
                                   ScoreRequest)

GEN = GenerationRequest(messages=(("user", "Write an instruction."),), max_tokens=20, temperature=0.7)
SCORE = ScoreRequest(continuations=("positive", "negative"), messages=(("user", "Classify: nice"),))


def test_keys_are_stable_hex_digests():
    key = request_key("scripted:a", GEN)
    assert key == request_key("scripted:a", GenerationRequest(messages=(("user", "Write an instruction."),),
                                                             max_tokens=20, temperature=0.7))
    assert len(key) == 64 and int(key, 16) >= 0


def test_keys_differ_by_backend_identity():
    assert request_key("scripted:a", GEN) != request_key("scripted:b", GEN)
    assert request_key("llama:model-q4", SCORE) != request_key("llama:model-q8", SCORE)


GEN_VARIANTS = {
    "messages": (("user", "Write an instruction!"),),
    "text": "raw text",
    "answer_prefix": "The instruction was to",
    "max_tokens": 21,
    "temperature": 0.8,
    "top_p": 0.9,
    "stop": ("\n",),
    "sample": 1,
}


def test_every_generation_field_is_covered_by_the_variants():
    assert set(GEN_VARIANTS) == {f.name for f in dataclasses.fields(GenerationRequest)}


@pytest.mark.parametrize("field", sorted(GEN_VARIANTS))
def test_keys_differ_by_every_generation_field(field):
    changed = dataclasses.replace(GEN, **{field: GEN_VARIANTS[field]})
    assert request_key("scripted:a", changed) != request_key("scripted:a", GEN)


@pytest.mark.parametrize("change", [
    {"continuations": ("negative", "positive")},  # order matters: scores come back in request order
    {"continuations": (" positive", " negative")},
    {"messages": (("system", "Classify: nice"),)},
    {"text": "Classify: nice"},
    {"answer_prefix": "Answer:"},
])
def test_keys_differ_by_every_score_field(change):
    assert request_key("scripted:a", dataclasses.replace(SCORE, **change)) != request_key("scripted:a", SCORE)


def test_samples_are_distinct_keys():
    keys = {request_key("scripted:a", dataclasses.replace(GEN, sample=i)) for i in range(50)}
    assert len(keys) == 50


def test_score_and_generate_requests_never_share_a_key():
    assert request_key("x", GenerationRequest(text="a")) != request_key("x", ScoreRequest(continuations=(), text="a"))


def test_embedding_keys_differ_from_generation_of_the_same_text_and_by_backend():
    key = request_key("x", EmbeddingRequest("a"))
    assert key != request_key("x", GenerationRequest(text="a"))
    assert key != request_key("y", EmbeddingRequest("a")) and key != request_key("x", EmbeddingRequest("b"))


def test_embeddings_live_in_the_same_cache_and_round_trip_exactly(tmp_path):
    url = f"sqlite:///{tmp_path / 'cache.sqlite'}"
    vector = Embedding(vector=(0.1, -1 / 3, 2.0 ** -40, 1e300), prompt_tokens=5)
    key = request_key("s", EmbeddingRequest("hello"))
    ResponseCache(url).put(key, vector)
    cache = ResponseCache(url)
    assert cache.get(key) == vector and cache.lookup([key]) == {key: (vector, None)}
    with cache.engine.connect() as conn:
        assert conn.exec_driver_sql("select kind from responses").scalar_one() == "embed"


def test_round_trip_of_both_response_kinds(tmp_path):
    url = f"sqlite:///{tmp_path / 'sub' / 'cache.sqlite'}"
    cache = ResponseCache(url)
    comp = Completion("Classify the review.", prompt_tokens=12, completion_tokens=4)
    scores = OptionScores(logprobs=(-0.25, -3.5), token_counts=(1, 3), prompt_tokens=30)
    k1, k2 = request_key("s", GEN), request_key("s", SCORE)
    assert cache.get(k1) is None
    cache.put(k1, comp)
    cache.put(k2, scores)
    assert cache.get(k1) == comp
    assert cache.get(k2) == scores
    # a fresh connection (another process, or a resumed run) sees the same answers
    again = ResponseCache(url)
    assert again.lookup([k2, k1, k2, "missing"]) == {k1: (comp, None), k2: (scores, None)}


def test_first_answer_wins_on_duplicate_put(tmp_path):
    cache = ResponseCache(f"sqlite:///{tmp_path / 'cache.sqlite'}")
    cache.put("k", Completion("first"))
    cache.put("k", Completion("second"))
    assert cache.get("k") == Completion("first")


def test_lookup_handles_more_keys_than_one_query_chunk(tmp_path):
    cache = ResponseCache(f"sqlite:///{tmp_path / 'cache.sqlite'}")
    for i in range(0, 1200, 6):
        cache.put(f"k{i}", Completion(str(i)))
    found = cache.lookup([f"k{i}" for i in range(1200)])
    assert len(found) == 200
    assert found["k1194"] == (Completion("1194"), None)
