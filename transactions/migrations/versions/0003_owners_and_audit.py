"""transfer owners and the audit trail

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from kit.audit import create_audit_objects, drop_audit_objects

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: transfers created before ownership was recorded have no owner, so no
    # customer sees them (operators still do).
    op.add_column("transfers", sa.Column("customer_id", sa.String(64), nullable=True))
    op.create_index(
        "ix_transfers_customer_created_at_id",
        "transfers",
        ["customer_id", "created_at", "id"],
    )
    create_audit_objects(op)


def downgrade() -> None:
    drop_audit_objects(op)
    op.drop_index("ix_transfers_customer_created_at_id", table_name="transfers")
    op.drop_column("transfers", "customer_id")
