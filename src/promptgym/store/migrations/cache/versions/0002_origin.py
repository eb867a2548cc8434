"""The run whose call made each answer (NULL: made outside a run), for resume after a kill.

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
    if not has_column("responses", "origin"):  # added by hand on open before Alembic
        op.add_column("responses", sa.Column("origin", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("responses") as batch:
        batch.drop_column("origin")
