"""Use cases of the ledger: accounts, transfers, holds, balances, statements, invariants.

Reads and account creation use the request's session (kit's unit of work). The ledger's
write path owns its transactions instead, because it retries them: a deadlock, a
serialization failure or an id inserted concurrently rolls the attempt back and runs it
again (bounded), so it must be able to start over from scratch.
"""

import asyncio
import enum
import math
import random
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeVar

import asyncpg
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.ledger import metrics, repository, rules
from accounts.ledger.errors import (
    AccountNotFound,
    LedgerBusy,
    LedgerTransferNotFound,
    UnknownCustomer,
)
from accounts.ledger.repository import Connection
from accounts.ledger.rules import (
    AccountSnapshot,
    EventOutcome,
    LedgerState,
    PendingSnapshot,
    Resolution,
    TransferRecord,
)
from accounts.models import AUDIT_EVENTS, AUDIT_ID_NAMESPACE, AccountRow, LedgerTransferRow
from contracts.accounts import (
    INVARIANT_MISMATCHES_MAX,
    Account,
    AccountKind,
    AccountLimitsUpdate,
    AccountStatus,
    AccountTotalsCheck,
    BalanceRule,
    Balances,
    CurrencyTotals,
    DepositCreate,
    LedgerInvariants,
    LedgerTransfer,
    LedgerTransferCreate,
    LedgerTransferKind,
    StatementEntry,
    StatementEntryTotal,
    TransferValidation,
    TransferValidationRequest,
    transfer_of_reference,
)
from contracts.audit import ActorType, AuditEventCreate
from contracts.common import LIMIT_MAX, Page
from kit import audit
from kit.audit import Actor
from kit.deadline import Deadline, DeadlineExceeded
from kit.pagination import (
    cut_page,
    decode_position,
    decode_sequence,
    encode_position,
    encode_sequence,
    fetch_limit,
)

log = structlog.get_logger()

ResultT = TypeVar("ResultT")

# Namespace of the ledger transfer ids derived from (account, direction, Idempotency-Key),
# so a retried deposit or withdrawal finds the transfer its first attempt wrote.
EXTERNAL_TRANSFER_NAMESPACE: Final = uuid.UUID("5d0e8f3a-7c41-4b9e-a6d2-1f3c9b7e2a54")
# Who releases a hold past its deadline, in the audit trail.
HOLD_EXPIRY_ACTOR_ID: Final = "system:ledger-hold-expiry"
# Expired holds a transaction releases on its way (the sweeper takes care of the rest).
EXPIRED_HOLDS_PER_TRANSACTION_MAX: Final = 1000
_RETRY_BACKOFF_SECONDS: Final = 0.01
_RETRY_BACKOFF_SECONDS_MAX: Final = 0.2
_OPENING_KINDS: Final = frozenset({LedgerTransferKind.single_phase, LedgerTransferKind.pending})


@dataclass(frozen=True, slots=True)
class Ledger:
    """The ledger's write path: its connection pool and the bounds of each transaction."""

    pool: Any
    attempts_max: int = 5
    acquire_timeout_seconds: float = 10.0


def _event(
    actor: Actor,
    action: str,
    *,
    account_ids: Sequence[uuid.UUID],
    now: datetime,
    event_id: uuid.UUID | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEventCreate:
    """An audit event about the first of `account_ids` (the others are the counterparties)."""
    return AuditEventCreate(
        id=event_id or uuid.uuid4(),
        occurred_at=now,
        actor_id=actor.actor_id,
        actor_type=actor.actor_type,
        action=action,
        subject_type="account",
        subject_id=str(account_ids[0]),
        account_ids=[str(account_id) for account_id in account_ids],
        request_id=actor.request_id,
        before=before,
        after=after,
        outcome="succeeded",
    )


class _ConcurrentInsert(Exception):
    """A transfer id this transaction meant to create was created by another one that
    locked other accounts; the next attempt sees it and answers as a replay or conflict."""


# No connection free in time, a lock or a statement over its timeout: the database is
# overloaded (or the caller's deadline came), and retrying here would only add to it.
_CANCELLED_BY_TIMEOUTS = (
    TimeoutError,
    asyncpg.exceptions.LockNotAvailableError,
    asyncpg.exceptions.QueryCanceledError,
)
_RETRYABLE = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
    _ConcurrentInsert,
)


async def in_transaction(
    database: Ledger,
    work: Callable[[Connection], Awaitable[ResultT]],
    *,
    deadline: Deadline | None = None,
) -> ResultT:
    """Run `work` in a transaction of its own, again (bounded, with jittered backoff) when
    the database aborts it for a deadlock or a serialization failure.

    With the caller's `deadline`, waiting for a connection, a lock or a statement ends by
    then, and the transaction commits only while enough of it is left (kit.deadline): a
    caller that gave up and retries never meets a late commit of its first attempt.
    """
    assert database.attempts_max >= 1, "at least one attempt"
    for attempt in range(1, database.attempts_max + 1):
        acquire_timeout_seconds = database.acquire_timeout_seconds
        wait_timeout_seconds = None
        if deadline is not None:
            deadline.check_can_commit()
            acquire_timeout_seconds = deadline.bound(acquire_timeout_seconds)
            wait_timeout_seconds = deadline.bound(math.inf)
        try:
            async with repository.transaction(
                database.pool,
                acquire_timeout_seconds=acquire_timeout_seconds,
                wait_timeout_seconds=wait_timeout_seconds,
            ) as connection:
                result = await work(connection)
                if deadline is not None:
                    deadline.check_can_commit()  # raising rolls the transaction back
                return result
        except _CANCELLED_BY_TIMEOUTS as error:
            if deadline is not None and deadline.remaining_seconds() <= 0:
                log.warning("ledger.deadline_exceeded", attempt=attempt)
                raise DeadlineExceeded(
                    "the caller's deadline passed while waiting; nothing was changed"
                ) from error
            log.warning("ledger.transaction_timed_out", attempt=attempt)
            raise LedgerBusy(
                "the ledger's database is overloaded; nothing was changed", retry_after_seconds=1
            ) from error
        except _RETRYABLE as error:
            log.warning("ledger.transaction_retried", attempt=attempt, reason=type(error).__name__)
            if attempt == database.attempts_max:
                raise LedgerBusy(
                    f"gave up after {attempt} attempts; nothing was changed",
                    retry_after_seconds=1,
                ) from error
            backoff_seconds = min(_RETRY_BACKOFF_SECONDS * 2**attempt, _RETRY_BACKOFF_SECONDS_MAX)
            await asyncio.sleep(random.uniform(0, backoff_seconds))
    raise AssertionError("the loop returns or raises")


# --- Accounts ---------------------------------------------------------------------------


async def create_account(
    session: AsyncSession,
    *,
    owner: str,
    owner_must_be_registered: bool,
    currency: str,
    balance_rule: BalanceRule,
    max_transfer_amount_minor: int | None,
    daily_outflow_limit_minor: int | None,
    overdraft_limit_minor: int | None,
    actor: Actor,
    now: datetime,
) -> Account:
    """Open a customer account for `owner`. A customer's own id comes from a token this
    service signed; an id an operator names must be a registered customer's."""
    if owner_must_be_registered and not await _is_registered(session, owner):
        raise UnknownCustomer(f"no registered customer {owner}")
    row = await repository.insert_account(
        session,
        customer_id=owner,
        currency=currency,
        balance_rule=balance_rule,
        max_transfer_amount_minor=max_transfer_amount_minor,
        daily_outflow_limit_minor=daily_outflow_limit_minor,
        overdraft_limit_minor=overdraft_limit_minor,
        created_at=now,
    )
    event = _event(
        actor,
        "account.created",
        account_ids=[row.id],
        now=now,
        after={
            "customer_id": owner,
            "currency": currency,
            "balance_rule": balance_rule.value,
            **_limits_of(
                max_transfer_amount_minor, daily_outflow_limit_minor, overdraft_limit_minor
            ),
        },
    )
    await audit.append(session, AUDIT_EVENTS, event)
    log.info("account.created", account_id=str(row.id), currency=row.currency)
    return _account(row, _snapshot_of_row(row))


async def _is_registered(session: AsyncSession, customer_id: str) -> bool:
    try:
        parsed = uuid.UUID(customer_id)
    except ValueError:
        return False  # customer ids are UUIDs: this one names nobody
    return await repository.customer_exists(session, parsed)


def _limits_of(
    max_transfer_amount_minor: int | None,
    daily_outflow_limit_minor: int | None,
    overdraft_limit_minor: int | None,
) -> dict[str, int | None]:
    return {
        "max_transfer_amount_minor": max_transfer_amount_minor,
        "daily_outflow_limit_minor": daily_outflow_limit_minor,
        "overdraft_limit_minor": overdraft_limit_minor,
    }


async def get_account(
    session: AsyncSession, *, account_id: uuid.UUID, owner: str | None, now: datetime
) -> Account:
    """One account; with `owner`, only if that customer owns it (else as if it did not
    exist: a foreign id must not tell that it is taken)."""
    view = await repository.get_account(session, account_id, now=now)
    if view is None or (owner is not None and view.row.customer_id != owner):
        raise AccountNotFound(f"no account {account_id}", account_id=str(account_id))
    return _account_of_view(view)


async def list_accounts(
    session: AsyncSession,
    *,
    owner: str | None,
    customer_id: str | None,
    limit: int,
    cursor: str | None,
    now: datetime,
) -> Page[Account]:
    """Accounts in opening order, of `customer_id` if given; with `owner`, only that
    customer's (asking for another customer's finds none)."""
    assert 0 < limit <= LIMIT_MAX, "the route caps limit"
    after = None if cursor is None else decode_position(cursor)
    if owner is not None:
        if customer_id is not None and customer_id != owner:
            return Page[Account](items=[], next_cursor=None)
        customer_id = owner
    views = await repository.list_accounts(
        session, customer_id=customer_id, after=after, limit=fetch_limit(limit), now=now
    )
    page, next_cursor = cut_page(
        views, limit=limit, cursor_of=lambda view: encode_position(view.row.created_at, view.row.id)
    )
    return Page[Account](items=[_account_of_view(view) for view in page], next_cursor=next_cursor)


_STATUS_EVENTS: Final = {
    rules.StatusAction.freeze: "account.frozen",
    rules.StatusAction.unfreeze: "account.unfrozen",
    rules.StatusAction.close: "account.closed",
}


async def change_status(
    database: Ledger,
    *,
    account_id: uuid.UUID,
    action: rules.StatusAction,
    actor: Actor,
    now: datetime,
) -> Account:
    """Freeze, unfreeze or close a customer account (closing needs it empty). A change
    writes its audit event in its own transaction; asking for the status it has changes
    nothing and records nothing."""

    async def work(connection: Connection) -> Account:
        state, rows = await _locked_state(connection, {account_id}, now=now)
        account = _found(state.accounts, account_id)
        status = rules.next_status(account, action)
        await _write(connection, state, now=now)
        if status != account.status:
            await repository.set_status(connection, account_id, status)
            event = _event(
                actor,
                _STATUS_EVENTS[action],
                account_ids=[account_id],
                now=now,
                before={"status": account.status.value},
                after={"status": status.value},
            )
            await audit.append_asyncpg(connection, event)
        return _account(rows[account_id], account._replace(status=status))

    account = await in_transaction(database, work)
    log.info("account.status_changed", account_id=str(account_id), status=account.status.value)
    return account


async def update_limits(
    database: Ledger,
    *,
    account_id: uuid.UUID,
    request: AccountLimitsUpdate,
    actor: Actor,
    now: datetime,
) -> Account:
    """Replace the limits the request names; the others stay as they are."""
    given = request.model_fields_set

    async def work(connection: Connection) -> Account:
        state, rows = await _locked_state(connection, {account_id}, now=now)
        account = _found(state.accounts, account_id)
        updated = account._replace(
            max_transfer_amount_minor=(
                request.max_transfer_amount_minor
                if "max_transfer_amount_minor" in given
                else account.max_transfer_amount_minor
            ),
            daily_outflow_limit_minor=(
                request.daily_outflow_limit_minor
                if "daily_outflow_limit_minor" in given
                else account.daily_outflow_limit_minor
            ),
            overdraft_limit_minor=(
                request.overdraft_limit_minor
                if "overdraft_limit_minor" in given
                else account.overdraft_limit_minor
            ),
        )
        rules.check_limits(updated, overdraft_limit_minor=updated.overdraft_limit_minor)
        await _write(connection, state, now=now)
        before = _limits_of(
            account.max_transfer_amount_minor,
            account.daily_outflow_limit_minor,
            account.overdraft_limit_minor,
        )
        after = _limits_of(
            updated.max_transfer_amount_minor,
            updated.daily_outflow_limit_minor,
            updated.overdraft_limit_minor,
        )
        if after != before:
            await repository.set_limits(
                connection,
                account_id,
                max_transfer_amount_minor=updated.max_transfer_amount_minor,
                daily_outflow_limit_minor=updated.daily_outflow_limit_minor,
                overdraft_limit_minor=updated.overdraft_limit_minor,
            )
            event = _event(
                actor,
                "account.limits_changed",
                account_ids=[account_id],
                now=now,
                before=before,
                after=after,
            )
            await audit.append_asyncpg(connection, event)
        return _account(rows[account_id], updated)

    account = await in_transaction(database, work)
    log.info("account.limits_changed", account_id=str(account_id), fields=sorted(given))
    return account


async def list_entries(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    owner: str | None,
    limit: int,
    cursor: str | None,
) -> Page[StatementEntry]:
    """An account's journal, oldest first, each entry with the balances right after it;
    with `owner`, only if that customer owns the account."""
    assert 0 < limit <= LIMIT_MAX, "the route caps limit"
    after_id = None if cursor is None else decode_sequence(cursor)
    found, account_owner = await repository.account_owner(session, account_id)
    if not found or (owner is not None and account_owner != owner):
        raise AccountNotFound(f"no account {account_id}", account_id=str(account_id))
    lines = await repository.list_entries(
        session, account_id=account_id, after_id=after_id, limit=fetch_limit(limit)
    )
    page, next_cursor = cut_page(
        lines, limit=limit, cursor_of=lambda line: encode_sequence(line.entry.id)
    )
    items = [
        StatementEntry(
            id=line.entry.id,
            transfer_id=line.entry.transfer_id,
            transfer_kind=LedgerTransferKind(line.transfer_kind),
            reference=line.reference,
            total=StatementEntryTotal(line.entry.balance),
            amount_minor=line.entry.amount_minor,
            posted_balance_after_minor=line.entry.posted_balance_after_minor,
            pending_balance_after_minor=line.entry.pending_balance_after_minor,
            created_at=line.entry.created_at,
        )
        for line in page
    ]
    return Page[StatementEntry](items=items, next_cursor=next_cursor)


# --- Ledger transfers -------------------------------------------------------------------


async def create_ledger_transfer(
    database: Ledger,
    *,
    request: LedgerTransferCreate,
    actor: Actor,
    now: datetime,
    deadline: Deadline | None = None,
) -> tuple[LedgerTransfer, bool]:
    """Record a ledger transfer once, audited with its `actor` in the same transaction;
    True when this call created it.

    A retry with the same id and fields returns the original, even if the accounts have
    changed since (a replay never re-checks funds or status, nor writes a second event).
    """

    async def work(connection: Connection) -> EventOutcome:
        outcome = await _create_one(connection, request, now=now)
        await _audit_created(connection, [outcome], actor=actor, now=now)
        return outcome

    return _created(await in_transaction(database, work, deadline=deadline))


async def _create_one(
    connection: Connection, request: LedgerTransferCreate, *, now: datetime
) -> EventOutcome:
    state, (outcome,) = await _apply(connection, [request], [False], now=now)
    if outcome.error is not None:
        raise outcome.error
    await _write(connection, state, now=now)
    return outcome


def _created(outcome: EventOutcome) -> tuple[LedgerTransfer, bool]:
    """The committed outcome of one transfer, counted (kit metrics) when it is new."""
    assert outcome.transfer is not None, "a success carries its transfer"
    if outcome.created:
        metrics.count_created([outcome.transfer])
        log.info(
            "ledger.transfer_created",
            ledger_transfer_id=str(outcome.transfer.id),
            kind=outcome.transfer.kind.value,
            amount_minor=outcome.transfer.amount_minor,
            currency=outcome.transfer.currency,
        )
    return transfer_model(outcome.transfer), outcome.created


async def _audit_created(
    connection: Connection, outcomes: Sequence[EventOutcome], *, actor: Actor, now: datetime
) -> None:
    """One audit event per transfer these outcomes created (none for a replay), naming who
    asked for it and, for a saga's step, the customer transfer. Last in the transaction:
    the chain's lock serialises every writer of the trail, so it is held shortest here."""
    events = [
        _ledger_transfer_event(outcome.transfer, actor=actor, now=now)
        for outcome in outcomes
        if outcome.created and outcome.transfer is not None
    ]
    if events:
        await audit.append_many_asyncpg(connection, events)


def _ledger_transfer_event(
    transfer: TransferRecord, *, actor: Actor, now: datetime
) -> AuditEventCreate:
    return AuditEventCreate(
        # Derived from the ledger transfer: one event per transfer, however retried.
        id=uuid.uuid5(AUDIT_ID_NAMESPACE, f"ledger-transfer:{transfer.id}"),
        occurred_at=now,
        actor_id=actor.actor_id,
        actor_type=actor.actor_type,
        action="ledger_transfer.created",
        subject_type="ledger_transfer",
        subject_id=str(transfer.id),
        transfer_id=transfer_of_reference(transfer.reference),
        account_ids=[str(transfer.debit_account_id), str(transfer.credit_account_id)],
        request_id=actor.request_id,
        after={
            "kind": transfer.kind.value,
            "amount_minor": transfer.amount_minor,
            "currency": transfer.currency,
            "pending_id": None if transfer.pending_id is None else str(transfer.pending_id),
            "reference": transfer.reference,
        },
        outcome=audit.SUCCEEDED,
    )


def transfer_model(record: TransferRecord) -> LedgerTransfer:
    return LedgerTransfer.model_validate(record, from_attributes=True)


async def create_ledger_transfers(
    database: Ledger,
    *,
    requests: Sequence[LedgerTransferCreate],
    linked: Sequence[bool],
    actor: Actor,
    now: datetime,
    deadline: Deadline | None = None,
) -> list[EventOutcome]:
    """Apply a batch in one transaction; one outcome per event, in order. Events that fail
    change nothing (nor does any event of a linked chain that fails); the rest commit,
    each audited with its `actor`."""

    async def work(connection: Connection) -> list[EventOutcome]:
        state, outcomes = await _apply(connection, requests, linked, now=now)
        await _write(connection, state, now=now)
        await _audit_created(connection, outcomes, actor=actor, now=now)
        return outcomes

    outcomes = await in_transaction(database, work, deadline=deadline)
    metrics.count_created(
        outcome.transfer for outcome in outcomes if outcome.created and outcome.transfer is not None
    )
    created = sum(1 for outcome in outcomes if outcome.created)
    failed = sum(1 for outcome in outcomes if outcome.error is not None)
    log.info("ledger.batch_applied", events=len(outcomes), created=created, failed=failed)
    return outcomes


async def get_ledger_transfer(session: AsyncSession, *, transfer_id: uuid.UUID) -> LedgerTransfer:
    row = await repository.get_ledger_transfer(session, transfer_id)
    if row is not None:
        return _ledger_transfer(row)
    # A void that came before its hold answers as the void it was recorded as.
    tombstone = await repository.get_tombstone_by_void_id(session, transfer_id)
    if tombstone is None:
        raise LedgerTransferNotFound(f"no ledger transfer {transfer_id}")
    return LedgerTransfer(
        id=tombstone.void_id,
        kind=LedgerTransferKind.void_pending,
        debit_account_id=tombstone.debit_account_id,
        credit_account_id=tombstone.credit_account_id,
        amount_minor=tombstone.amount_minor,
        currency=tombstone.currency,
        pending_id=tombstone.pending_id,
        timeout_seconds=None,
        expires_at=None,
        reference=tombstone.reference,
        created_at=tombstone.created_at,
    )


class Direction(enum.StrEnum):
    """Which way money crosses the bank's edge through the currency's system account."""

    deposit = "deposit"
    withdrawal = "withdrawal"


def external_transfer_id(
    account_id: uuid.UUID, direction: Direction, idempotency_key: str
) -> uuid.UUID:
    return uuid.uuid5(
        EXTERNAL_TRANSFER_NAMESPACE, f"{account_id}:{direction.value}:{idempotency_key}"
    )


async def move_external(
    database: Ledger,
    *,
    account_id: uuid.UUID,
    direction: Direction,
    idempotency_key: str,
    request: DepositCreate,
    actor: Actor,
    now: datetime,
) -> tuple[LedgerTransfer, bool]:
    """Money in (deposit) or out (withdrawal) through the currency's system account,
    idempotent on the Idempotency-Key; True when this call created the transfer. Its
    audit event commits with it, once: a replay writes none."""
    assert idempotency_key, "the route requires a key"

    async def work(connection: Connection) -> EventOutcome:
        # Created before anything is locked (STYLE rule 3), harmless when it exists, and
        # rolled back with the rest if the movement is refused.
        system_account_id = await repository.ensure_system_account(
            connection, currency=request.currency, created_at=now
        )
        debit_account_id, credit_account_id = (
            (system_account_id, account_id)
            if direction == Direction.deposit
            else (account_id, system_account_id)
        )
        transfer = LedgerTransferCreate(
            id=external_transfer_id(account_id, direction, idempotency_key),
            kind=LedgerTransferKind.single_phase,
            debit_account_id=debit_account_id,
            credit_account_id=credit_account_id,
            amount_minor=request.amount_minor,
            currency=request.currency,
            reference=request.reference,
        )
        outcome = await _create_one(connection, transfer, now=now)
        if outcome.created:
            event = _event(
                actor,
                f"{direction.value}.created",
                account_ids=[account_id, system_account_id],
                now=now,
                # Derived from the ledger transfer: one event per deposit, however retried.
                event_id=uuid.uuid5(AUDIT_ID_NAMESPACE, f"{direction.value}:{transfer.id}"),
                after={
                    "ledger_transfer_id": str(transfer.id),
                    "amount_minor": request.amount_minor,
                    "currency": request.currency,
                    "reference": request.reference,
                },
            )
            await audit.append_asyncpg(connection, event)
        return outcome

    return _created(await in_transaction(database, work))


async def validate_transfer(
    database: Ledger,
    *,
    request: TransferValidationRequest,
    now: datetime,
    deadline: Deadline | None = None,
) -> TransferValidation:
    """Whether a customer transfer may go ahead: accounts, status, currency and limits.
    Reads only, and leaves funds to the hold (a check here could be stale by then)."""
    rules.check_distinct(request.source_account_id, request.target_account_id)

    owners: dict[uuid.UUID, str | None] = {}

    async def work(connection: Connection) -> None:
        rows = await repository.read_accounts(
            connection, {request.source_account_id, request.target_account_id}
        )
        owners.update({row["id"]: row["customer_id"] for row in rows})
        accounts = {row["id"]: _snapshot_of_record(row) for row in rows}
        source = _found(accounts, request.source_account_id)
        target = _found(accounts, request.target_account_id)
        outflow_today_minor = 0
        if source.daily_outflow_limit_minor is not None:
            day_start, day_end = rules.outflow_day(now)
            outflows = await repository.daily_outflows(
                connection, {source.id}, day_start=day_start, day_end=day_end, now=now
            )
            outflow_today_minor = outflows.get(source.id, 0)
        rules.check_transfer_allowed(
            debit=source,
            credit=target,
            amount_minor=request.amount_minor,
            currency=request.currency,
            outflow_today_minor=outflow_today_minor,
        )

    await in_transaction(database, work, deadline=deadline)
    return TransferValidation(
        transfer_id=request.transfer_id,
        valid=True,
        source_customer_id=owners[request.source_account_id],
        target_customer_id=owners[request.target_account_id],
    )


async def sweep_expired_holds(database: Ledger, *, now: datetime, batch_size: int) -> int:
    """Void up to `batch_size` holds past their deadline, oldest first; how many it voided."""
    assert batch_size > 0, "sweep at least one hold"

    async def work(connection: Connection) -> int:
        candidates = await repository.expired_holds(connection, now=now, limit=batch_size)
        if not candidates:
            return 0
        state, _ = await _locked_state(connection, set(), now=now, expired_rows=candidates)
        await _write(connection, state, now=now)
        return len(state.postings)

    voided = await in_transaction(database, work)
    if voided:
        metrics.LEDGER_HOLDS_EXPIRED.inc(voided)
        log.info("ledger.holds_expired", voided=voided)
    return voided


async def report_open_holds(database: Ledger, *, now: datetime) -> None:
    """Set the open holds gauges: how many holds with a deadline are open, the oldest's age."""

    async def work(connection: Connection) -> tuple[int, datetime | None]:
        return await repository.open_holds_summary(connection, now=now)

    count, oldest_created_at = await in_transaction(database, work)
    metrics.LEDGER_OPEN_HOLDS.set(count)
    age_seconds = 0.0 if oldest_created_at is None else (now - oldest_created_at).total_seconds()
    metrics.LEDGER_OLDEST_OPEN_HOLD_AGE.set(max(age_seconds, 0.0))


# --- Invariants -------------------------------------------------------------------------


async def check_invariants(session: AsyncSession, *, now: datetime) -> LedgerInvariants:
    """Double entry per currency and phase; stored totals against the journal; no entry
    without its transfer, no transfer without entries.

    Each check reads one snapshot of its own; every committed state satisfies both, so
    a transfer committing between them cannot make a healthy ledger look broken.
    """
    currencies = [
        CurrencyTotals(
            currency=sums.currency,
            debits_pending_minor=sums.debits_pending,
            credits_pending_minor=sums.credits_pending,
            debits_posted_minor=sums.debits_posted,
            credits_posted_minor=sums.credits_posted,
            pending_balanced=sums.debits_pending == sums.credits_pending,
            posted_balanced=sums.debits_posted == sums.credits_posted,
        )
        for sums in await repository.sum_totals_by_currency(session)
    ]
    mismatches = await repository.find_totals_mismatches(session, ids_max=INVARIANT_MISMATCHES_MAX)
    accounts = AccountTotalsCheck(
        accounts_checked=mismatches.accounts_checked,
        mismatched_count=mismatches.mismatched_count,
        mismatched_account_ids=mismatches.mismatched_account_ids,
    )
    entries_without_transfer = await repository.count_entries_without_transfer(session)
    transfers_without_entries = await repository.count_transfers_without_entries(session)
    ok = (
        accounts.mismatched_count == 0
        and entries_without_transfer == 0
        and transfers_without_entries == 0
        and all(totals.pending_balanced and totals.posted_balanced for totals in currencies)
    )
    if not ok:
        log.error(
            "ledger.invariants_broken",
            mismatched_count=accounts.mismatched_count,
            mismatched_account_ids=[
                str(account_id) for account_id in accounts.mismatched_account_ids
            ],
            entries_without_transfer=entries_without_transfer,
            transfers_without_entries=transfers_without_entries,
            unbalanced_currencies=[
                totals.currency
                for totals in currencies
                if not (totals.pending_balanced and totals.posted_balanced)
            ],
        )
    return LedgerInvariants(
        ok=ok,
        currencies=currencies,
        accounts=accounts,
        checked_at=now,
        expired_holds_unswept_count=await repository.count_expired_holds(session, now=now),
        entries_without_transfer_count=entries_without_transfer,
        transfers_without_entries_count=transfers_without_entries,
    )


# --- The write path's steps -------------------------------------------------------------


async def _apply(
    connection: Connection,
    requests: Sequence[LedgerTransferCreate],
    linked: Sequence[bool],
    *,
    now: datetime,
) -> tuple[LedgerState, list[EventOutcome]]:
    """Lock every account the events touch, read what they need, apply them in memory."""
    account_ids: set[uuid.UUID] = set()
    pending_ids: set[uuid.UUID] = set()
    for request in requests:
        if request.kind in _OPENING_KINDS:
            if request.debit_account_id is not None:
                account_ids.add(request.debit_account_id)
            if request.credit_account_id is not None:
                account_ids.add(request.credit_account_id)
        elif request.pending_id is not None:
            pending_ids.add(request.pending_id)
    # Holds never change, so they may be read before the locks; their accounts join the lock.
    pendings: dict[uuid.UUID, PendingSnapshot] = {}
    if pending_ids:
        for row in await repository.get_pendings(connection, pending_ids):
            pendings[row["id"]] = _pending_of_record(row)
    for pending in pendings.values():
        account_ids.add(pending.debit_account_id)
        account_ids.add(pending.credit_account_id)
    # A void of a hold not seen (yet) locks the accounts it names: the hold, if it is on its
    # way, locks them too, so one of the two sees the other (rules.LedgerState._void_unseen).
    unseen = pending_ids - pendings.keys()
    for request in requests:
        if request.pending_id in unseen:
            account_ids.update(
                account_id
                for account_id in (request.debit_account_id, request.credit_account_id)
                if account_id is not None
            )
    state, _ = await _locked_state(
        connection,
        account_ids,
        now=now,
        transfer_ids={request.id for request in requests} | unseen,
        pendings=pendings,
        unseen_pending_ids=unseen,
    )
    return state, state.execute(requests, linked)


async def _locked_state(
    connection: Connection,
    account_ids: Collection[uuid.UUID],
    *,
    now: datetime,
    transfer_ids: Collection[uuid.UUID] = (),
    pendings: Mapping[uuid.UUID, PendingSnapshot] | None = None,
    expired_rows: Sequence[Any] | None = None,
    unseen_pending_ids: Collection[uuid.UUID] = (),
) -> tuple[LedgerState, dict[uuid.UUID, Any]]:
    """Lock the accounts (and those of their holds past deadline) in one statement, read
    the rest under the locks, and release the expired holds that are still open.

    `transfer_ids` are looked up among the transfers and the tombstones (by the void's id
    and by the hold's); `unseen_pending_ids`, holds that were not there before the locks,
    are read again under them, in case one committed meanwhile."""
    pendings = dict(pendings or {})
    if expired_rows is None:
        expired_rows = (
            await repository.expired_holds_of_accounts(
                connection, account_ids, now=now, limit=EXPIRED_HOLDS_PER_TRANSACTION_MAX
            )
            if account_ids
            else []
        )
    expired = [_pending_of_record(row, id_column="pending_id") for row in expired_rows]
    lock_ids = set(account_ids)
    for hold in expired:
        lock_ids.add(hold.debit_account_id)
        lock_ids.add(hold.credit_account_id)
    rows = {row["id"]: row for row in await repository.lock_accounts(connection, lock_ids)}
    accounts = {account_id: _snapshot_of_record(row) for account_id, row in rows.items()}

    # Under the locks: every resolution of a hold locks both of its accounts first.
    still_open = (
        await repository.open_expiring_holds(connection, [hold.id for hold in expired])
        if expired
        else set()
    )
    stored, tombstones = await _transfers_and_tombstones(connection, transfer_ids)
    if unseen_pending_ids:
        # Only a hold whose accounts this transaction holds may be resolved here.
        for row in await repository.get_pendings(connection, unseen_pending_ids):
            pending = _pending_of_record(row)
            if pending.debit_account_id in rows and pending.credit_account_id in rows:
                pendings[pending.id] = pending
    resolutions: dict[uuid.UUID, Resolution] = {}
    if pendings:
        for pending_id, transfer_id, kind in await repository.get_resolutions(connection, pendings):
            resolutions[pending_id] = _resolution(pending_id, transfer_id, kind)
    outflows = await _outflows_today(connection, accounts.values(), now=now)
    state = LedgerState(
        accounts=accounts,
        pendings=pendings,
        resolutions=resolutions,
        transfers=stored,
        outflows_today_minor=outflows,
        now=now,
        tombstones=tombstones,
    )
    for hold in expired:
        if hold.id in still_open:
            state.pendings.setdefault(hold.id, hold)
            state.expire(hold)
    return state, rows


async def _transfers_and_tombstones(
    connection: Connection, ids: Collection[uuid.UUID]
) -> tuple[dict[uuid.UUID, TransferRecord], dict[uuid.UUID, TransferRecord]]:
    """The stored transfers among `ids` (a tombstone as the void it recorded, by its id),
    and the tombstones by the id of the hold each refuses."""
    stored: dict[uuid.UUID, TransferRecord] = {}
    tombstones: dict[uuid.UUID, TransferRecord] = {}
    if not ids:
        return stored, tombstones
    for row in await repository.get_transfers_and_tombstones(connection, ids):
        record = _ledger_transfer_of_record(row)
        stored[record.id] = record
        if row["tombstone"]:
            assert record.pending_id is not None, "a tombstone names its hold"
            tombstones[record.pending_id] = record
    return stored, tombstones


async def _outflows_today(
    connection: Connection, accounts: Iterable[AccountSnapshot], *, now: datetime
) -> dict[uuid.UUID, int]:
    """What each customer account with a daily outflow limit has sent today."""
    limited = [
        account.id
        for account in accounts
        if account.kind == AccountKind.customer and account.daily_outflow_limit_minor is not None
    ]
    if not limited:
        return {}
    day_start, day_end = rules.outflow_day(now)
    outflows = dict.fromkeys(limited, 0)
    outflows.update(
        await repository.daily_outflows(
            connection, limited, day_start=day_start, day_end=day_end, now=now
        )
    )
    return outflows


async def _write(connection: Connection, state: LedgerState, *, now: datetime) -> None:
    """Persist what the state recorded: transfers, entries, totals, open holds, tombstones,
    and an audit event for each hold that expired."""
    if state.tombstones_created:
        await repository.insert_tombstones(connection, state.tombstones_created)
    if not state.postings:
        return
    transfers = [posting.transfer for posting in state.postings]
    inserted = await repository.insert_transfers(connection, transfers, created_at=now)
    if inserted != len(transfers):
        raise _ConcurrentInsert
    await repository.insert_entries(connection, state.entry_columns(), created_at=now)
    changes = state.changed_totals()
    # A hold and its void in one batch write entries that leave every total as it was.
    if changes:
        await repository.add_to_totals(connection, changes)
    written = {transfer.id for transfer in transfers}
    opened = [
        transfer
        for transfer in transfers
        if transfer.kind == LedgerTransferKind.pending
        and transfer.expires_at is not None
        and transfer.id not in state.resolutions
    ]
    if opened:
        await repository.insert_expiring_holds(connection, opened)
    closed = [
        pending_id
        for pending_id in _resolved_pending_ids(transfers)
        if pending_id not in written and state.pendings[pending_id].expires_at is not None
    ]
    if closed:
        await repository.delete_expiring_holds(connection, closed)
    for hold in state.expired_holds:
        await audit.append_asyncpg(connection, _hold_expired_event(hold, now=now))


def _hold_expired_event(hold: PendingSnapshot, *, now: datetime) -> AuditEventCreate:
    """The release of a hold past its deadline, once per hold: by the sweeper or by a
    transaction on its accounts, whichever comes first (the void's id is the hold's)."""
    transfer_id = transfer_of_reference(hold.reference)
    return AuditEventCreate(
        id=uuid.uuid5(AUDIT_ID_NAMESPACE, f"hold-expired:{hold.id}"),
        occurred_at=now,
        actor_id=HOLD_EXPIRY_ACTOR_ID,
        actor_type=ActorType.system,
        action="ledger.hold_expired",
        subject_type="ledger_transfer",
        subject_id=str(hold.id),
        transfer_id=transfer_id,
        account_ids=[str(hold.debit_account_id), str(hold.credit_account_id)],
        after={
            "hold_id": str(hold.id),
            "void_id": str(rules.expiry_void_id(hold.id)),
            "amount_minor": hold.amount_minor,
            "currency": hold.currency,
            "expires_at": None if hold.expires_at is None else hold.expires_at.isoformat(),
            "reference": hold.reference,
        },
        outcome="released",
    )


def _resolved_pending_ids(transfers: Iterable[TransferRecord]) -> list[uuid.UUID]:
    return [transfer.pending_id for transfer in transfers if transfer.pending_id is not None]


def _resolution(pending_id: uuid.UUID, transfer_id: uuid.UUID, kind: str) -> Resolution:
    if kind == LedgerTransferKind.post_pending.value:
        return Resolution.posted
    assert kind == LedgerTransferKind.void_pending.value, f"{kind} resolves no hold"
    if transfer_id == rules.expiry_void_id(pending_id):
        return Resolution.expired
    return Resolution.voided


# --- Shapes -----------------------------------------------------------------------------


def _found(accounts: Mapping[uuid.UUID, AccountSnapshot], account_id: uuid.UUID) -> AccountSnapshot:
    account = accounts.get(account_id)
    if account is None:
        raise AccountNotFound(f"no account {account_id}", account_id=str(account_id))
    return account


# Dictionary lookups rather than enum calls: a batch converts a thousand account rows.
_KINDS: Final = {kind.value: kind for kind in AccountKind}
_STATUSES: Final = {status.value: status for status in AccountStatus}


def _snapshot_of_record(record: Any) -> AccountSnapshot:
    return AccountSnapshot(
        id=record["id"],
        kind=_KINDS[record["kind"]],
        currency=record["currency"],
        status=_STATUSES[record["status"]],
        debits_must_not_exceed_credits=record["debits_must_not_exceed_credits"],
        credits_must_not_exceed_debits=record["credits_must_not_exceed_debits"],
        max_transfer_amount_minor=record["max_transfer_amount_minor"],
        debits_pending=record["debits_pending"],
        debits_posted=record["debits_posted"],
        credits_pending=record["credits_pending"],
        credits_posted=record["credits_posted"],
        overdraft_limit_minor=record["overdraft_limit_minor"],
        daily_outflow_limit_minor=record["daily_outflow_limit_minor"],
    )


def _snapshot_of_row(row: AccountRow) -> AccountSnapshot:
    return AccountSnapshot(
        id=row.id,
        kind=AccountKind(row.kind),
        currency=row.currency,
        status=AccountStatus(row.status),
        debits_must_not_exceed_credits=row.debits_must_not_exceed_credits,
        credits_must_not_exceed_debits=row.credits_must_not_exceed_debits,
        max_transfer_amount_minor=row.max_transfer_amount_minor,
        debits_pending=row.debits_pending,
        debits_posted=row.debits_posted,
        credits_pending=row.credits_pending,
        credits_posted=row.credits_posted,
        overdraft_limit_minor=row.overdraft_limit_minor,
        daily_outflow_limit_minor=row.daily_outflow_limit_minor,
    )


def _pending_of_record(record: Any, *, id_column: str = "id") -> PendingSnapshot:
    """A hold as the rules see it, from a pending transfer's row (its id in `id`) or an
    open hold's (in `pending_id`)."""
    return PendingSnapshot(
        id=record[id_column],
        debit_account_id=record["debit_account_id"],
        credit_account_id=record["credit_account_id"],
        amount_minor=record["amount_minor"],
        currency=record["currency"].strip(),
        expires_at=record["expires_at"],
        created_at=record["created_at"],
        reference=record["reference"],
    )


def _account_of_view(view: repository.AccountView) -> Account:
    snapshot = rules.without_expired_holds(
        _snapshot_of_row(view.row),
        expired_debits_minor=view.expired_debits_minor,
        expired_credits_minor=view.expired_credits_minor,
    )
    return _account(view.row, snapshot)


def _account(row: AccountRow | Any, snapshot: AccountSnapshot) -> Account:
    """The account as the API shows it: `row` gives what never changes (owner, creation),
    `snapshot` the status, limits and totals as of now."""
    customer_id = row.customer_id if isinstance(row, AccountRow) else row["customer_id"]
    created_at = row.created_at if isinstance(row, AccountRow) else row["created_at"]
    return Account(
        id=snapshot.id,
        customer_id=customer_id,
        kind=snapshot.kind,
        currency=snapshot.currency,
        status=snapshot.status,
        debits_must_not_exceed_credits=snapshot.debits_must_not_exceed_credits,
        credits_must_not_exceed_debits=snapshot.credits_must_not_exceed_debits,
        max_transfer_amount_minor=snapshot.max_transfer_amount_minor,
        daily_outflow_limit_minor=snapshot.daily_outflow_limit_minor,
        overdraft_limit_minor=snapshot.overdraft_limit_minor,
        balances=Balances(
            posted_minor=snapshot.credits_posted - snapshot.debits_posted,
            pending_minor=snapshot.credits_pending - snapshot.debits_pending,
            available_minor=snapshot.debits_available_minor,
            debits_pending_minor=snapshot.debits_pending,
            debits_posted_minor=snapshot.debits_posted,
            credits_pending_minor=snapshot.credits_pending,
            credits_posted_minor=snapshot.credits_posted,
        ),
        created_at=created_at,
    )


def _ledger_transfer(row: LedgerTransferRow) -> LedgerTransfer:
    return LedgerTransfer(
        id=row.id,
        kind=LedgerTransferKind(row.kind),
        debit_account_id=row.debit_account_id,
        credit_account_id=row.credit_account_id,
        amount_minor=row.amount_minor,
        currency=row.currency,
        pending_id=row.pending_id,
        timeout_seconds=row.timeout_seconds,
        expires_at=row.expires_at,
        reference=row.reference,
        created_at=row.created_at,
    )


def _ledger_transfer_of_record(record: Any) -> TransferRecord:
    return TransferRecord(
        id=record["id"],
        kind=LedgerTransferKind(record["kind"]),
        debit_account_id=record["debit_account_id"],
        credit_account_id=record["credit_account_id"],
        amount_minor=record["amount_minor"],
        currency=record["currency"].strip(),
        pending_id=record["pending_id"],
        timeout_seconds=record["timeout_seconds"],
        expires_at=record["expires_at"],
        reference=record["reference"],
        created_at=record["created_at"],
    )
