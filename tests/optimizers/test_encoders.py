"""Input encoders: TF-IDF (numpy) and the task model's embeddings through the Evaluator."""

from __future__ import annotations

import numpy as np
import pytest

from promptgym.errors import PromptgymError
from promptgym.evaluation.cache import ResponseCache
from promptgym.evaluation.evaluator import Budget, Evaluator
from promptgym.models.scripted import ScriptedBackend
from promptgym.optimizers.encoders import ModelEncoder, TfidfEncoder, encoder_from_spec


def test_tfidf_fit_and_embed():
    texts = ["The food was great", "the staff was rude", "Great food, great price"]
    enc = TfidfEncoder.fit(texts)
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
    enc = TfidfEncoder.fit(["a b c", "a b", "a"], min_df=2)
    assert enc.vocab == ["a", "b"]
    again = encoder_from_spec(enc.spec(), evaluator=None)  # type: ignore[arg-type]
    assert again.identity == enc.identity
    assert again.embed(["b a"]) == pytest.approx(enc.embed(["b a"]))


def test_model_encoder_asks_the_evaluator_and_counts_replays(tmp_path):
    backend = ScriptedBackend(embeddings=True)
    evaluator = Evaluator(backend, backend, ResponseCache(f"sqlite:///{tmp_path / 'c.sqlite'}"), Budget(0))
    enc = ModelEncoder(evaluator)
    out = enc.embed(["good food", "rude staff", "good food"])
    assert out.shape == (3, 32) and (out[0] == out[2]).all()
    assert (enc.calls, enc.cached, backend.calls) == (2, 0, 2)  # a repeated text is one call
    again = encoder_from_spec(enc.spec(), evaluator)
    assert again.embed(["rude staff"]) == pytest.approx(out[1:2])
    assert (again.calls, again.cached, backend.calls) == (0, 1, 2)
    # runs stored before embeddings were a backend capability named this encoder "llama"
    assert isinstance(encoder_from_spec({"kind": "llama", "model_path": "/x.gguf"}, evaluator), ModelEncoder)
    with pytest.raises(PromptgymError, match="encoder kind"):
        encoder_from_spec({"kind": "bert"}, evaluator)
