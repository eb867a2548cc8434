"""The scripted model's embeddings: off unless asked for, deterministic, word-sensitive."""

from __future__ import annotations

import math

import pytest

from promptgym.errors import PromptgymError
from promptgym.models.base import Embedding, EmbeddingRequest
from promptgym.models.scripted import EMBEDDING_DIM, ScriptedBackend


def _embed(backend: ScriptedBackend, texts: list[str]) -> list[Embedding]:
    out: list = [None] * len(texts)
    backend.embed([EmbeddingRequest(t) for t in texts], out.__setitem__)
    return out


def test_embeddings_are_off_by_default():
    assert ScriptedBackend().supports_embedding is False
    with pytest.raises(PromptgymError, match="embeddings are off"):
        _embed(ScriptedBackend(), ["hello"])


def test_vectors_are_deterministic_unit_and_follow_shared_words():
    a, b, c, again = _embed(ScriptedBackend(embeddings=True),
                            ["the food was great", "great food overall", "rude staff at night",
                             "the food was great"])
    assert a == again and len(a.vector) == EMBEDDING_DIM and a.prompt_tokens == 4
    assert math.isclose(sum(x * x for x in a.vector), 1.0)

    def cos(u: Embedding, v: Embedding) -> float:
        return sum(x * y for x, y in zip(u.vector, v.vector))

    assert cos(a, b) > cos(a, c)
