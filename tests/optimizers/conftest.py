"""Optimizer fixtures: ``build`` makes the conformance suite's scripted Context (``promptgym.testing``)."""

from __future__ import annotations

import pytest

from promptgym.optimizers.base import Context
from promptgym.testing import RecordingBackend, make_context


@pytest.fixture
def build(tmp_path):
    """``build(budget, backend, cache_name, seed)`` -> Context with 8 train, 4 dev, 6 held-out."""

    def make(budget: int | None, backend: RecordingBackend, cache_name: str = "cache.sqlite",
             seed: int = 0) -> Context:
        return make_context(budget, backend, tmp_path / cache_name, seed)

    return make
