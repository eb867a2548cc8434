"""Soft evidence with each score row: per example, the probability the model gives the right option
and its margin over the best wrong one (JSON example id -> value), for choice tasks scored by
log-probability; NULL otherwise and in rows written before this revision.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("scores", sa.Column("probability", sa.Text, nullable=True))
    op.add_column("scores", sa.Column("margin", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scores") as batch:
        batch.drop_column("margin")
        batch.drop_column("probability")
