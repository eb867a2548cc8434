"""The response cache as first released: one row per request key.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from promptgym.store.migrations import has_table

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Files from before Alembic may hold some of these tables already (see migrations.__init__).
    if not has_table("responses"):
        op.create_table(
            "responses",
            sa.Column("key", sa.String(64), primary_key=True),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("response", sa.Text, nullable=False),
            sa.Column("created", sa.Float, nullable=False),
        )


def downgrade() -> None:
    op.drop_table("responses")
