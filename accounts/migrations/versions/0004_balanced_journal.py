"""the journal balances by construction: the database refuses entries that do not

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Once per INSERT statement (not per row), over the statement's entries as a transition
# table: set-based, so a batch's 2,000 entries cost one join and one aggregate. Per
# transfer in the statement: its entries balance per phase, on their own, so a transfer's
# entries are written in one statement (as the service does); the journal is append-only,
# so every transfer's entries balance. Each entry's transfer exists and moves money of the
# entry's account: with the transfers' own foreign keys (and transfers never deleted), the
# guarantee of the foreign keys 0002 dropped, at a fraction of their cost (see
# docs/decisions/0003-journal-integrity.md).
#
# The function keeps its plans for the session, made with the table statistics of the
# first call: on a young journal the planner hashes the statement's entries and scans all of
# ledger_transfers, and the plan stays while the table grows (every posting would read every
# transfer). The settings below leave it one plan, whatever the statistics: a nested loop of
# primary-key look-ups, one per entry.
_CHECK_ENTRIES = """
CREATE FUNCTION ledger_entries_check() RETURNS trigger LANGUAGE plpgsql
    SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off
AS $$
DECLARE
    refused record;
BEGIN
    SELECT entry.transfer_id, entry.account_id, transfer.id IS NULL AS transfer_missing
    INTO refused
    FROM inserted_entries AS entry
    LEFT JOIN ledger_transfers AS transfer ON transfer.id = entry.transfer_id
    WHERE transfer.id IS NULL
       OR entry.account_id NOT IN (transfer.debit_account_id, transfer.credit_account_id)
    LIMIT 1;
    IF FOUND AND refused.transfer_missing THEN
        RAISE EXCEPTION 'ledger entry of account % names ledger transfer %, which does not exist',
                refused.account_id, refused.transfer_id
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'ledger_entries_transfer';
    ELSIF FOUND THEN
        RAISE EXCEPTION 'ledger entry of account % names ledger transfer %, which moves money between two other accounts',
                refused.account_id, refused.transfer_id
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'ledger_entries_transfer';
    END IF;

    -- sum() of bigint is numeric: no overflow.
    SELECT * INTO refused
    FROM (
        SELECT transfer_id,
               sum(CASE balance WHEN 'debits_pending' THEN amount_minor
                                WHEN 'credits_pending' THEN -amount_minor
                                ELSE 0 END) AS pending_minor,
               sum(CASE balance WHEN 'debits_posted' THEN amount_minor
                                WHEN 'credits_posted' THEN -amount_minor
                                ELSE 0 END) AS posted_minor
        FROM inserted_entries
        GROUP BY transfer_id
    ) AS sums
    WHERE pending_minor <> 0 OR posted_minor <> 0
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transfer % does not balance: its debits exceed its credits by % pending and % posted',
                refused.transfer_id, refused.pending_minor, refused.posted_minor
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_balanced',
                  HINT = 'Write all of a ledger transfer''s entries in one statement.';
    END IF;
    RETURN NULL;
END;
$$
"""


def upgrade() -> None:
    op.execute(_CHECK_ENTRIES)
    op.execute(
        "CREATE TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries"
        " REFERENCING NEW TABLE AS inserted_entries"
        " FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_check()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER ledger_entries_balanced ON ledger_entries")
    op.execute("DROP FUNCTION ledger_entries_check()")
