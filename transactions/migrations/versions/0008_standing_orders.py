"""standing orders (one Temporal Schedule each) and their occurrences; future-dated
transfers (`execute_at`, status `scheduled`)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Expand only: nullable, and a status the previous release never writes.
    op.add_column("transfers", sa.Column("execute_at", sa.DateTime(timezone=True), nullable=True))
    op.drop_constraint("ck_transfers_status_known", "transfers", type_="check")
    op.create_check_constraint(
        "ck_transfers_status_known",
        "transfers",
        "status IN ('scheduled', 'pending', 'in_review', 'completed', 'rejected',"
        " 'declined', 'expired', 'cancelled')",
    )
    op.create_table(
        "standing_orders",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("source_account_id", sa.Uuid(), nullable=False),
        sa.Column("target_account_id", sa.Uuid(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("description", sa.String(140), nullable=True),
        sa.Column("interval", sa.String(32), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("count", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("amount_minor > 0", name="ck_standing_orders_amount_positive"),
        sa.CheckConstraint(
            "source_account_id <> target_account_id", name="ck_standing_orders_distinct_accounts"
        ),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="ck_standing_orders_currency_code"),
        sa.CheckConstraint(
            "status IN ('active', 'paused', 'cancelled')", name="ck_standing_orders_status_known"
        ),
        sa.CheckConstraint("count IS NULL OR count > 0", name="ck_standing_orders_count_positive"),
        sa.CheckConstraint(
            "end_at IS NULL OR end_at > start_at", name="ck_standing_orders_end_after_start"
        ),
    )
    op.create_index(
        "ix_standing_orders_customer_created_at_id",
        "standing_orders",
        ["customer_id", "created_at", "id"],
    )
    op.create_table(
        "standing_order_occurrences",
        sa.Column(
            "standing_order_id",
            sa.Uuid(),
            sa.ForeignKey("standing_orders.id", name="fk_standing_order_occurrences_order_id"),
            primary_key=True,
        ),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), primary_key=True),
        sa.Column(
            "transfer_id",
            sa.Uuid(),
            sa.ForeignKey("transfers.id", name="fk_standing_order_occurrences_transfer_id"),
            nullable=False,
            unique=True,
        ),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failure_reason", sa.String(500), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )


def downgrade() -> None:
    op.drop_constraint("ck_transfers_status_known", "transfers", type_="check")
    op.create_check_constraint(
        "ck_transfers_status_known",
        "transfers",
        "status IN ('pending', 'in_review', 'completed', 'rejected', 'declined',"
        " 'expired', 'cancelled')",
    )
    op.drop_column("transfers", "execute_at")
    op.drop_table("standing_order_occurrences")
    op.drop_index("ix_standing_orders_customer_created_at_id", table_name="standing_orders")
    op.drop_table("standing_orders")
