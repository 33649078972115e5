"""API keys, and the key that made each translation.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("rpm", sa.Integer(), nullable=True),
        sa.Column("cpm", sa.Integer(), nullable=True),
        sa.Column("concurrency", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("revoked_at", sa.String(32), nullable=True),
    )
    with op.batch_alter_table("translations") as batch:
        batch.add_column(sa.Column("key_id", sa.String(32), nullable=True))
    op.create_index("ix_translations_key_created", "translations", ["key_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_translations_key_created", "translations")
    with op.batch_alter_table("translations") as batch:
        batch.drop_column("key_id")
    op.drop_table("api_keys")
