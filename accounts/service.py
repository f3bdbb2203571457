"""Use cases of the accounts service. The caller's session is the unit of work."""

import base64
import enum
import uuid
from datetime import datetime
from typing import Final

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from accounts import ledger, repository
from accounts.errors import (
    AccountNotFound,
    InvalidCursor,
    LedgerTransferExists,
    LedgerTransferNotFound,
    PendingTransferNotFound,
)
from accounts.models import AccountRow, LedgerTransferRow
from contracts.accounts import (
    INVARIANT_MISMATCHES_MAX,
    Account,
    AccountCreate,
    AccountKind,
    AccountStatus,
    AccountTotalsCheck,
    Balances,
    CurrencyTotals,
    DepositCreate,
    LedgerInvariants,
    LedgerTransfer,
    LedgerTransferCreate,
    LedgerTransferKind,
    TransferValidation,
    TransferValidationRequest,
)
from contracts.common import LIMIT_MAX, Page

log = structlog.get_logger()

# Namespace of the ledger transfer ids derived from (account, direction, Idempotency-Key),
# so a retried deposit or withdrawal finds the transfer its first attempt wrote.
EXTERNAL_TRANSFER_NAMESPACE: Final = uuid.UUID("5d0e8f3a-7c41-4b9e-a6d2-1f3c9b7e2a54")


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


async def create_account(
    session: AsyncSession, *, request: AccountCreate, now: datetime
) -> Account:
    row = await repository.insert_account(
        session,
        customer_id=request.customer_id,
        currency=request.currency,
        max_transfer_amount_minor=request.max_transfer_amount_minor,
        daily_outflow_limit_minor=request.daily_outflow_limit_minor,
        created_at=now,
    )
    log.info("account.created", account_id=str(row.id), currency=row.currency)
    return _account(row)


async def get_account(session: AsyncSession, *, account_id: uuid.UUID) -> Account:
    row = await repository.get_account(session, account_id)
    if row is None:
        raise AccountNotFound(f"no account {account_id}", account_id=str(account_id))
    return _account(row)


async def list_accounts(
    session: AsyncSession, *, customer_id: str | None, limit: int, cursor: str | None
) -> Page[Account]:
    assert 0 < limit <= LIMIT_MAX, "the route caps limit"
    after = None if cursor is None else _decode_cursor(cursor)
    # One more than asked tells whether another page follows.
    rows = await repository.list_accounts(
        session, customer_id=customer_id, after=after, limit=limit + 1
    )
    page = rows[:limit]
    next_cursor = _encode_cursor(page[-1]) if len(rows) > limit else None
    return Page[Account](items=[_account(row) for row in page], next_cursor=next_cursor)


async def create_ledger_transfer(
    session: AsyncSession, *, request: LedgerTransferCreate, now: datetime
) -> tuple[LedgerTransfer, bool]:
    """Record a ledger transfer once; True when this call created it.

    A retry with the same id and fields returns the original, even if the accounts have
    changed since (a replay never re-checks funds or status).
    """
    ledger.check_shape(request)
    original = await _replay(session, request)
    if original is not None:
        return original, False

    if request.kind in (LedgerTransferKind.single_phase, LedgerTransferKind.pending):
        assert request.debit_account_id is not None, "check_shape requires it"
        assert request.credit_account_id is not None, "check_shape requires it"
        ledger.check_distinct(request.debit_account_id, request.credit_account_id)
        debit, credit = await _lock_pair(
            session, request.debit_account_id, request.credit_account_id
        )
        pending = None
        resolved_by = None
    else:
        assert request.pending_id is not None, "check_shape requires it"
        pending = await _pending(session, request.pending_id)
        ledger.check_matches_pending(request, pending)
        debit, credit = await _lock_pair(
            session, pending.debit_account_id, pending.credit_account_id
        )
        # Read under the locks: every resolution of this hold locks the same two accounts.
        kind = await repository.get_resolution_kind(session, pending.id)
        resolved_by = None if kind is None else LedgerTransferKind(kind)

    # An identical request may have committed while this one waited for the locks.
    original = await _replay(session, request)
    if original is not None:
        return original, False

    plan = _plan(
        request, debit=debit, credit=credit, pending=pending, resolved_by=resolved_by, now=now
    )
    created = await repository.insert_ledger_transfer(
        session,
        transfer_id=request.id,
        kind=request.kind.value,
        debit_account_id=plan.debit_account_id,
        credit_account_id=plan.credit_account_id,
        amount_minor=plan.amount_minor,
        currency=plan.currency,
        pending_id=request.pending_id,
        timeout_seconds=request.timeout_seconds,
        expires_at=plan.expires_at,
        reference=request.reference,
        created_at=now,
    )
    if not created:
        # A request with the same id committed between our checks and our insert; it
        # locked other accounts, so nothing made this one wait for it earlier.
        original = await _replay(session, request)
        assert original is not None, "the conflicting insert committed"
        return original, False

    await repository.insert_entries(
        session, transfer_id=request.id, entries=plan.entries, created_at=now
    )
    for account_id, changes in ledger.deltas(plan.entries).items():
        await repository.add_to_totals(session, account_id, changes)
    row = await repository.get_ledger_transfer(session, request.id)
    assert row is not None, "inserted above"
    log.info(
        "ledger.transfer_created",
        ledger_transfer_id=str(request.id),
        kind=request.kind.value,
        amount_minor=plan.amount_minor,
        currency=plan.currency,
    )
    return _ledger_transfer(row), True


async def get_ledger_transfer(session: AsyncSession, *, transfer_id: uuid.UUID) -> LedgerTransfer:
    row = await repository.get_ledger_transfer(session, transfer_id)
    if row is None:
        raise LedgerTransferNotFound(f"no ledger transfer {transfer_id}")
    return _ledger_transfer(row)


async def move_external(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    direction: Direction,
    idempotency_key: str,
    request: DepositCreate,
    now: datetime,
) -> tuple[LedgerTransfer, bool]:
    """Money in (deposit) or out (withdrawal) through the currency's system account,
    idempotent on the Idempotency-Key; True when this call created the transfer."""
    assert idempotency_key, "the route requires a key"
    # Created before anything is locked (STYLE rule 3); harmless when it exists already.
    system_account_id = await repository.ensure_system_account(
        session, currency=request.currency, created_at=now
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
    return await create_ledger_transfer(session, request=transfer, now=now)


async def validate_transfer(
    session: AsyncSession, *, request: TransferValidationRequest
) -> TransferValidation:
    """Whether a customer transfer may go ahead; reads only, and leaves funds to the hold."""
    ledger.check_distinct(request.source_account_id, request.target_account_id)
    rows = await repository.get_accounts(
        session, {request.source_account_id, request.target_account_id}
    )
    source = _found(rows, request.source_account_id)
    target = _found(rows, request.target_account_id)
    ledger.check_transfer_allowed(
        debit=_snapshot(source),
        credit=_snapshot(target),
        amount_minor=request.amount_minor,
        currency=request.currency,
    )
    return TransferValidation(transfer_id=request.transfer_id, valid=True)


async def check_invariants(session: AsyncSession, *, now: datetime) -> LedgerInvariants:
    """Double entry per currency and phase; stored totals against the journal.

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
    ok = accounts.mismatched_count == 0 and all(
        totals.pending_balanced and totals.posted_balanced for totals in currencies
    )
    if not ok:
        log.error(
            "ledger.invariants_broken",
            mismatched_count=accounts.mismatched_count,
            unbalanced_currencies=[
                totals.currency
                for totals in currencies
                if not (totals.pending_balanced and totals.posted_balanced)
            ],
        )
    return LedgerInvariants(ok=ok, currencies=currencies, accounts=accounts, checked_at=now)


def _plan(
    request: LedgerTransferCreate,
    *,
    debit: ledger.AccountSnapshot,
    credit: ledger.AccountSnapshot,
    pending: ledger.PendingSnapshot | None,
    resolved_by: LedgerTransferKind | None,
    now: datetime,
) -> ledger.Plan:
    match request.kind:
        case LedgerTransferKind.single_phase:
            assert request.amount_minor is not None, "check_shape requires it"
            assert request.currency is not None, "check_shape requires it"
            return ledger.plan_single_phase(
                debit=debit,
                credit=credit,
                amount_minor=request.amount_minor,
                currency=request.currency,
            )
        case LedgerTransferKind.pending:
            assert request.amount_minor is not None, "check_shape requires it"
            assert request.currency is not None, "check_shape requires it"
            return ledger.plan_pending(
                debit=debit,
                credit=credit,
                amount_minor=request.amount_minor,
                currency=request.currency,
                timeout_seconds=request.timeout_seconds,
                now=now,
            )
        case LedgerTransferKind.post_pending:
            assert pending is not None, "a post resolves a pending transfer"
            return ledger.plan_post_pending(
                pending=pending,
                debit=debit,
                credit=credit,
                amount_minor=request.amount_minor,
                resolved_by=resolved_by,
                now=now,
            )
        case LedgerTransferKind.void_pending:
            assert pending is not None, "a void resolves a pending transfer"
            return ledger.plan_void_pending(
                pending=pending, debit=debit, credit=credit, resolved_by=resolved_by
            )


async def _replay(session: AsyncSession, request: LedgerTransferCreate) -> LedgerTransfer | None:
    """The stored transfer with this id if the request repeats it; a conflict if it differs."""
    row = await repository.get_ledger_transfer(session, request.id)
    if row is None:
        return None
    stored = _ledger_transfer(row)
    field = ledger.first_difference(request, stored)
    if field is not None:
        raise LedgerTransferExists(
            f"ledger transfer {request.id} exists with a different {field}", field=field
        )
    return stored


async def _pending(session: AsyncSession, pending_id: uuid.UUID) -> ledger.PendingSnapshot:
    row = await repository.get_ledger_transfer(session, pending_id)
    if row is None or row.kind != LedgerTransferKind.pending.value:
        raise PendingTransferNotFound(
            f"no pending transfer {pending_id}", pending_id=str(pending_id)
        )
    return ledger.PendingSnapshot(
        id=row.id,
        debit_account_id=row.debit_account_id,
        credit_account_id=row.credit_account_id,
        amount_minor=row.amount_minor,
        currency=row.currency,
        expires_at=row.expires_at,
    )


async def _lock_pair(
    session: AsyncSession, debit_account_id: uuid.UUID, credit_account_id: uuid.UUID
) -> tuple[ledger.AccountSnapshot, ledger.AccountSnapshot]:
    rows = await repository.lock_accounts(session, (debit_account_id, credit_account_id))
    debit = _found(rows, debit_account_id)
    credit = _found(rows, credit_account_id)
    return _snapshot(debit), _snapshot(credit)


def _found(rows: dict[uuid.UUID, AccountRow], account_id: uuid.UUID) -> AccountRow:
    row = rows.get(account_id)
    if row is None:
        raise AccountNotFound(f"no account {account_id}", account_id=str(account_id))
    return row


def _snapshot(row: AccountRow) -> ledger.AccountSnapshot:
    return ledger.AccountSnapshot(
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
    )


def _account(row: AccountRow) -> Account:
    snapshot = _snapshot(row)
    return Account(
        id=row.id,
        customer_id=row.customer_id,
        kind=snapshot.kind,
        currency=row.currency,
        status=snapshot.status,
        debits_must_not_exceed_credits=row.debits_must_not_exceed_credits,
        credits_must_not_exceed_debits=row.credits_must_not_exceed_debits,
        max_transfer_amount_minor=row.max_transfer_amount_minor,
        daily_outflow_limit_minor=row.daily_outflow_limit_minor,
        balances=Balances(
            posted_minor=row.credits_posted - row.debits_posted,
            pending_minor=row.credits_pending - row.debits_pending,
            available_minor=snapshot.debits_available_minor,
            debits_pending_minor=row.debits_pending,
            debits_posted_minor=row.debits_posted,
            credits_pending_minor=row.credits_pending,
            credits_posted_minor=row.credits_posted,
        ),
        created_at=row.created_at,
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


def _encode_cursor(row: AccountRow) -> str:
    position = f"{row.created_at.isoformat()}|{row.id}"
    return base64.urlsafe_b64encode(position.encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        position = base64.urlsafe_b64decode(cursor.encode()).decode()
        created_at_text, separator, account_id_text = position.partition("|")
        created_at = datetime.fromisoformat(created_at_text)
        account_id = uuid.UUID(account_id_text)
    except ValueError as error:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise InvalidCursor("pass back a next_cursor exactly as received") from error
    if not separator or created_at.tzinfo is None:
        raise InvalidCursor("pass back a next_cursor exactly as received")
    return created_at, account_id
