"""when each transfer's saga was known to be started, for the reconciler

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Expand only: nullable, so a pod of the previous release keeps inserting transfers
    # (which the reconciler then finds, and starts idempotently: same workflow id).
    op.add_column(
        "transfers", sa.Column("saga_started_at", sa.DateTime(timezone=True), nullable=True)
    )
    # A transfer that has reported a step, or has ended, certainly had its saga started.
    # The rest are left for the reconciler, which asks Temporal (a start is idempotent).
    op.execute(
        "UPDATE transfers SET saga_started_at = updated_at "
        "WHERE version > 0 OR status NOT IN ('pending', 'in_review')"
    )
    # The reconciler's look-up: transfers whose saga is not known to run, oldest first.
    op.create_index(
        "ix_transfers_saga_unstarted_created_at",
        "transfers",
        ["created_at"],
        postgresql_where=sa.text("saga_started_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_transfers_saga_unstarted_created_at", table_name="transfers")
    op.drop_column("transfers", "saga_started_at")
