"""Every query of the accounts service."""

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.ledger import Balance, Entry
from accounts.models import AccountRow, LedgerEntryRow, LedgerTransferRow
from contracts.accounts import AccountKind, AccountStatus


async def insert_account(
    session: AsyncSession,
    *,
    customer_id: str,
    currency: str,
    max_transfer_amount_minor: int | None,
    daily_outflow_limit_minor: int | None,
    created_at: datetime,
) -> AccountRow:
    """A customer account: no overdraft (`debits_must_not_exceed_credits`)."""
    row = AccountRow(
        id=uuid.uuid4(),
        customer_id=customer_id,
        kind=AccountKind.customer.value,
        currency=currency,
        status=AccountStatus.active.value,
        debits_must_not_exceed_credits=True,
        credits_must_not_exceed_debits=False,
        max_transfer_amount_minor=max_transfer_amount_minor,
        daily_outflow_limit_minor=daily_outflow_limit_minor,
        debits_pending=0,
        debits_posted=0,
        credits_pending=0,
        credits_posted=0,
        created_at=created_at,
    )
    session.add(row)
    await session.flush()
    return row


async def ensure_system_account(
    session: AsyncSession, *, currency: str, created_at: datetime
) -> uuid.UUID:
    """The id of `currency`'s system account, created if it does not exist yet."""
    statement = (
        insert(AccountRow)
        .values(
            id=uuid.uuid4(),
            customer_id=None,
            kind=AccountKind.system.value,
            currency=currency,
            status=AccountStatus.active.value,
            debits_must_not_exceed_credits=False,
            credits_must_not_exceed_debits=False,
            created_at=created_at,
        )
        .on_conflict_do_nothing(
            index_elements=[AccountRow.currency],
            index_where=AccountRow.kind == AccountKind.system.value,
        )
    )
    await session.execute(statement)
    found = select(AccountRow.id).where(
        AccountRow.kind == AccountKind.system.value, AccountRow.currency == currency
    )
    return (await session.execute(found)).scalar_one()


async def get_account(session: AsyncSession, account_id: uuid.UUID) -> AccountRow | None:
    statement = (
        select(AccountRow)
        .where(AccountRow.id == account_id)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def get_accounts(
    session: AsyncSession, account_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, AccountRow]:
    """Read without locking (for checks that change nothing)."""
    statement = (
        select(AccountRow)
        .where(AccountRow.id.in_(account_ids))
        .execution_options(populate_existing=True)
    )
    return {row.id: row for row in (await session.execute(statement)).scalars()}


async def lock_accounts(
    session: AsyncSession, account_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, AccountRow]:
    """Lock the accounts for the rest of the transaction, in id order.

    PostgreSQL sorts before it locks (ORDER BY runs below FOR UPDATE), so every
    transaction takes its locks in the same order and two of them cannot deadlock.
    """
    statement = (
        select(AccountRow)
        .where(AccountRow.id.in_(sorted(set(account_ids))))
        .order_by(AccountRow.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {row.id: row for row in (await session.execute(statement)).scalars()}


async def list_accounts(
    session: AsyncSession,
    *,
    customer_id: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> Sequence[AccountRow]:
    """Accounts in (created_at, id) order, strictly after the cursor position `after`."""
    statement = select(AccountRow).order_by(AccountRow.created_at, AccountRow.id).limit(limit)
    if customer_id is not None:
        statement = statement.where(AccountRow.customer_id == customer_id)
    if after is not None:
        statement = statement.where(tuple_(AccountRow.created_at, AccountRow.id) > tuple_(*after))
    return (await session.execute(statement)).scalars().all()


async def get_ledger_transfer(
    session: AsyncSession, transfer_id: uuid.UUID
) -> LedgerTransferRow | None:
    statement = (
        select(LedgerTransferRow)
        .where(LedgerTransferRow.id == transfer_id)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def get_resolution_kind(session: AsyncSession, pending_id: uuid.UUID) -> str | None:
    """The kind of the transfer that posted or voided `pending_id`, if one did."""
    statement = select(LedgerTransferRow.kind).where(LedgerTransferRow.pending_id == pending_id)
    return (await session.execute(statement)).scalar_one_or_none()


async def insert_ledger_transfer(
    session: AsyncSession,
    *,
    transfer_id: uuid.UUID,
    kind: str,
    debit_account_id: uuid.UUID,
    credit_account_id: uuid.UUID,
    amount_minor: int,
    currency: str,
    pending_id: uuid.UUID | None,
    timeout_seconds: int | None,
    expires_at: datetime | None,
    reference: str | None,
    created_at: datetime,
) -> bool:
    """Insert unless the id exists; True when this call created it.

    If another transaction is inserting the same id, this waits for it to finish and
    then does nothing (it committed) or inserts (it rolled back).
    """
    statement = (
        insert(LedgerTransferRow)
        .values(
            id=transfer_id,
            kind=kind,
            debit_account_id=debit_account_id,
            credit_account_id=credit_account_id,
            amount_minor=amount_minor,
            currency=currency,
            pending_id=pending_id,
            timeout_seconds=timeout_seconds,
            expires_at=expires_at,
            reference=reference,
            created_at=created_at,
        )
        .on_conflict_do_nothing(index_elements=[LedgerTransferRow.id])
        .returning(LedgerTransferRow.id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def insert_entries(
    session: AsyncSession,
    *,
    transfer_id: uuid.UUID,
    entries: Sequence[Entry],
    created_at: datetime,
) -> None:
    assert entries, "a ledger transfer writes at least two entries"
    rows = [
        {
            "transfer_id": transfer_id,
            "account_id": entry.account_id,
            "balance": entry.balance.value,
            "amount_minor": entry.amount_minor,
            "created_at": created_at,
        }
        for entry in entries
    ]
    await session.execute(insert(LedgerEntryRow), rows)


async def add_to_totals(
    session: AsyncSession, account_id: uuid.UUID, changes: Mapping[Balance, int]
) -> None:
    """Add signed amounts to an account's totals (the caller holds the row's lock)."""
    assert changes, "nothing to add"
    values = {
        balance.value: getattr(AccountRow, balance.value) + amount
        for balance, amount in changes.items()
    }
    statement = (
        update(AccountRow)
        .where(AccountRow.id == account_id)
        .values(values)
        .execution_options(synchronize_session=False)
    )
    await session.execute(statement)


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
        SELECT accounts.id,
               (accounts.debits_pending, accounts.debits_posted,
                accounts.credits_pending, accounts.credits_posted)
               IS DISTINCT FROM
               (coalesce(journal.debits_pending, 0), coalesce(journal.debits_posted, 0),
                coalesce(journal.credits_pending, 0), coalesce(journal.credits_posted, 0))
               AS mismatched
        FROM accounts LEFT JOIN journal ON journal.account_id = accounts.id
    )
    SELECT count(*) AS accounts_checked,
           count(*) FILTER (WHERE mismatched) AS mismatched_count,
           (array_agg(id ORDER BY id) FILTER (WHERE mismatched))[1:(:ids_max)] AS mismatched_ids
    FROM compared
    """
)


async def find_totals_mismatches(session: AsyncSession, *, ids_max: int) -> TotalsMismatches:
    """Accounts whose stored totals differ from the sum of their journal entries."""
    assert ids_max > 0, "list at least one mismatch"
    row = (await session.execute(_TOTALS_MISMATCHES, {"ids_max": ids_max})).one()
    return TotalsMismatches(
        accounts_checked=int(row.accounts_checked),
        mismatched_count=int(row.mismatched_count),
        mismatched_account_ids=list(row.mismatched_ids or []),
    )
