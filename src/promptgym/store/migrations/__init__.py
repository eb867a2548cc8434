"""Schema migrations (Alembic) of the run store and the response cache, applied when either is opened.

Each schema has its own script directory (``store/``, ``cache/``) and its own version table
(``promptgym_store_version``, ``promptgym_cache_version``), so the store and the cache may share one
database. No ``alembic.ini`` is involved: ``migrate`` builds the Alembic config in memory and hands the
scripts its connection.

Files made before Alembic (SQLite stores and caches of earlier releases: ``create_all`` and columns
added by hand on open) have some or all tables but no version table. They are upgraded from the
start like an empty database: the revisions that stand for that history (store 0001-0003, cache
0001-0002) create only the tables and add only the columns that are missing (``has_table``,
``has_column``), so every row stays; later revisions are plain.

Two processes opening a fresh database at once must not both create the tables: the migration runs
in one transaction that first takes a lock (PostgreSQL: a transaction-level advisory lock; SQLite:
``BEGIN EXCLUSIVE``); the second opener waits, then finds the schema at head and does nothing. A
database already at head is recognised without taking the lock, so opening a store for reading
never waits on a writer.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection, Engine

from promptgym.errors import PromptgymError
from promptgym.store.db import make_engine, shown_url

HERE = Path(__file__).parent


def has_table(name: str) -> bool:
    """Inside a revision: whether the database has the table already (a pre-Alembic file)."""
    from alembic import op

    return inspect(op.get_bind()).has_table(name)


def has_column(table: str, column: str) -> bool:
    """Inside a revision: whether the table has the column already (a pre-Alembic file)."""
    from alembic import op

    return column in {c["name"] for c in inspect(op.get_bind()).get_columns(table)}


@dataclass(frozen=True)
class Schema:
    name: str
    version_table: str
    lock_key: int  # PostgreSQL advisory lock taken while migrating

    @property
    def scripts(self) -> Path:
        return HERE / self.name

    def config(self, connection: Connection | None = None) -> Config:
        config = Config()
        config.set_main_option("script_location", str(self.scripts))
        config.attributes["version_table"] = self.version_table
        config.attributes["connection"] = connection
        return config

    def head(self) -> str:
        return _head(self.scripts)


# lock keys: "pg_store" and "pg_cache" in ASCII, as 64-bit integers
STORE = Schema("store", "promptgym_store_version", 0x70675F73746F7265)
CACHE = Schema("cache", "promptgym_cache_version", 0x70675F6361636865)


@functools.lru_cache(maxsize=None)
def _head(scripts: Path) -> str:
    """The newest revision in ``scripts`` (read once per process: the files do not change)."""
    config = Config()
    config.set_main_option("script_location", str(scripts))
    return ScriptDirectory.from_config(config).get_current_head()


@functools.lru_cache(maxsize=None)
def _revisions(scripts: Path) -> frozenset[str]:
    config = Config()
    config.set_main_option("script_location", str(scripts))
    return frozenset(script.revision for script in ScriptDirectory.from_config(config).walk_revisions())


def current_revision(connection: Connection, schema: Schema) -> str | None:
    return MigrationContext.configure(connection, opts={"version_table": schema.version_table}).get_current_revision()


def migrate(engine: Engine, schema: Schema) -> None:
    """Bring ``engine``'s database to ``schema``'s head revision (see the module's docstring)."""
    head = schema.head()
    with engine.connect() as conn:
        current = current_revision(conn, schema)
    if current == head:
        return
    if current is not None and current not in _revisions(schema.scripts):
        raise PromptgymError(f"{shown_url(engine.url)}: its {schema.name} schema is at revision {current}, which this "
                             f"promptgym does not know (made by a newer release? upgrade promptgym)")
    locking = _locking_engine(engine)
    try:
        with locking.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": schema.lock_key})
            command.upgrade(schema.config(conn), "head")
    finally:
        if locking is not engine:
            locking.dispose()


def _locking_engine(engine: Engine) -> Engine:
    """For SQLite, an engine of its own whose transactions begin with ``BEGIN EXCLUSIVE`` (the
    driver's own transaction handling off, as SQLAlchemy's pysqlite docs show), so a second opener
    waits (busy timeout) for the first's whole migration; other databases use ``engine``."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return engine  # a memory database has one connection: nobody to race
    locking = make_engine(engine.url.render_as_string(hide_password=False))

    @event.listens_for(locking, "connect")
    def _driver_autocommit(dbapi_conn, _record):  # pragma: no cover - trivial
        dbapi_conn.isolation_level = None

    @event.listens_for(locking, "begin")
    def _begin_exclusive(conn):  # pragma: no cover - trivial
        conn.exec_driver_sql("BEGIN EXCLUSIVE")

    return locking
