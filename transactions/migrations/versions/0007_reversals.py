"""reversals: a transfer may reverse another (payee back to payer), with its reason

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Expand only: nullable, so a pod of the previous release keeps inserting transfers.
    op.add_column("transfers", sa.Column("reversal_of", sa.Uuid(), nullable=True))
    op.add_column("transfers", sa.Column("reversal_reason", sa.String(140), nullable=True))
    op.create_foreign_key(
        "fk_transfers_reversal_of", "transfers", "transfers", ["reversal_of"], ["id"]
    )
    # A transfer's reversals, summed under the original's row lock on every new reversal.
    op.create_index("ix_transfers_reversal_of", "transfers", ["reversal_of"])


def downgrade() -> None:
    op.drop_index("ix_transfers_reversal_of", table_name="transfers")
    op.drop_constraint("fk_transfers_reversal_of", "transfers", type_="foreignkey")
    op.drop_column("transfers", "reversal_reason")
    op.drop_column("transfers", "reversal_of")
