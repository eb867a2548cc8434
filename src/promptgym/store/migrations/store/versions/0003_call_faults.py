"""Faults met on the way to a call's answer (JSON kind -> count), NULL when none.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from promptgym.store.migrations import has_column

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if not has_column("calls", "faults"):  # added by hand on open before Alembic
        op.add_column("calls", sa.Column("faults", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("faults")
