"""The translations table.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "translations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("script_id", sa.String(128), nullable=True),
        sa.Column("source_lang", sa.String(64), nullable=True),
        sa.Column("target_lang", sa.String(64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("translation", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("first_token_ms", sa.Integer(), nullable=True),
        sa.Column("total_ms", sa.Integer(), nullable=True),
    )
    op.create_index("ix_translations_created", "translations", ["created_at", "id"])
    op.create_index(
        "ix_translations_script_created", "translations", ["script_id", "created_at", "id"]
    )
    op.create_index("ix_translations_status", "translations", ["status"])


def downgrade() -> None:
    op.drop_table("translations")
