"""The run store as first released: runs, candidates, scores, calls (the ledger), artifacts.

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
    if not has_table("runs"):
        op.create_table(
            "runs",
            sa.Column("run_id", sa.String(32), primary_key=True),
            sa.Column("created", sa.Float, nullable=False),
            sa.Column("updated", sa.Float, nullable=False),
            sa.Column("method", sa.String(64), nullable=False),
            sa.Column("dataset", sa.Text, nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("config", sa.Text, nullable=False),
            sa.Column("best_candidate", sa.String(32)),
            sa.Column("best_score", sa.Float),
            sa.Column("result", sa.Text),
        )
    if not has_table("candidates"):
        op.create_table(
            "candidates",
            sa.Column("run_id", sa.String(32), primary_key=True),
            sa.Column("candidate_id", sa.String(32), primary_key=True),
            sa.Column("seq", sa.Integer, nullable=False),
            sa.Column("prompt", sa.Text, nullable=False),
            sa.Column("instruction", sa.Text, nullable=False),
            sa.Column("parents", sa.Text, nullable=False),
            sa.Column("operation", sa.String(64), nullable=False),
            sa.Column("created", sa.Float, nullable=False),
        )
    if not has_table("scores"):
        op.create_table(
            "scores",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("run_id", sa.String(32), nullable=False),
            sa.Column("candidate_id", sa.String(32), nullable=False),
            sa.Column("split", sa.String(16), nullable=False),
            sa.Column("n", sa.Integer, nullable=False),
            sa.Column("score", sa.Float, nullable=False),
            sa.Column("per_example", sa.Text, nullable=False),
            sa.Column("predictions", sa.Text, nullable=False),
            sa.Column("created", sa.Float, nullable=False),
        )
        op.create_index("ix_scores_run_id", "scores", ["run_id"])
    if not has_table("calls"):
        op.create_table(
            "calls",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("run_id", sa.String(32), nullable=False),
            sa.Column("key", sa.String(64), nullable=False),
            sa.Column("role", sa.String(16), nullable=False),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("cached", sa.Boolean, nullable=False),
            sa.Column("charged", sa.Boolean, nullable=False),
            sa.Column("prompt_tokens", sa.Integer, nullable=False),
            sa.Column("completion_tokens", sa.Integer, nullable=False),
            sa.Column("seconds", sa.Float, nullable=False),
            sa.Column("created", sa.Float, nullable=False),
        )
        op.create_index("ix_calls_run_id", "calls", ["run_id"])
    if not has_table("artifacts"):
        op.create_table(
            "artifacts",
            sa.Column("run_id", sa.String(32), primary_key=True),
            sa.Column("name", sa.String(64), primary_key=True),
            sa.Column("data", sa.Text, nullable=False),
            sa.Column("created", sa.Float, nullable=False),
        )


def downgrade() -> None:
    for table in ("artifacts", "calls", "scores", "candidates", "runs"):
        op.drop_table(table)
