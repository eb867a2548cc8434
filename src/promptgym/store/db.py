"""Engines: SQLite gets WAL and a busy timeout so a reader never blocks a running optimization."""

from __future__ import annotations

from pathlib import Path

import time

from sqlalchemy import MetaData, create_engine, event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from promptgym.errors import PromptgymError


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PromptgymError(f"{url}: cannot create the folder ({exc.strerror})") from None
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(url)


def create_tables(metadata: MetaData, engine: Engine) -> None:
    """``create_all`` that tolerates another process creating the same tables at the same moment
    (two runs starting on a fresh PROMPTGYM_HOME: "table ... already exists")."""
    for attempt in range(5):
        try:
            metadata.create_all(engine)
            return
        except OperationalError as exc:
            if "already exists" not in str(exc) or attempt == 4:
                raise
            time.sleep(0.05 * (attempt + 1))


def add_missing_columns(metadata: MetaData, engine: Engine) -> None:
    """Files made before a column existed get it (nullable, no default): a small stand-in for a
    migration tool. Two processes may race here: a duplicate column is fine."""
    for table in metadata.sorted_tables:
        have = {c["name"] for c in inspect(engine).get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            kind = column.type.compile(dialect=engine.dialect)
            try:
                with engine.begin() as conn:
                    conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))
            except OperationalError as exc:
                if "duplicate column" not in str(exc).lower():
                    raise
