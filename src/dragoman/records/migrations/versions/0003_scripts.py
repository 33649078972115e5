"""Scripts: segment order and glossary misses on records, glossaries, subtitle cues.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("translations") as batch:
        batch.add_column(sa.Column("segment_index", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("glossary_misses", sa.JSON(), nullable=True))
    op.create_index(
        "ux_translations_segment",
        "translations",
        ["script_id", "target_lang", "segment_index", sa.text("coalesce(key_id, '')")],
        unique=True,
    )
    op.create_table(
        "script_glossaries",
        sa.Column("owner", sa.String(32), nullable=False),
        sa.Column("script_id", sa.String(128), nullable=False),
        sa.Column("entries", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("owner", "script_id"),
    )
    op.create_table(
        "subtitle_cues",
        sa.Column("translation_id", sa.String(32), primary_key=True),
        sa.Column("cue_index", sa.Integer(), nullable=False),
        sa.Column("start_ms", sa.Integer(), nullable=False),
        sa.Column("end_ms", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("subtitle_cues")
    op.drop_table("script_glossaries")
    op.drop_index("ux_translations_segment", "translations")
    with op.batch_alter_table("translations") as batch:
        batch.drop_column("glossary_misses")
        batch.drop_column("segment_index")
