"""Upstreams: the one that answered and the attempts before it; the runners of records.

Records from before this revision keep `null` in `upstream` and `attempts` (it is not known
which upstream answered them), and `null` in `runner` (left `streaming`, they are orphans).

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("translations") as batch:
        batch.add_column(sa.Column("upstream", sa.String(64), nullable=True))
        batch.add_column(sa.Column("attempts", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("runner", sa.String(32), nullable=True))
    op.create_table(
        "runners",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started", sa.String(32), nullable=False),
        sa.Column("seen_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("runners")
    with op.batch_alter_table("translations") as batch:
        batch.drop_column("runner")
        batch.drop_column("attempts")
        batch.drop_column("upstream")
