"""What both schemas' ``env.py`` run: migrations on the connection the opener passes in.

Alembic's usual ``env.py`` builds its own engine from an ``alembic.ini``; here the opener
(``promptgym.store.migrations.migrate``) already holds a connection inside the transaction that
took the schema lock, so the migrations must run on that one (Alembic's "sharing a connection"
recipe). ``transactional_ddl`` is forced on so SQLite's DDL also runs inside that transaction.
"""

from __future__ import annotations

from alembic import context


def run() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is None:  # pragma: no cover - only the opener runs these scripts
        raise RuntimeError("promptgym's migrations run on open (RunStore / ResponseCache), not from the alembic CLI")
    context.configure(connection=connection, version_table=config.attributes["version_table"],
                      transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()
