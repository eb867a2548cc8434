"""The throwaway server's fixture says why it cannot start instead of crashing."""

from __future__ import annotations

import pytest

import postgres_server


def test_no_postgresql_binaries_is_a_reason_to_skip(monkeypatch):
    monkeypatch.setattr(postgres_server.glob, "glob", lambda pattern: [])
    with pytest.raises(postgres_server.Unavailable, match=r"PostgreSQL is not installed .*apt-get install postgresql"):
        postgres_server.PostgresServer().start()
