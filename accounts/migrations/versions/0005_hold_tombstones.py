"""tombstones: voids of holds the ledger had not seen, refusing those holds if they arrive

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A void may arrive before the hold it voids (a slow first attempt to place it, whose
    # caller has given up): the void is kept here, and a hold with its id is then refused.
    # No foreign key to ledger_transfers: the hold it names does not exist, and never will.
    op.create_table(
        "ledger_hold_tombstones",
        sa.Column("pending_id", sa.Uuid(), primary_key=True),
        sa.Column("void_id", sa.Uuid(), nullable=False, unique=True),
        sa.Column("debit_account_id", sa.Uuid(), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("credit_account_id", sa.Uuid(), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        sa.Column("reference", sa.String(140), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount_minor > 0", name="ck_ledger_hold_tombstones_amount_positive"),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="ck_ledger_hold_tombstones_currency"),
        sa.CheckConstraint(
            "debit_account_id <> credit_account_id", name="ck_ledger_hold_tombstones_two_accounts"
        ),
    )
    # Like the journal, a tombstone is never changed or removed (ledger_refuse_change: 0001).
    op.execute(
        "CREATE TRIGGER ledger_hold_tombstones_append_only BEFORE UPDATE OR DELETE "
        "ON ledger_hold_tombstones FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER ledger_hold_tombstones_no_truncate BEFORE TRUNCATE "
        "ON ledger_hold_tombstones FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()"
    )


def downgrade() -> None:
    op.drop_table("ledger_hold_tombstones")
