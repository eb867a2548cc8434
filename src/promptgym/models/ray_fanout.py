"""One evaluation batch's HTTP calls spread over Ray tasks (``promptgym bench --executor ray``
with ``PROMPTGYM_RAY_FANOUT=CHUNK``; issue 16, item 1).

``RayFanOut`` wraps an HTTP backend (the OpenAI-compatible one) and is a ``Backend`` itself, with
the wrapped backend's identity, so cache keys do not change. The evaluator still decides
everything that is decided once per run: it looks the batch up in the cache, takes from the budget
only what is left (``allowed``) and then hands this backend exactly the requests it may send. Only
those requests leave, in chunks of ``chunk``, one Ray task each (``num_cpus=0``: the tasks wait on
the network); each chunk's answers come back to the run's process, which calls ``on_result``
(cache, ledger, budget) as before. So the hard cap holds by construction: a worker can only make
calls the run already allowed. A chunk whose worker died is sent again by Ray (``max_retries``):
its calls were in flight, as with any kill.

The tasks rebuild the backend from its model spec (one per worker process, kept): a key written
into a model URL would travel in the task's arguments, so give keys by ``OPENAI_API_KEY`` on the
worker nodes.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Sequence

from promptgym.errors import PromptgymError, ScoringUnavailable
from promptgym.models.base import Backend, OnResult
from promptgym.models.factory import make_backend

RAY_MISSING = "--executor ray needs Ray: pip install 'promptgym[ray]'"

_BACKENDS: dict[str, Backend] = {}  # per worker process: spec -> backend (its HTTP client kept warm)


class RayFanOut:
    def __init__(self, spec: str, inner: Backend, chunk: int = 8, max_retries: int = 3):
        if chunk < 1:
            raise PromptgymError(f"PROMPTGYM_RAY_FANOUT must be a chunk size of at least 1 (got {chunk})")
        self.spec, self.inner, self.chunk, self.max_retries = spec, inner, chunk, max_retries
        self.identity = inner.identity
        self.supports_scoring = inner.supports_scoring
        self.supports_embedding = inner.supports_embedding
        self.max_concurrency = inner.max_concurrency
        self.last_faults: dict[str, int] = {}
        self.chunks_sent = 0

    def __getattr__(self, name: str) -> Any:  # preflight, count_tokens, context_limit, chat_template...
        return getattr(self.inner, name)

    def generate(self, requests: Sequence, on_result: OnResult) -> None:
        self._fan_out("generate", requests, on_result)

    def score(self, requests: Sequence, on_result: OnResult) -> None:
        self._fan_out("score", requests, on_result)

    def embed(self, requests: Sequence, on_result: OnResult) -> None:
        self._fan_out("embed", requests, on_result)

    def close(self) -> None:
        self.inner.close()

    def _fan_out(self, kind: str, requests: Sequence, on_result: OnResult) -> None:
        if not requests:
            return
        ray = import_ray()
        task = ray.remote(call_chunk).options(num_cpus=0, max_retries=self.max_retries)
        waiting = {}
        for start in range(0, len(requests), self.chunk):
            indices = list(range(start, min(start + self.chunk, len(requests))))
            waiting[task.remote(self.spec, kind, [requests[i] for i in indices])] = indices
            self.chunks_sent += 1
        failure = None
        while waiting:
            ready, _ = ray.wait(list(waiting), num_returns=1)
            indices = waiting.pop(ready[0])
            answered, error = ray.get(ready[0])
            for j, response, faults in answered:  # what a chunk got before an error stays reported
                self.last_faults = faults
                on_result(indices[j], response)
            failure = failure or error
        if isinstance(failure, ScoringUnavailable):
            raise failure  # the caller may answer by generation instead
        if failure:
            raise PromptgymError(failure)


def call_chunk(spec: str, kind: str, requests: list) -> tuple[list[tuple[int, Any, dict]],
                                                               str | ScoringUnavailable | None]:
    """A Ray task's body: the chunk's calls on this worker's backend for ``spec``; the answers
    (index, response, faults) and the error that stopped the chunk, if one did (one line; a
    ``ScoringUnavailable`` as itself)."""
    backend = _BACKENDS.get(spec)
    if backend is None:
        backend = _BACKENDS[spec] = make_backend(spec)
    answered: list[tuple[int, Any, dict]] = []

    def keep(i: int, response: Any) -> None:
        answered.append((i, response, dict(getattr(backend, "last_faults", None) or {})))

    try:
        getattr(backend, kind)(requests, keep)
    except ScoringUnavailable as exc:
        return answered, exc
    except Exception as exc:
        return answered, str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return answered, None


def fanned_out(spec: str, backend: Backend) -> Backend:
    """An HTTP model's batches spread over Ray tasks, when ``PROMPTGYM_RAY_FANOUT`` (a chunk size)
    is set and this process is part of a Ray job (a cell on ``--executor ray``); else ``backend``.
    Ray is looked for only where it was imported already: a run outside Ray never loads it."""
    chunk = os.environ.get("PROMPTGYM_RAY_FANOUT", "").strip()
    if not chunk or not spec.startswith("openai:") or "ray" not in sys.modules:
        return backend
    if not sys.modules["ray"].is_initialized():
        return backend
    try:
        size = int(chunk)
    except ValueError:
        raise PromptgymError(f"PROMPTGYM_RAY_FANOUT must be a chunk size, a whole number (got {chunk!r})") from None
    return RayFanOut(spec, backend, chunk=size)


def import_ray() -> Any:
    """Ray (the ``ray`` extra), imported only when asked for; missing: one line."""
    try:
        import ray
    except ImportError:
        raise PromptgymError(RAY_MISSING) from None
    return ray
