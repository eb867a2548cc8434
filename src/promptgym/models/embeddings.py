"""Frozen text encoders for methods that need a state per input (DP2O's policy, similarity baselines).

Two encoders with one small interface (``embed(texts) -> (n, dim) array``, ``spec()`` to rebuild it):

- ``LlamaCppEmbedder``: a second ``llama_cpp.Llama`` on a GGUF file (default: the embedded
  SmolLM2-135M) in embedding mode with mean pooling (576-d for SmolLM2). It shares the process-wide
  ``LOCK`` with the generation backend, loads the model only when a text is not cached, and keeps
  every vector in an on-disk cache (table ``embeddings``, in the same SQLite file as the response
  cache), so resumed runs and re-runs embed nothing twice.
- ``TfidfEmbedder``: a cheap lexical fallback in numpy only (fitted on the training inputs), used
  when no model is wanted (unit tests, scripted model) and as a comparison point.

Embedding calls are not language-model generation calls: they never touch the call budget; the
embedders count them (``calls`` uncached, ``cached`` replayed) for the caller to report.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
from sqlalchemy import Column, Float, Integer, LargeBinary, MetaData, String, Table, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from promptgym.errors import PromptgymError

_metadata = MetaData()
embeddings_table = Table(
    "embeddings", _metadata,
    Column("key", String(64), primary_key=True),
    Column("dim", Integer, nullable=False),
    Column("vector", LargeBinary, nullable=False),  # float32, little-endian
    Column("created", Float, nullable=False),
)


class Embedder(Protocol):
    kind: str
    identity: str
    calls: int
    cached: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def spec(self) -> dict[str, Any]: ...


class EmbeddingCache:
    """Vectors keyed by sha256(encoder identity, text); lives next to the response cache."""

    def __init__(self, engine: Engine):
        self.engine = engine
        _metadata.create_all(engine)

    @staticmethod
    def key(identity: str, text: str) -> str:
        return hashlib.sha256(f"{identity}\x00{text}".encode()).hexdigest()

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(keys))
        with self.engine.connect() as conn:
            for start in range(0, len(unique), 500):
                chunk = unique[start:start + 500]
                rows = conn.execute(select(embeddings_table.c.key, embeddings_table.c.vector)
                                    .where(embeddings_table.c.key.in_(chunk))).all()
                for key, blob in rows:
                    found[key] = np.frombuffer(blob, dtype="<f4").astype(np.float64)
        return found

    def put(self, key: str, vector: np.ndarray) -> None:
        blob = np.asarray(vector, dtype="<f4").tobytes()
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(embeddings_table).values(key=key, dim=int(len(vector)), vector=blob,
                                                             created=time.time()))
        except IntegrityError:
            pass  # stored by someone else first


_LLAMAS: dict[str, Any] = {}  # one embedding-mode model per GGUF file per process


class LlamaCppEmbedder:
    """Mean-pooled hidden states of a GGUF model (llama.cpp embedding mode), cached on disk."""

    kind = "llama"

    def __init__(self, model_path: str | Path | None = None, cache: EmbeddingCache | None = None,
                 n_ctx: int = 512, n_threads: int | None = None):
        from promptgym.models.llama_cpp_backend import embedded_model_path

        self.path = Path(model_path).resolve() if model_path else embedded_model_path()
        if not self.path.exists():
            raise PromptgymError(f"{self.path}: no such model file")
        digest = hashlib.sha256(f"{self.path.name}:{self.path.stat().st_size}".encode()).hexdigest()[:12]
        self.identity = f"llamacpp-embed-mean:{self.path.name}:{digest}"
        self.cache = cache
        self.n_ctx = n_ctx
        self.n_threads = n_threads or int(os.environ.get("PROMPTGYM_THREADS", 0)) or min(os.cpu_count() or 2, 4)
        self.calls = 0
        self.cached = 0
        self._memo: dict[str, np.ndarray] = {}

    def _model(self) -> Any:
        """Loaded on the first uncached text only (a fully cached resume never loads it)."""
        from promptgym.models.llama_cpp_backend import LOCK

        key = str(self.path)
        if key not in _LLAMAS:
            try:
                from llama_cpp import Llama
            except ImportError:  # pragma: no cover - install problem
                raise PromptgymError("embeddings need llama-cpp-python: pip install llama-cpp-python") from None
            with LOCK:
                _LLAMAS[key] = Llama(model_path=key, embedding=True, pooling_type=1, n_ctx=self.n_ctx,
                                     n_threads=self.n_threads, n_threads_batch=self.n_threads,
                                     verbose=False)
        return _LLAMAS[key]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        from promptgym.models.llama_cpp_backend import LOCK

        keys = [EmbeddingCache.key(self.identity, t) for t in texts]
        missing = [k for k in dict.fromkeys(keys) if k not in self._memo]
        if missing and self.cache is not None:
            self._memo.update(self.cache.get_many(missing))
        out = []
        for text, key in zip(texts, keys):
            if key in self._memo:
                self.cached += 1
            else:
                llm = self._model()
                with LOCK:
                    vector = np.asarray(llm.embed(text, truncate=True), dtype=np.float64)
                if vector.ndim != 1:  # a model without pooling support returns per-token rows
                    vector = vector.mean(axis=0)
                self._memo[key] = vector
                if self.cache is not None:
                    self.cache.put(key, vector)
                self.calls += 1
            out.append(self._memo[key])
        return np.vstack(out) if out else np.zeros((0, 0))

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "model_path": str(self.path), "identity": self.identity}


_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.casefold())


class TfidfEmbedder:
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
    def fit(cls, texts: Sequence[str], min_df: int = 1, max_features: int | None = None) -> "TfidfEmbedder":
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


def embedder_from_spec(spec: dict[str, Any], cache: EmbeddingCache | None = None) -> Embedder:
    """Rebuild an encoder from its ``spec()`` (stored with a run, for predictions later)."""
    kind = spec.get("kind")
    if kind == "tfidf":
        return TfidfEmbedder(spec["vocab"], spec["idf"])
    if kind == "llama":
        return LlamaCppEmbedder(spec.get("model_path") or None, cache=cache)
    raise PromptgymError(f"unknown encoder kind {kind!r} (known: llama, tfidf)")
