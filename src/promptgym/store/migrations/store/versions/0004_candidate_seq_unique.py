"""One candidate per (run, seq): many writers adding candidates to one run cannot take the same
place in its order (``RunStore.add_candidate`` retries when its insert loses the race).

A store written before this could only hold a repeated seq if two writers raced; such a run is
renumbered in its recorded order (seq, then creation time) so the index can be built.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    candidates = sa.table("candidates", sa.column("run_id"), sa.column("candidate_id"), sa.column("seq"),
                          sa.column("created"))
    repeated = conn.execute(sa.select(candidates.c.run_id).group_by(candidates.c.run_id, candidates.c.seq)
                            .having(sa.func.count() > 1).distinct()).scalars().all()
    for run_id in repeated:
        rows = conn.execute(sa.select(candidates.c.candidate_id).where(candidates.c.run_id == run_id)
                            .order_by(candidates.c.seq, candidates.c.created, candidates.c.candidate_id)).scalars().all()
        for seq, candidate_id in enumerate(rows):
            conn.execute(sa.update(candidates).where(candidates.c.run_id == run_id,
                                                     candidates.c.candidate_id == candidate_id).values(seq=seq))
    op.create_index("uq_candidates_run_seq", "candidates", ["run_id", "seq"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_candidates_run_seq", table_name="candidates")
