"""Engines for the run store and the cache, by SQLAlchemy URL: SQLite (the default) or PostgreSQL.

SQLite gets WAL and a busy timeout so a reader never blocks a running optimization and writers wait
for each other. ``postgresql://`` means psycopg 3 (the ``postgres`` extra), not SQLAlchemy's default
psycopg2. Schemas are made and upgraded by Alembic (``store.migrations``) when a store is opened.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from sqlalchemy import Table, create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.sql.dml import Insert

from promptgym.errors import PromptgymError
from promptgym.secrets import remember_secret

def shown_url(url: str | URL) -> str:
    """The URL as it may be printed or stored: any password replaced by ``***`` (and remembered, so
    ``secrets.scrub`` also removes it from any other message)."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        return str(url)
    if parsed.password:
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


LOCK_WAIT = 60.0  # seconds a SQLite statement waits for another process's write (PROMPTGYM_LOCK_WAIT_SECONDS)
LOCK_NOTICE = 5.0  # after this long waiting, say so on stderr (once per wait)


def lock_wait() -> float:
    """How long a SQLite write waits for another process's write to end (its busy timeout)."""
    raw = os.environ.get("PROMPTGYM_LOCK_WAIT_SECONDS", "").strip()
    try:
        wait = float(raw) if raw else LOCK_WAIT
    except ValueError:
        wait = -1.0
    if not wait >= 0:
        raise PromptgymError(f"PROMPTGYM_LOCK_WAIT_SECONDS must be a number of seconds >= 0 (got {raw!r})")
    return wait


def lock_holders(path: Path) -> list[int]:
    """PIDs of other processes holding a write lock on the SQLite file ``path`` (Linux ``/proc/locks``;
    [] where it cannot be read). In WAL mode the writer holds byte 120 of the ``-shm`` file (the
    WAL write lock); in rollback mode a write lock on the database file itself. Matched by inode
    only: in a container the device numbers of ``stat`` and ``/proc/locks`` may differ."""
    targets: dict[int, bool] = {}  # inode -> is the -shm file
    for file, shm in ((path, False), (path.with_name(path.name + "-shm"), True)):
        try:
            targets[file.stat().st_ino] = shm
        except OSError:
            continue
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    pids: list[int] = []
    for line in lines:
        parts = line.split()  # "1: POSIX  ADVISORY  WRITE 1234 00:2f:5678 120 120" (waiters have "->")
        if len(parts) < 8 or parts[1] != "POSIX" or parts[3] != "WRITE":
            continue
        try:
            pid, inode = int(parts[4]), int(parts[5].rsplit(":", 1)[1])
            start, end = int(parts[6]), (float("inf") if parts[7] == "EOF" else int(parts[7]))
        except (ValueError, IndexError):
            continue
        if inode not in targets or pid in (os.getpid(), *pids):
            continue
        if targets[inode] and not start <= 120 <= end:  # -shm: only the write lock, not a reader's
            continue
        pids.append(pid)
    return pids


def _locked_by(path: Path) -> str:
    pids = lock_holders(path)
    if not pids:
        return "another process"
    return "another process (pid " + ", ".join(str(p) for p in pids) + ")"


def _watch_locks(engine: Engine, path: Path, shown: str, wait: float) -> None:
    """Make a wait on another process's SQLite write visible. A write statement that has waited
    ``LOCK_NOTICE`` seconds says on stderr who holds the file and how long it will wait; when the
    busy timeout runs out, "database is locked" becomes one line saying what happened (a process
    inside a write, e.g. one stopped with SIGSTOP, holds the whole file: SQLite has one writer)."""
    key = "promptgym_lock_watch"

    def notice() -> None:
        print(f"promptgym: {shown} is locked by {_locked_by(path)} inside a write; waiting "
              f"(up to {wait:.0f} s, PROMPTGYM_LOCK_WAIT_SECONDS)", file=sys.stderr, flush=True)

    def done(conn: Any) -> float:
        """Stop watching the connection's statement; how long it ran."""
        timer, started = conn.info.pop(key, (None, time.monotonic()))
        if timer is not None:
            timer.cancel()
        return time.monotonic() - started

    @event.listens_for(engine, "before_cursor_execute")
    def _start(conn, _cursor, statement, _parameters, _context, _executemany):  # noqa: ANN001
        timer = None
        if wait > LOCK_NOTICE and not statement.lstrip()[:6].upper().startswith(("SELECT", "PRAGMA")):
            timer = threading.Timer(LOCK_NOTICE, notice)  # readers never wait for a writer in WAL mode
            timer.daemon = True
            timer.start()
        conn.info[key] = (timer, time.monotonic())

    @event.listens_for(engine, "after_cursor_execute")
    def _end(conn, *_args):  # noqa: ANN001
        done(conn)

    @event.listens_for(engine, "handle_error")
    def _locked(context):  # noqa: ANN001
        waited = done(context.connection) if context.connection is not None else 0.0
        original = context.original_exception
        if isinstance(original, sqlite3.OperationalError) and "locked" in str(original):
            raise PromptgymError(f"{shown} is locked by {_locked_by(path)} inside a write (waited {waited:.0f} s "
                                 f"of up to {wait:.0f} s: the process is running, stopped or hung there); try "
                                 "again once it has finished, or end it (PROMPTGYM_LOCK_WAIT_SECONDS sets the "
                                 "wait)") from None


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
        wait = lock_wait()
        engine = create_engine(parsed, connect_args={"timeout": wait})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        _watch_locks(engine, path, shown_url(parsed), wait)
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
