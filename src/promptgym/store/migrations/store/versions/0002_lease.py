"""The lease (store.lease): who runs a run now and when it last said so.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from promptgym.store.migrations import has_column

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for column in (sa.Column("owner_host", sa.String(255), nullable=True),
                   sa.Column("owner_pid", sa.Integer, nullable=True),
                   sa.Column("owner_token", sa.String(32), nullable=True),
                   sa.Column("heartbeat", sa.Float, nullable=True)):
        if not has_column("runs", column.name):  # added by hand on open before Alembic
            op.add_column("runs", column)


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for name in ("heartbeat", "owner_token", "owner_pid", "owner_host"):
            batch.drop_column(name)
