"""first: a table

Revision ID: 0001
Revises:
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table("readiness_items", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade() -> None:
    op.drop_table("readiness_items")
