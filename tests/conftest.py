"""Shared fixtures. ``scripted_context`` builds a Context on the deterministic scripted model."""

from __future__ import annotations

import os

import pytest

from promptgym.evaluation.cache import ResponseCache
from promptgym.evaluation.evaluator import Budget, Evaluator
from promptgym.models.scripted import ScriptedBackend
from promptgym.optimizers.base import Context
from promptgym.tasks.prompt import Prompt
from promptgym.tasks.task import ChoiceTask

from support import LABELS, make_examples  # noqa: E402,F401  (re-exported for fixtures)

# A package of its own, with its own tests: tests/testing/test_plugin_example.py installs it and runs them.
collect_ignore = ["plugin_example"]


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own PROMPTGYM_HOME (store, cache) unless it sets one itself."""
    monkeypatch.setenv("PROMPTGYM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PROMPTGYM_STORE", raising=False)
    monkeypatch.delenv("PROMPTGYM_CACHE", raising=False)


@pytest.fixture
def scripted_context(tmp_path):
    """Factory: ``scripted_context(budget=..., seed=..., backend=...)`` -> Context on scripted models."""

    def build(budget: int | None = None, seed: int = 0, backend: ScriptedBackend | None = None,
              train: int = 12, dev: int = 0, test: int = 8, cache_name: str = "cache.sqlite") -> Context:
        backend = backend or ScriptedBackend()
        cache = ResponseCache(f"sqlite:///{tmp_path / cache_name}")
        evaluator = Evaluator(backend, backend, cache, Budget(budget))
        test_examples = make_examples(test, prefix="test")
        ctx = Context(task=ChoiceTask(), evaluator=evaluator, train=make_examples(train, "train"),
                      dev=make_examples(dev, "dev"), initial=Prompt("Classify the review."), seed=seed,
                      forbidden_ids=frozenset(e.id for e in test_examples))
        ctx.test_examples = test_examples  # type: ignore[attr-defined]
        return ctx

    return build


def pytest_collection_modifyitems(items):
    """Tests on the throwaway PostgreSQL server carry the ``postgres`` marker (``-m "not postgres"``
    leaves them out); they are in the default run."""
    for item in items:
        if "postgres_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL server for the session (``tests/postgres_server.py``); skips with the
    reason where it cannot start, fails instead when ``PROMPTGYM_REQUIRE_POSTGRES=1`` (CI)."""
    from postgres_server import PostgresServer, Unavailable

    server = PostgresServer()
    try:
        server.start()
    except Unavailable as exc:
        if os.environ.get("PROMPTGYM_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required (PROMPTGYM_REQUIRE_POSTGRES=1) but unavailable: {exc}")
        pytest.skip(f"no PostgreSQL server for the tests: {exc}")
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server):
    """The URL of a fresh, empty database on the session's server (password included)."""
    return postgres_server.create_database()
