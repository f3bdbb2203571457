"""accounts, ledger transfers and the append-only journal

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TOTALS = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("customer_id", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="active"),
        sa.Column("debits_must_not_exceed_credits", sa.Boolean(), nullable=False),
        sa.Column("credits_must_not_exceed_debits", sa.Boolean(), nullable=False),
        sa.Column("max_transfer_amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("daily_outflow_limit_minor", sa.BigInteger(), nullable=True),
        *(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0") for name in _TOTALS),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("kind IN ('customer', 'system')", name="ck_accounts_kind"),
        sa.CheckConstraint("status IN ('active', 'frozen', 'closed')", name="ck_accounts_status"),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="ck_accounts_currency"),
        # A customer account has an owner; a system account belongs to the bank.
        sa.CheckConstraint("(kind = 'system') = (customer_id IS NULL)", name="ck_accounts_owner"),
        # System accounts are where money enters and leaves: their balance may go either way.
        sa.CheckConstraint(
            "kind <> 'system' OR NOT (debits_must_not_exceed_credits OR credits_must_not_exceed_debits)",
            name="ck_accounts_system_unconstrained",
        ),
        sa.CheckConstraint(
            "NOT (debits_must_not_exceed_credits AND credits_must_not_exceed_debits)",
            name="ck_accounts_one_balance_flag",
        ),
        *(
            sa.CheckConstraint(f"{name} >= 0", name=f"ck_accounts_{name}_nonnegative")
            for name in _TOTALS
        ),
        # The balance flags hold in the database too, whatever the application does.
        sa.CheckConstraint(
            "NOT debits_must_not_exceed_credits OR debits_pending + debits_posted <= credits_posted",
            name="ck_accounts_debits_within_credits",
        ),
        sa.CheckConstraint(
            "NOT credits_must_not_exceed_debits OR credits_pending + credits_posted <= debits_posted",
            name="ck_accounts_credits_within_debits",
        ),
        sa.CheckConstraint(
            "max_transfer_amount_minor IS NULL OR max_transfer_amount_minor > 0",
            name="ck_accounts_max_transfer_positive",
        ),
        sa.CheckConstraint(
            "daily_outflow_limit_minor IS NULL OR daily_outflow_limit_minor > 0",
            name="ck_accounts_daily_outflow_positive",
        ),
    )
    op.create_index(
        "uq_accounts_system_currency",
        "accounts",
        ["currency"],
        unique=True,
        postgresql_where=sa.text("kind = 'system'"),
    )
    # Cursor pagination walks (created_at, id), optionally within one customer.
    op.create_index("ix_accounts_created_at_id", "accounts", ["created_at", "id"])
    op.create_index(
        "ix_accounts_customer_created_at_id", "accounts", ["customer_id", "created_at", "id"]
    )

    op.create_table(
        "ledger_transfers",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("debit_account_id", sa.Uuid(), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("credit_account_id", sa.Uuid(), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        sa.Column("pending_id", sa.Uuid(), sa.ForeignKey("ledger_transfers.id"), nullable=True),
        sa.Column("timeout_seconds", sa.Integer(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reference", sa.String(140), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "kind IN ('single_phase', 'pending', 'post_pending', 'void_pending')",
            name="ck_ledger_transfers_kind",
        ),
        sa.CheckConstraint("amount_minor > 0", name="ck_ledger_transfers_amount_positive"),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="ck_ledger_transfers_currency"),
        sa.CheckConstraint(
            "debit_account_id <> credit_account_id", name="ck_ledger_transfers_two_accounts"
        ),
        sa.CheckConstraint(
            "(kind IN ('post_pending', 'void_pending')) = (pending_id IS NOT NULL)",
            name="ck_ledger_transfers_pending_id",
        ),
        sa.CheckConstraint(
            "timeout_seconds IS NULL OR (kind = 'pending' AND timeout_seconds > 0)",
            name="ck_ledger_transfers_timeout",
        ),
        sa.CheckConstraint(
            "(timeout_seconds IS NULL) = (expires_at IS NULL)",
            name="ck_ledger_transfers_expiry",
        ),
    )
    # A pending transfer resolves (post or void) once: the database holds to it as well.
    op.create_index(
        "uq_ledger_transfers_pending_id",
        "ledger_transfers",
        ["pending_id"],
        unique=True,
        postgresql_where=sa.text("pending_id IS NOT NULL"),
    )
    # An account's transfers by time: its statement and its daily outflow.
    op.create_index(
        "ix_ledger_transfers_debit_account_id_created_at",
        "ledger_transfers",
        ["debit_account_id", "created_at"],
    )
    op.create_index(
        "ix_ledger_transfers_credit_account_id_created_at",
        "ledger_transfers",
        ["credit_account_id", "created_at"],
    )
    # The sweeper that voids expired holds finds them without scanning every transfer.
    op.create_index(
        "ix_ledger_transfers_expires_at",
        "ledger_transfers",
        ["expires_at"],
        postgresql_where=sa.text("expires_at IS NOT NULL"),
    )

    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), primary_key=True),
        sa.Column("transfer_id", sa.Uuid(), sa.ForeignKey("ledger_transfers.id"), nullable=False),
        sa.Column("account_id", sa.Uuid(), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("balance", sa.String(16), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "balance IN ('debits_pending', 'debits_posted', 'credits_pending', 'credits_posted')",
            name="ck_ledger_entries_balance",
        ),
        # Signed: a post or void releases a hold with a negative pending entry.
        sa.CheckConstraint("amount_minor <> 0", name="ck_ledger_entries_amount_nonzero"),
    )
    # An account's statement and the totals check read its entries in journal order.
    op.create_index("ix_ledger_entries_account_id_id", "ledger_entries", ["account_id", "id"])
    op.create_index("ix_ledger_entries_transfer_id", "ledger_entries", ["transfer_id"])

    # History is corrected by new transfers, never rewritten: the database refuses to.
    op.execute(
        """
        CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'ledger table % is append-only: % refused', TG_TABLE_NAME, TG_OP
                USING HINT = 'Correct a ledger transfer with a new, compensating transfer.';
        END;
        $$
        """
    )
    for table in ("ledger_transfers", "ledger_entries"):
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()"
        )


def downgrade() -> None:
    op.drop_table("ledger_entries")
    op.drop_table("ledger_transfers")
    op.execute("DROP FUNCTION ledger_refuse_change()")
    op.drop_table("accounts")
