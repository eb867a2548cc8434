"""Alembic environment of the cache schema (see env_common)."""

from promptgym.store.migrations.env_common import run

run()
