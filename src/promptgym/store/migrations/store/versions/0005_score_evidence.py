"""Soft evidence with each score row: per example, the probability the model gives the right option
and its margin over the best wrong one (JSON example id -> value), for choice tasks scored by
log-probability; NULL otherwise and in rows written before this revision.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from promptgym.store.migrations import has_column

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A store made before Alembic is stamped at its first revision and upgraded from there, though
    # its tables were created from today's metadata (columns of later revisions included).
    for name in ("probability", "margin"):
        if not has_column("scores", name):
            op.add_column("scores", sa.Column(name, sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scores") as batch:
        batch.drop_column("margin")
        batch.drop_column("probability")
