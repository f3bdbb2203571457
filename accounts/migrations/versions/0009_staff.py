"""staff: people who sign in with a password and a TOTP code, each with one role

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "staff",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("display_name", sa.String(100), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("totp_secret_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        # The service lower-cases emails; the check keeps a bypass from adding a twin.
        sa.CheckConstraint("email = lower(email)", name="ck_staff_email_lower"),
        sa.CheckConstraint("role IN ('reviewer', 'auditor', 'admin')", name="ck_staff_role"),
        sa.UniqueConstraint("email", name="uq_staff_email"),
    )


def downgrade() -> None:
    op.drop_table("staff")
