"""Every query of the ledger (accounts, transfers, holds, reports) in the accounts database.

Accounts, lists and reports go through the SQLAlchemy session of the request. The ledger's
write path (transfers, holds, status changes, the sweeper) talks to asyncpg directly, in
transactions the service runs and retries: a batch of 1,000 transfers is a handful of
set-based statements (unnest arrays), and each statement here is what `benchmarks/ledger.py`
runs as its raw-asyncpg baseline.
"""

import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import func, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from accounts.ledger.rules import EntryColumns, TransferRecord
from accounts.models import (
    AccountRow,
    CustomerRow,
    ExpiringHoldRow,
    HoldTombstoneRow,
    LedgerEntryRow,
    LedgerTransferRow,
)
from contracts.accounts import AccountKind, AccountStatus, BalanceRule
from kit.audit import keyed_connection_class

# An asyncpg connection (asyncpg ships no type information).
Connection = Any

# --- The session side: accounts, statements, reports ----------------------------------


async def insert_account(
    session: AsyncSession,
    *,
    customer_id: str,
    currency: str,
    balance_rule: BalanceRule,
    max_transfer_amount_minor: int | None,
    daily_outflow_limit_minor: int | None,
    overdraft_limit_minor: int | None,
    created_at: datetime,
) -> AccountRow:
    row = AccountRow(
        id=uuid.uuid4(),
        customer_id=customer_id,
        kind=AccountKind.customer.value,
        currency=currency,
        status=AccountStatus.active.value,
        debits_must_not_exceed_credits=balance_rule == BalanceRule.debits_must_not_exceed_credits,
        credits_must_not_exceed_debits=balance_rule == BalanceRule.credits_must_not_exceed_debits,
        max_transfer_amount_minor=max_transfer_amount_minor,
        daily_outflow_limit_minor=daily_outflow_limit_minor,
        overdraft_limit_minor=overdraft_limit_minor,
        debits_pending=0,
        debits_posted=0,
        credits_pending=0,
        credits_posted=0,
        created_at=created_at,
    )
    session.add(row)
    await session.flush()
    return row


@dataclass(frozen=True, slots=True)
class AccountView:
    """An account row with the amounts of its holds past their deadline that are not
    voided yet, read in one statement (one snapshot)."""

    row: AccountRow
    expired_debits_minor: int
    expired_credits_minor: int


def _expired_sum(side: Any, now: datetime) -> ColumnElement[Any]:
    return (
        select(func.coalesce(func.sum(ExpiringHoldRow.amount_minor), 0))
        .where(side == AccountRow.id, ExpiringHoldRow.expires_at <= now)
        .scalar_subquery()
    )


def _viewed(now: datetime) -> Any:
    return select(
        AccountRow,
        _expired_sum(ExpiringHoldRow.debit_account_id, now),
        _expired_sum(ExpiringHoldRow.credit_account_id, now),
    ).execution_options(populate_existing=True)


async def get_account(
    session: AsyncSession, account_id: uuid.UUID, *, now: datetime
) -> AccountView | None:
    result = await session.execute(_viewed(now).where(AccountRow.id == account_id))
    found = result.one_or_none()
    return None if found is None else AccountView(found[0], int(found[1]), int(found[2]))


async def list_accounts(
    session: AsyncSession,
    *,
    customer_id: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
    now: datetime,
) -> list[AccountView]:
    """Accounts in (created_at, id) order, strictly after the cursor position `after`."""
    statement = _viewed(now).order_by(AccountRow.created_at, AccountRow.id).limit(limit)
    if customer_id is not None:
        statement = statement.where(AccountRow.customer_id == customer_id)
    if after is not None:
        statement = statement.where(tuple_(AccountRow.created_at, AccountRow.id) > tuple_(*after))
    result = await session.execute(statement)
    return [AccountView(row, int(debits), int(credits)) for row, debits, credits in result]


async def account_owner(session: AsyncSession, account_id: uuid.UUID) -> tuple[bool, str | None]:
    """Whether the account exists, and its owner (None for a system account)."""
    statement = select(AccountRow.customer_id).where(AccountRow.id == account_id)
    found = (await session.execute(statement)).one_or_none()
    return (False, None) if found is None else (True, found[0])


@dataclass(frozen=True, slots=True)
class StatementLine:
    entry: LedgerEntryRow
    transfer_kind: str
    reference: str | None


async def list_entries(
    session: AsyncSession, *, account_id: uuid.UUID, after_id: int | None, limit: int
) -> list[StatementLine]:
    """An account's journal entries in journal order, strictly after entry `after_id`."""
    statement = (
        select(LedgerEntryRow, LedgerTransferRow.kind, LedgerTransferRow.reference)
        .join(LedgerTransferRow, LedgerTransferRow.id == LedgerEntryRow.transfer_id)
        .where(LedgerEntryRow.account_id == account_id)
        .order_by(LedgerEntryRow.id)
        .limit(limit)
    )
    if after_id is not None:
        statement = statement.where(LedgerEntryRow.id > after_id)
    result = await session.execute(statement)
    return [StatementLine(entry, kind, reference) for entry, kind, reference in result]


async def get_ledger_transfer(
    session: AsyncSession, transfer_id: uuid.UUID
) -> LedgerTransferRow | None:
    statement = (
        select(LedgerTransferRow)
        .where(LedgerTransferRow.id == transfer_id)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def get_tombstone_by_void_id(
    session: AsyncSession, void_id: uuid.UUID
) -> HoldTombstoneRow | None:
    statement = select(HoldTombstoneRow).where(HoldTombstoneRow.void_id == void_id)
    return (await session.execute(statement)).scalar_one_or_none()


async def count_expired_holds(session: AsyncSession, *, now: datetime) -> int:
    statement = select(func.count()).where(ExpiringHoldRow.expires_at <= now)
    return int((await session.execute(statement)).scalar_one())


# --- The ledger's write path: asyncpg, set-based ---------------------------------------


async def create_pool(
    dsn: str,
    *,
    size: int,
    application_name: str,
    command_timeout_seconds: float,
    audit_chain_key: bytes,
) -> Any:
    """The pool of the ledger's write path (`dsn` in asyncpg's spelling); connections open
    on first use and carry the audit chain key."""
    return await asyncpg.create_pool(
        dsn,
        connection_class=keyed_connection_class(audit_chain_key, service=application_name),
        min_size=0,
        max_size=size,
        command_timeout=command_timeout_seconds,
        max_inactive_connection_lifetime=300,
        server_settings={"application_name": application_name},
    )


@asynccontextmanager
async def transaction(
    pool: Any, *, acquire_timeout_seconds: float, wait_timeout_seconds: float | None = None
) -> AsyncIterator[Connection]:
    """One READ COMMITTED transaction: committed when the body returns, else rolled back.

    Row locks (taken in id order) give each transfer the latest committed balances. With
    `wait_timeout_seconds`, no lock wait and no statement of the transaction lasts longer
    (PostgreSQL cancels it: LockNotAvailableError, QueryCanceledError).
    """
    async with (
        pool.acquire(timeout=acquire_timeout_seconds) as connection,
        connection.transaction(),
    ):
        if wait_timeout_seconds is not None:
            await set_wait_timeouts(connection, wait_timeout_seconds)
        yield connection


async def set_wait_timeouts(connection: Connection, timeout_seconds: float) -> None:
    """Bound this transaction's lock waits and statements (SET LOCAL: until it ends)."""
    milliseconds = f"{max(round(timeout_seconds * 1000), 1)}ms"
    await connection.execute(
        "SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $1, true)",
        milliseconds,
    )


_SELECT_ACCOUNTS = """
    SELECT id, customer_id, kind, currency, status, debits_must_not_exceed_credits,
           credits_must_not_exceed_debits, max_transfer_amount_minor, daily_outflow_limit_minor,
           overdraft_limit_minor, debits_pending, debits_posted, credits_pending, credits_posted,
           created_at
    FROM accounts
    WHERE id = ANY($1::uuid[])
"""

# PostgreSQL sorts before it locks (ORDER BY runs below FOR UPDATE), so every transaction
# takes its locks in the same order, all in this one statement, and two cannot deadlock.
LOCK_ACCOUNTS = """
    SELECT id, customer_id, kind, currency, status, debits_must_not_exceed_credits,
           credits_must_not_exceed_debits, max_transfer_amount_minor, daily_outflow_limit_minor,
           overdraft_limit_minor, debits_pending, debits_posted, credits_pending, credits_posted,
           created_at
    FROM accounts
    WHERE id = ANY($1::uuid[])
    ORDER BY id
    FOR UPDATE
"""

# The transfers of these ids, and the tombstones whose void or hold has one of them (a
# tombstone answers as the void it is: kind void_pending, naming the hold it refused).
GET_TRANSFERS_AND_TOMBSTONES = """
    SELECT id, kind, debit_account_id, credit_account_id, amount_minor, currency, pending_id,
           timeout_seconds, expires_at, reference, created_at, false AS tombstone
    FROM ledger_transfers
    WHERE id = ANY($1::uuid[])
    UNION ALL
    SELECT void_id, 'void_pending', debit_account_id, credit_account_id, amount_minor, currency,
           pending_id, NULL, NULL, reference, created_at, true
    FROM ledger_hold_tombstones
    WHERE void_id = ANY($1::uuid[]) OR pending_id = ANY($1::uuid[])
"""

INSERT_TOMBSTONES = """
    INSERT INTO ledger_hold_tombstones (pending_id, void_id, debit_account_id,
        credit_account_id, amount_minor, currency, reference, created_at)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::bigint[],
                         $6::text[], $7::text[], $8::timestamptz[])
"""

GET_PENDINGS = """
    SELECT id, kind, debit_account_id, credit_account_id, amount_minor, currency, pending_id,
           timeout_seconds, expires_at, reference, created_at
    FROM ledger_transfers
    WHERE id = ANY($1::uuid[]) AND kind = 'pending'
"""

GET_RESOLUTIONS = """
    SELECT pending_id, id, kind FROM ledger_transfers WHERE pending_id = ANY($1::uuid[])
"""

EXPIRED_HOLDS_OF_ACCOUNTS = """
    SELECT hold.pending_id, hold.debit_account_id, hold.credit_account_id, hold.amount_minor,
           hold.expires_at, transfer.currency, transfer.created_at, transfer.reference
    FROM ledger_expiring_holds AS hold
    JOIN ledger_transfers AS transfer ON transfer.id = hold.pending_id
    WHERE (hold.debit_account_id = ANY($1::uuid[]) OR hold.credit_account_id = ANY($1::uuid[]))
      AND hold.expires_at <= $2
    ORDER BY hold.expires_at, hold.pending_id
    LIMIT $3
"""

EXPIRED_HOLDS = """
    SELECT hold.pending_id, hold.debit_account_id, hold.credit_account_id, hold.amount_minor,
           hold.expires_at, transfer.currency, transfer.created_at, transfer.reference
    FROM ledger_expiring_holds AS hold
    JOIN ledger_transfers AS transfer ON transfer.id = hold.pending_id
    WHERE hold.expires_at <= $1
    ORDER BY hold.expires_at, hold.pending_id
    LIMIT $2
"""

# The table holds only open holds with a deadline: small, whatever the journal's size.
OPEN_HOLDS_SUMMARY = """
    SELECT count(*) AS count, min(transfer.created_at) AS oldest_created_at
    FROM ledger_expiring_holds AS hold
    JOIN ledger_transfers AS transfer ON transfer.id = hold.pending_id
    WHERE hold.expires_at > $1
"""

OPEN_EXPIRING_HOLDS = (
    "SELECT pending_id FROM ledger_expiring_holds WHERE pending_id = ANY($1::uuid[])"
)

# What each account sent in [$2, $3): single-phase transfers, and holds for what they still
# set aside or posted. A voided or expired ($4) hold counts for nothing.
DAILY_OUTFLOWS = """
    SELECT hold.debit_account_id,
           sum(CASE
                   WHEN hold.kind = 'single_phase' THEN hold.amount_minor
                   WHEN resolution.kind = 'post_pending' THEN resolution.amount_minor
                   WHEN resolution.kind = 'void_pending' THEN 0
                   WHEN hold.expires_at <= $4 THEN 0
                   ELSE hold.amount_minor
               END) AS outflow_minor
    FROM ledger_transfers AS hold
    LEFT JOIN ledger_transfers AS resolution ON resolution.pending_id = hold.id
    WHERE hold.debit_account_id = ANY($1::uuid[])
      AND hold.kind IN ('single_phase', 'pending')
      AND hold.created_at >= $2 AND hold.created_at < $3
    GROUP BY hold.debit_account_id
"""

INSERT_TRANSFERS = """
    WITH inserted AS (
        INSERT INTO ledger_transfers (id, kind, debit_account_id, credit_account_id,
            amount_minor, currency, pending_id, timeout_seconds, expires_at, reference,
            created_at)
        SELECT id, kind, debit_account_id, credit_account_id, amount_minor, currency,
               pending_id, timeout_seconds, expires_at, reference, $11
        FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::bigint[], $6::text[],
                    $7::uuid[], $8::integer[], $9::timestamptz[], $10::text[])
             AS batch(id, kind, debit_account_id, credit_account_id, amount_minor, currency,
                      pending_id, timeout_seconds, expires_at, reference)
        ON CONFLICT (id) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) FROM inserted
"""

INSERT_ENTRIES = """
    INSERT INTO ledger_entries (transfer_id, account_id, balance, amount_minor,
        posted_balance_after_minor, pending_balance_after_minor, created_at)
    SELECT transfer_id, account_id, balance, amount_minor, posted_after, pending_after, $7
    FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[])
         AS batch(transfer_id, account_id, balance, amount_minor, posted_after, pending_after)
"""

ADD_TO_TOTALS = """
    UPDATE accounts AS account
    SET debits_pending = account.debits_pending + change.debits_pending,
        debits_posted = account.debits_posted + change.debits_posted,
        credits_pending = account.credits_pending + change.credits_pending,
        credits_posted = account.credits_posted + change.credits_posted
    FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])
         AS change(id, debits_pending, debits_posted, credits_pending, credits_posted)
    WHERE account.id = change.id
"""

INSERT_EXPIRING_HOLDS = """
    INSERT INTO ledger_expiring_holds
        (pending_id, debit_account_id, credit_account_id, amount_minor, expires_at)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[], $5::timestamptz[])
"""

DELETE_EXPIRING_HOLDS = "DELETE FROM ledger_expiring_holds WHERE pending_id = ANY($1::uuid[])"

SET_STATUS = "UPDATE accounts SET status = $2 WHERE id = $1"

SET_LIMITS = """
    UPDATE accounts
    SET max_transfer_amount_minor = $2, daily_outflow_limit_minor = $3, overdraft_limit_minor = $4
    WHERE id = $1
"""


ENSURE_SYSTEM_ACCOUNT = """
    INSERT INTO accounts (id, customer_id, kind, currency, status,
        debits_must_not_exceed_credits, credits_must_not_exceed_debits, created_at)
    VALUES ($1, NULL, 'system', $2, 'active', false, false, $3)
    ON CONFLICT (currency) WHERE kind = 'system' DO NOTHING
"""

SYSTEM_ACCOUNT = "SELECT id FROM accounts WHERE kind = 'system' AND currency = $1"


async def ensure_system_account(
    connection: Connection, *, currency: str, created_at: datetime
) -> uuid.UUID:
    """The id of `currency`'s system account, created if it does not exist yet."""
    await connection.execute(ENSURE_SYSTEM_ACCOUNT, uuid.uuid4(), currency, created_at)
    account_id: uuid.UUID = await connection.fetchval(SYSTEM_ACCOUNT, currency)
    return account_id


async def lock_accounts(connection: Connection, account_ids: Collection[uuid.UUID]) -> list[Any]:
    return list(await connection.fetch(LOCK_ACCOUNTS, list(account_ids)))


async def read_accounts(connection: Connection, account_ids: Collection[uuid.UUID]) -> list[Any]:
    """Without locks, for checks that change nothing."""
    return list(await connection.fetch(_SELECT_ACCOUNTS, list(account_ids)))


async def get_transfers_and_tombstones(
    connection: Connection, ids: Collection[uuid.UUID]
) -> list[Any]:
    """Rows of GET_TRANSFERS_AND_TOMBSTONES: `tombstone` tells the two kinds apart."""
    return list(await connection.fetch(GET_TRANSFERS_AND_TOMBSTONES, list(ids)))


async def insert_tombstones(connection: Connection, tombstones: Sequence[TransferRecord]) -> None:
    """Record voids of holds the ledger has not seen (each names the hold it refuses)."""
    await connection.execute(
        INSERT_TOMBSTONES,
        [tombstone.pending_id for tombstone in tombstones],
        [tombstone.id for tombstone in tombstones],
        [tombstone.debit_account_id for tombstone in tombstones],
        [tombstone.credit_account_id for tombstone in tombstones],
        [tombstone.amount_minor for tombstone in tombstones],
        [tombstone.currency for tombstone in tombstones],
        [tombstone.reference for tombstone in tombstones],
        [tombstone.created_at for tombstone in tombstones],
    )


async def get_pendings(connection: Connection, pending_ids: Collection[uuid.UUID]) -> list[Any]:
    return list(await connection.fetch(GET_PENDINGS, list(pending_ids)))


async def get_resolutions(
    connection: Connection, pending_ids: Collection[uuid.UUID]
) -> list[tuple[uuid.UUID, uuid.UUID, str]]:
    """(pending id, resolving transfer id, its kind) of each resolved hold among these."""
    rows = await connection.fetch(GET_RESOLUTIONS, list(pending_ids))
    return [(row["pending_id"], row["id"], row["kind"]) for row in rows]


async def expired_holds_of_accounts(
    connection: Connection, account_ids: Collection[uuid.UUID], *, now: datetime, limit: int
) -> list[Any]:
    """Open holds past their deadline that debit or credit one of these accounts."""
    return list(await connection.fetch(EXPIRED_HOLDS_OF_ACCOUNTS, list(account_ids), now, limit))


async def expired_holds(connection: Connection, *, now: datetime, limit: int) -> list[Any]:
    """The open holds longest past their deadline."""
    return list(await connection.fetch(EXPIRED_HOLDS, now, limit))


async def open_holds_summary(
    connection: Connection, *, now: datetime
) -> tuple[int, datetime | None]:
    """How many holds with a deadline are open (not yet past it), and the oldest's creation."""
    row = await connection.fetchrow(OPEN_HOLDS_SUMMARY, now)
    return int(row["count"]), row["oldest_created_at"]


async def open_expiring_holds(
    connection: Connection, pending_ids: Collection[uuid.UUID]
) -> set[uuid.UUID]:
    rows = await connection.fetch(OPEN_EXPIRING_HOLDS, list(pending_ids))
    return {row["pending_id"] for row in rows}


async def daily_outflows(
    connection: Connection,
    account_ids: Collection[uuid.UUID],
    *,
    day_start: datetime,
    day_end: datetime,
    now: datetime,
) -> dict[uuid.UUID, int]:
    rows = await connection.fetch(DAILY_OUTFLOWS, list(account_ids), day_start, day_end, now)
    return {row["debit_account_id"]: int(row["outflow_minor"]) for row in rows}


async def insert_transfers(
    connection: Connection, transfers: Sequence[TransferRecord], *, created_at: datetime
) -> int:
    """Insert unless the id exists; the number this call created.

    If another transaction is inserting the same id, this waits for it to finish and then
    skips the row (it committed) or inserts it (it rolled back).
    """
    inserted: int = await connection.fetchval(
        INSERT_TRANSFERS,
        [transfer.id for transfer in transfers],
        [transfer.kind.value for transfer in transfers],
        [transfer.debit_account_id for transfer in transfers],
        [transfer.credit_account_id for transfer in transfers],
        [transfer.amount_minor for transfer in transfers],
        [transfer.currency for transfer in transfers],
        [transfer.pending_id for transfer in transfers],
        [transfer.timeout_seconds for transfer in transfers],
        [transfer.expires_at for transfer in transfers],
        [transfer.reference for transfer in transfers],
        created_at,
    )
    return inserted


async def insert_entries(
    connection: Connection, entries: EntryColumns, *, created_at: datetime
) -> None:
    assert entries.transfer_ids, "a ledger transfer writes at least two entries"
    await connection.execute(INSERT_ENTRIES, *entries, created_at)


async def add_to_totals(
    connection: Connection, changes: dict[uuid.UUID, tuple[int, int, int, int]]
) -> None:
    """Add signed amounts to accounts' (debits_pending, debits_posted, credits_pending,
    credits_posted); the caller holds the rows' locks."""
    assert changes, "nothing to add"
    account_ids = list(changes)
    await connection.execute(
        ADD_TO_TOTALS,
        account_ids,
        *([changes[account_id][column] for account_id in account_ids] for column in range(4)),
    )


async def insert_expiring_holds(connection: Connection, holds: Sequence[TransferRecord]) -> None:
    await connection.execute(
        INSERT_EXPIRING_HOLDS,
        [hold.id for hold in holds],
        [hold.debit_account_id for hold in holds],
        [hold.credit_account_id for hold in holds],
        [hold.amount_minor for hold in holds],
        [hold.expires_at for hold in holds],
    )


async def delete_expiring_holds(connection: Connection, pending_ids: Sequence[uuid.UUID]) -> None:
    await connection.execute(DELETE_EXPIRING_HOLDS, list(pending_ids))


async def set_status(connection: Connection, account_id: uuid.UUID, status: AccountStatus) -> None:
    await connection.execute(SET_STATUS, account_id, status.value)


async def set_limits(
    connection: Connection,
    account_id: uuid.UUID,
    *,
    max_transfer_amount_minor: int | None,
    daily_outflow_limit_minor: int | None,
    overdraft_limit_minor: int | None,
) -> None:
    await connection.execute(
        SET_LIMITS,
        account_id,
        max_transfer_amount_minor,
        daily_outflow_limit_minor,
        overdraft_limit_minor,
    )


# --- Reports ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CurrencySums:
    currency: str
    accounts: int
    debits_pending: int
    credits_pending: int
    debits_posted: int
    credits_posted: int


async def sum_totals_by_currency(session: AsyncSession) -> list[CurrencySums]:
    """Per currency, each total summed over all accounts (one statement: one snapshot)."""
    statement = (
        select(
            AccountRow.currency,
            func.count(),
            func.sum(AccountRow.debits_pending),
            func.sum(AccountRow.credits_pending),
            func.sum(AccountRow.debits_posted),
            func.sum(AccountRow.credits_posted),
        )
        .group_by(AccountRow.currency)
        .order_by(AccountRow.currency)
    )
    # sum(bigint) is numeric in PostgreSQL: exact, so it converts to int without loss.
    return [
        CurrencySums(
            currency=currency,
            accounts=int(accounts),
            debits_pending=int(debits_pending),
            credits_pending=int(credits_pending),
            debits_posted=int(debits_posted),
            credits_posted=int(credits_posted),
        )
        for (
            currency,
            accounts,
            debits_pending,
            credits_pending,
            debits_posted,
            credits_posted,
        ) in await session.execute(statement)
    ]


@dataclass(frozen=True, slots=True)
class TotalsMismatches:
    accounts_checked: int
    mismatched_count: int
    mismatched_account_ids: list[uuid.UUID]


_TOTALS_MISMATCHES = text(
    """
    WITH journal AS (
        SELECT account_id,
               sum(amount_minor) FILTER (WHERE balance = 'debits_pending') AS debits_pending,
               sum(amount_minor) FILTER (WHERE balance = 'debits_posted') AS debits_posted,
               sum(amount_minor) FILTER (WHERE balance = 'credits_pending') AS credits_pending,
               sum(amount_minor) FILTER (WHERE balance = 'credits_posted') AS credits_posted
        FROM ledger_entries
        GROUP BY account_id
    ),
    compared AS (
        -- A full join: journal entries of an account that does not exist mismatch too.
        SELECT coalesce(accounts.id, journal.account_id) AS id,
               accounts.id IS NOT NULL AS known,
               accounts.id IS NULL
               OR (accounts.debits_pending, accounts.debits_posted,
                   accounts.credits_pending, accounts.credits_posted)
                  IS DISTINCT FROM
                  (coalesce(journal.debits_pending, 0), coalesce(journal.debits_posted, 0),
                   coalesce(journal.credits_pending, 0), coalesce(journal.credits_posted, 0))
               AS mismatched
        FROM accounts FULL JOIN journal ON journal.account_id = accounts.id
    )
    SELECT count(*) FILTER (WHERE known) AS accounts_checked,
           count(*) FILTER (WHERE mismatched) AS mismatched_count,
           (array_agg(id ORDER BY id) FILTER (WHERE mismatched))[1:(:ids_max)] AS mismatched_ids
    FROM compared
    """
)

_ENTRIES_WITHOUT_TRANSFER = text(
    """
    SELECT count(*) FROM ledger_entries AS entry
    WHERE NOT EXISTS (SELECT 1 FROM ledger_transfers AS transfer
                      WHERE transfer.id = entry.transfer_id)
    """
)


async def count_entries_without_transfer(session: AsyncSession) -> int:
    return int((await session.execute(_ENTRIES_WITHOUT_TRANSFER)).scalar_one())


# No index on ledger_entries.transfer_id (it would slow every posting down): a hash anti-join
# over the journal, as the totals check reads all of it too.
_TRANSFERS_WITHOUT_ENTRIES = text(
    """
    SELECT count(*) FROM ledger_transfers AS transfer
    WHERE NOT EXISTS (SELECT 1 FROM ledger_entries AS entry
                      WHERE entry.transfer_id = transfer.id)
    """
)


async def count_transfers_without_entries(session: AsyncSession) -> int:
    return int((await session.execute(_TRANSFERS_WITHOUT_ENTRIES)).scalar_one())


async def find_totals_mismatches(session: AsyncSession, *, ids_max: int) -> TotalsMismatches:
    """Accounts whose stored totals differ from the sum of their journal entries."""
    assert ids_max > 0, "list at least one mismatch"
    row = (await session.execute(_TOTALS_MISMATCHES, {"ids_max": ids_max})).one()
    return TotalsMismatches(
        accounts_checked=int(row.accounts_checked),
        mismatched_count=int(row.mismatched_count),
        mismatched_account_ids=list(row.mismatched_ids or []),
    )


# --- Customers, as account opening asks about them ---------------------------------------
# The customers table is the issuer's (accounts.identity); the ledger reads it here, in the
# one database both contexts share, rather than import the issuer's code.


async def customer_exists(session: AsyncSession, customer_id: uuid.UUID) -> bool:
    statement = select(CustomerRow.id).where(CustomerRow.id == customer_id)
    return (await session.execute(statement)).scalar_one_or_none() is not None
