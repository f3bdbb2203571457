"""idempotency key purge index, callback clients and their receipts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])

    op.create_table(
        "callback_clients",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(48), nullable=False),
        sa.Column("description", sa.String(140), nullable=True),
        sa.Column("secret_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.UniqueConstraint("name", name="uq_callback_clients_name"),
    )

    op.create_table(
        "callback_receipts",
        sa.Column(
            "client_id",
            sa.Uuid(),
            sa.ForeignKey("callback_clients.id", name="fk_callback_receipts_client_id"),
            nullable=False,
        ),
        sa.Column("webhook_id", sa.String(255), nullable=False),
        sa.Column(
            "transfer_id",
            sa.Uuid(),
            sa.ForeignKey("transfers.id", name="fk_callback_receipts_transfer_id"),
            nullable=False,
        ),
        sa.Column("decision", sa.String(10), nullable=False),
        sa.Column("external_reference", sa.String(64), nullable=False),
        sa.Column("response_body", postgresql.JSONB(), nullable=False),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("client_id", "webhook_id"),
        sa.CheckConstraint(
            "decision IN ('approve', 'reject')", name="ck_callback_receipts_decision"
        ),
    )
    op.create_index("ix_callback_receipts_transfer_id", "callback_receipts", ["transfer_id"])


def downgrade() -> None:
    op.drop_table("callback_receipts")
    op.drop_table("callback_clients")
    op.drop_index("ix_idempotency_keys_expires_at", table_name="idempotency_keys")
