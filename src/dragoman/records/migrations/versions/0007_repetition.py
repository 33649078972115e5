"""What the embedded model's loop guard did to a translation.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("translations") as batch:
        batch.add_column(sa.Column("repetition", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("translations") as batch:
        batch.drop_column("repetition")
