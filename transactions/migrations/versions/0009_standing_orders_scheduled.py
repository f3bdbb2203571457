"""standing orders: when their schedule was known to exist, and why one was cancelled;
occurrences refused before their transfer existed (no transfer)

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
    # Expand only, nullable and not backfilled: an existing order without the mark is
    # looked at once by the reconciler, which marks it if its schedule exists (past the
    # deadline, the schedule in Temporal is the truth) and cancels it if it does not.
    op.add_column(
        "standing_orders",
        sa.Column("schedule_created_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column("standing_orders", sa.Column("cancellation_reason", sa.String(64), nullable=True))
    op.create_index(
        "ix_standing_orders_unscheduled_created_at",
        "standing_orders",
        ["created_at"],
        postgresql_where=sa.text("schedule_created_at IS NULL AND status <> 'cancelled'"),
    )
    # An occurrence refused before its transfer existed has none; the previous release
    # reads such a row badly only if it lists that order's occurrences (inner join: hidden).
    op.alter_column("standing_order_occurrences", "transfer_id", nullable=True)
    op.create_check_constraint(
        "ck_standing_order_occurrences_transfer_or_failure",
        "standing_order_occurrences",
        "transfer_id IS NOT NULL OR failed_at IS NOT NULL",
    )


def downgrade() -> None:
    op.drop_constraint(
        "ck_standing_order_occurrences_transfer_or_failure",
        "standing_order_occurrences",
        type_="check",
    )
    op.execute("DELETE FROM standing_order_occurrences WHERE transfer_id IS NULL")
    op.alter_column("standing_order_occurrences", "transfer_id", nullable=False)
    op.drop_index("ix_standing_orders_unscheduled_created_at", table_name="standing_orders")
    op.drop_column("standing_orders", "cancellation_reason")
    op.drop_column("standing_orders", "schedule_created_at")
