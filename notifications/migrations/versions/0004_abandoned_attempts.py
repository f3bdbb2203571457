"""abandoned attempts: when a delivery's lease was taken, and indexes of leased rows

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-15
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "webhook_deliveries", sa.Column("leased_at", sa.DateTime(timezone=True), nullable=True)
    )
    # A row leased now was claimed by the release before this one, which wrote nothing
    # else to it after the claim: its updated_at is when the lease was taken.
    op.execute("UPDATE webhook_deliveries SET leased_at = updated_at WHERE lease_token IS NOT NULL")
    op.create_index(
        "ix_webhook_deliveries_leased",
        "webhook_deliveries",
        ["lease_expires_at"],
        postgresql_where=sa.text("lease_token IS NOT NULL"),
    )
    op.create_index(
        "ix_email_messages_leased",
        "email_messages",
        ["lease_expires_at"],
        postgresql_where=sa.text("lease_token IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_email_messages_leased", table_name="email_messages")
    op.drop_index("ix_webhook_deliveries_leased", table_name="webhook_deliveries")
    op.drop_column("webhook_deliveries", "leased_at")
