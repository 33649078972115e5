"""Live sessions and their segments; partial translations counted on records.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("translations") as batch:
        batch.add_column(sa.Column("revisions", sa.Integer(), nullable=True))
    op.create_table(
        "live_sessions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("join_code", sa.String(16), nullable=False, unique=True),
        sa.Column("script_id", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("source_lang", sa.String(64), nullable=True),
        sa.Column("target_langs", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("close_reason", sa.String(16), nullable=True),
        sa.Column("first_index", sa.Integer(), nullable=False),
        sa.Column("segments", sa.Integer(), nullable=False),
        sa.Column("open_index", sa.Integer(), nullable=True),
        sa.Column("open_text", sa.Text(), nullable=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("active_at", sa.String(32), nullable=False),
        sa.Column("closed_at", sa.String(32), nullable=True),
    )
    op.create_index("ix_live_sessions_open", "live_sessions", ["status", "active_at"])
    op.create_table(
        "live_segments",
        sa.Column("session_id", sa.String(32), nullable=False),
        sa.Column("segment_index", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("session_id", "segment_index"),
    )


def downgrade() -> None:
    op.drop_table("live_segments")
    op.drop_index("ix_live_sessions_open", "live_sessions")
    op.drop_table("live_sessions")
    with op.batch_alter_table("translations") as batch:
        batch.drop_column("revisions")
