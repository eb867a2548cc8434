"""Engines for the run store and the cache, by SQLAlchemy URL: SQLite (the default) or PostgreSQL.

SQLite gets WAL and a busy timeout so a reader never blocks a running optimization and writers wait
for each other. ``postgresql://`` means psycopg 3 (the ``postgres`` extra), not SQLAlchemy's default
psycopg2. Schemas are made and upgraded by Alembic (``store.migrations``) when a store is opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from sqlalchemy import Table, create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.sql.dml import Insert

from promptgym.errors import PromptgymError

def shown_url(url: str | URL) -> str:
    """The URL as it may be printed or stored: any password replaced by ``***`` (and remembered, so
    ``models.factory.scrub`` also removes it from any other message)."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        return str(url)
    if parsed.password:
        from promptgym.models.factory import remember_secret

        remember_secret(str(parsed.password))
    return parsed.render_as_string(hide_password=True)


def without_password(url: str) -> str:
    """The URL to keep in a run's config: no password at all (a resume in another process takes it
    from ``PGPASSWORD``, ``~/.pgpass`` or the same URL given again)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return url
    if not parsed.password:
        return url
    shown_url(parsed)  # remember it for scrub
    # URL.create, not URL.set: set(password=None) means "leave the password as it is"
    return URL.create(parsed.drivername, parsed.username, None, parsed.host, parsed.port, parsed.database,
                      parsed.query).render_as_string(hide_password=False)


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise PromptgymError(f"{url}: not a database URL (e.g. sqlite:///PATH or postgresql://USER@HOST/DB)") from None
    if parsed.drivername == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PromptgymError(f"{url}: cannot create the folder ({exc.strerror})") from None
        engine = create_engine(parsed, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise PromptgymError(f"{shown_url(parsed)}: the run store and cache run on SQLite or PostgreSQL "
                             f"(sqlite:///PATH, postgresql://USER@HOST/DB), not {parsed.get_backend_name()}")
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        # pre_ping: a pooled connection the server dropped (restart, idle timeout) is replaced, not failed on
        return create_engine(parsed, pool_pre_ping=parsed.get_backend_name() != "sqlite")
    except (NoSuchModuleError, ImportError) as exc:
        hint = " (pip install 'promptgym[postgres]')" if parsed.get_backend_name() == "postgresql" else ""
        raise PromptgymError(f"{shown_url(parsed)}: no driver for this database: {exc}{hint}") from None


def reason(exc: SQLAlchemyError) -> str:
    """The driver's own words, on one line (psycopg: 'connection failed: ... password authentication
    failed for user "x"'), without SQLAlchemy's statement dump and background link."""
    text = str(getattr(exc, "orig", None) or exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines)[:300] if lines else exc.__class__.__name__


def insert_new(engine: Engine, table: Table, key: Sequence[str]) -> Insert:
    """``INSERT ... ON CONFLICT (key) DO NOTHING`` in the engine's dialect (PostgreSQL, SQLite): a
    row whose key is already there is left as it is, without an error and without aborting the
    transaction; any other unique index still raises ``IntegrityError``."""
    return _dialect_insert(engine)(table).on_conflict_do_nothing(index_elements=list(key))


def upsert(engine: Engine, table: Table, key: Sequence[str], values: dict[str, Any]) -> Insert:
    """``INSERT ... ON CONFLICT (key) DO UPDATE`` of ``values``' non-key columns."""
    statement = _dialect_insert(engine)(table).values(**values)
    return statement.on_conflict_do_update(index_elements=list(key),
                                           set_={k: statement.excluded[k] for k in values if k not in key})


def _dialect_insert(engine: Engine) -> Callable[[Table], Any]:
    """The dialect's own ``insert`` (both have ``on_conflict_*``); ``make_engine`` admits no other."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert
