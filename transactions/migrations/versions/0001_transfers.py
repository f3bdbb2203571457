"""transfers, transfer steps and idempotency keys

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "transfers",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("source_account_id", sa.Uuid(), nullable=False),
        sa.Column("target_account_id", sa.Uuid(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("description", sa.String(140), nullable=True),
        sa.Column("metadata", postgresql.JSONB(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("fraud", postgresql.JSONB(none_as_null=True), nullable=True),
        sa.Column("hold_id", sa.Uuid(), nullable=True),
        sa.Column("posting_id", sa.Uuid(), nullable=True),
        sa.Column("failure_reason", sa.String(500), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("amount_minor > 0", name="ck_transfers_amount_positive"),
        sa.CheckConstraint(
            "source_account_id <> target_account_id", name="ck_transfers_distinct_accounts"
        ),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="ck_transfers_currency_code"),
        sa.CheckConstraint("version >= 0", name="ck_transfers_version_not_negative"),
        sa.CheckConstraint(
            "status IN ('pending', 'in_review', 'completed', 'rejected', 'declined', 'expired', 'cancelled')",
            name="ck_transfers_status_known",
        ),
    )
    # Listing is newest first by (created_at, id), optionally by status or by account
    # (an account matches as source or as target); btree indexes scan backwards as well.
    op.create_index("ix_transfers_created_at_id", "transfers", ["created_at", "id"])
    op.create_index(
        "ix_transfers_status_created_at_id", "transfers", ["status", "created_at", "id"]
    )
    op.create_index(
        "ix_transfers_source_created_at_id",
        "transfers",
        ["source_account_id", "created_at", "id"],
    )
    op.create_index(
        "ix_transfers_target_created_at_id",
        "transfers",
        ["target_account_id", "created_at", "id"],
    )

    op.create_table(
        "transfer_steps",
        sa.Column(
            "transfer_id",
            sa.Uuid(),
            sa.ForeignKey("transfers.id", name="fk_transfer_steps_transfer_id"),
            nullable=False,
        ),
        sa.Column("step", sa.String(40), nullable=False),
        sa.Column("outcome", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.String(500), nullable=True),
        sa.Column(
            "recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("transfer_id", "step"),
        sa.CheckConstraint("version >= 1", name="ck_transfer_steps_version_positive"),
    )

    op.create_table(
        "idempotency_keys",
        sa.Column("caller", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("transfer_id", sa.Uuid(), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", postgresql.JSONB(none_as_null=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("caller", "key"),
        sa.CheckConstraint("state IN ('in_flight', 'completed')", name="ck_idempotency_keys_state"),
        sa.CheckConstraint(
            "state <> 'completed' OR (response_status IS NOT NULL AND response_body IS NOT NULL)",
            name="ck_idempotency_keys_completed_has_response",
        ),
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("transfer_steps")
    op.drop_table("transfers")
