"""Frozen input encoders for methods that need a state per input (DP2O's policy, similarity
baselines). One small interface: ``embed(texts) -> (n, dim) array``, ``kind``, ``identity``,
``calls`` / ``cached`` (texts embedded / replayed, for the method's report) and ``spec()`` to
rebuild the encoder after the run (predictions).

- ``ModelEncoder``: the task model's own embeddings, asked through the Evaluator (cached with the
  responses, in the ledger, not charged to the budget). The method never sees the backend.
- ``TfidfEncoder``: lexical, numpy only, fitted on the training inputs: for models without
  embeddings (the scripted test model) and as a comparison point.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from typing import Any, Protocol, Sequence

import numpy as np

from promptgym.errors import PromptgymError
from promptgym.evaluation.evaluator import Evaluator


class Encoder(Protocol):
    kind: str
    identity: str
    calls: int
    cached: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def spec(self) -> dict[str, Any]: ...


class ModelEncoder:
    """The task model's vectors. Its identity needs no model name: a run's task model is fixed by
    its config, and the cache keys carry the model's identity."""

    kind = "model"
    identity = "task-model"

    def __init__(self, evaluator: Evaluator):
        self.evaluator = evaluator
        self.calls = 0
        self.cached = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        usage = self.evaluator.usage
        before = (usage.embeddings, usage.cached_embeddings)
        out = self.evaluator.embed(texts, role="task")
        self.calls += usage.embeddings - before[0]
        self.cached += usage.cached_embeddings - before[1]
        return out

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind}


_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.casefold())


class TfidfEncoder:
    """Sublinear TF x smoothed IDF over the training inputs' words, L2-normalised (numpy only).

    Words never seen in the fitting texts are ignored; a text with none of them embeds to zeros.
    """

    kind = "tfidf"

    def __init__(self, vocab: Sequence[str], idf: Sequence[float]):
        if len(vocab) != len(idf):
            raise ValueError("vocab and idf differ in length")
        self.vocab = list(vocab)
        self.idf = np.asarray(idf, dtype=np.float64)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        digest = hashlib.sha256("\n".join(self.vocab).encode()).hexdigest()[:12]
        self.identity = f"tfidf:{len(self.vocab)}:{digest}"
        self.calls = 0
        self.cached = 0

    @classmethod
    def fit(cls, texts: Sequence[str], min_df: int = 1, max_features: int | None = None) -> "TfidfEncoder":
        n = len(texts)
        df: Counter = Counter()
        for text in texts:
            df.update(set(_tokens(text)))
        words = sorted(w for w, c in df.items() if c >= min_df)  # sorted: deterministic order
        if max_features is not None and len(words) > max_features:
            words = sorted(sorted(words, key=lambda w: (-df[w], w))[:max_features])
        idf = [math.log((1 + n) / (1 + df[w])) + 1.0 for w in words]
        return cls(words, idf)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), len(self.vocab)))
        for row, text in enumerate(texts):
            counts = Counter(t for t in _tokens(text) if t in self.index)
            for word, count in counts.items():
                out[row, self.index[word]] = 1.0 + math.log(count)
        out *= self.idf
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        self.calls += len(texts)
        return out

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "vocab": self.vocab, "idf": [float(x) for x in self.idf]}


def encoder_from_spec(spec: dict[str, Any], evaluator: Evaluator) -> Encoder:
    """Rebuild an encoder from its ``spec()`` (stored with a run, for predictions later). Kind
    ``llama`` is how runs stored before embeddings were a backend capability name the model encoder."""
    kind = spec.get("kind")
    if kind == "tfidf":
        return TfidfEncoder(spec["vocab"], spec["idf"])
    if kind in ("model", "llama"):
        return ModelEncoder(evaluator)
    raise PromptgymError(f"unknown encoder kind {kind!r} (known: model, tfidf)")
