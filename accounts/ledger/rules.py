"""The ledger's rules, after TigerBeetle: from account snapshots and a request to the
journal entries one ledger transfer writes, and a batch of them applied in memory (linked
chains included). Pure: the service locks, reads and persists."""

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple
from uuid import UUID, uuid5

from accounts.ledger.errors import (
    AccountClosed,
    AccountNotActive,
    AccountNotEmpty,
    AccountNotFound,
    AccountTotalsOverflow,
    CurrencyMismatch,
    DailyOutflowLimitExceeded,
    InsufficientFunds,
    InvalidLedgerTransfer,
    LedgerTransferExists,
    LinkedEventChainOpen,
    LinkedEventFailed,
    OverdraftInUse,
    OverdraftNotAllowed,
    PendingTransferAlreadyPosted,
    PendingTransferAlreadyVoided,
    PendingTransferExpired,
    PendingTransferNotFound,
    PendingTransferVoided,
    PostAmountExceedsPending,
    SameAccount,
    SystemAccountImmutable,
    TransferLimitExceeded,
)
from contracts.accounts import (
    AccountKind,
    AccountStatus,
    LedgerTransferCreate,
    LedgerTransferKind,
)
from kit.errors import ProblemError

# Account totals are PostgreSQL bigint; the database's balance checks add pending and
# posted, so each side's sum must fit as well.
TOTAL_MAX = 2**63 - 1

# The void that releases an expired hold has an id derived from the hold's, so the sweeper
# and a transfer that releases it on the way, racing, write it once.
EXPIRY_VOID_NAMESPACE: Final = UUID("0b7c5e2a-93d4-4f61-8a0e-6c2d9f4b1e37")
EXPIRY_VOID_REFERENCE: Final = "hold expired"

_OPENING_KINDS = (LedgerTransferKind.single_phase, LedgerTransferKind.pending)
_RESOLVING_KINDS = (LedgerTransferKind.post_pending, LedgerTransferKind.void_pending)


class Balance(enum.StrEnum):
    """The four running totals of an account; every journal entry moves exactly one."""

    debits_pending = "debits_pending"
    debits_posted = "debits_posted"
    credits_pending = "credits_pending"
    credits_posted = "credits_posted"


class Resolution(enum.StrEnum):
    """How a pending transfer (hold) was resolved; it is resolved at most once."""

    posted = "posted"
    voided = "voided"
    # Voided because its deadline passed (by the sweeper or by a transfer on its accounts).
    expired = "expired"


def expiry_void_id(pending_id: UUID) -> UUID:
    return uuid5(EXPIRY_VOID_NAMESPACE, str(pending_id))


def outflow_day(now: datetime) -> tuple[datetime, datetime]:
    """The UTC calendar day a daily outflow limit counts over: [start, end)."""
    assert now.tzinfo is not None, "the clock must be timezone-aware"
    start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


# The records below are NamedTuples: as immutable as frozen dataclasses, and several times
# cheaper to build, which a batch does about ten times per event.
class AccountSnapshot(NamedTuple):
    id: UUID
    kind: AccountKind
    currency: str
    status: AccountStatus
    debits_must_not_exceed_credits: bool
    credits_must_not_exceed_debits: bool
    max_transfer_amount_minor: int | None
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int
    overdraft_limit_minor: int | None = None
    daily_outflow_limit_minor: int | None = None

    def total(self, balance: Balance) -> int:
        match balance:
            case Balance.debits_pending:
                return self.debits_pending
            case Balance.debits_posted:
                return self.debits_posted
            case Balance.credits_pending:
                return self.credits_pending
            case Balance.credits_posted:
                return self.credits_posted

    @property
    def debits_available_minor(self) -> int:
        """What this account may still be debited under `debits_must_not_exceed_credits`
        (its overdraft limit included)."""
        overdraft_minor = self.overdraft_limit_minor or 0
        return self.credits_posted + overdraft_minor - self.debits_posted - self.debits_pending

    @property
    def credits_available_minor(self) -> int:
        """What this account may still be credited under `credits_must_not_exceed_debits`."""
        return self.debits_posted - self.credits_posted - self.credits_pending


class Entry(NamedTuple):
    """A signed change of one balance of one account."""

    account_id: UUID
    balance: Balance
    amount_minor: int


class PendingSnapshot(NamedTuple):
    """The pending transfer (hold) a post or void resolves."""

    id: UUID
    debit_account_id: UUID
    credit_account_id: UUID
    amount_minor: int
    currency: str
    expires_at: datetime | None
    created_at: datetime | None = None
    reference: str | None = None


@dataclass(frozen=True, slots=True)
class TransferRecord:
    """A ledger transfer as stored: the fields of `contracts.accounts.LedgerTransfer`, in a
    plain class because a batch makes a thousand of them per request. (A dataclass, not a
    NamedTuple like the records around it: it is serialised as a JSON object.)"""

    id: UUID
    kind: LedgerTransferKind
    debit_account_id: UUID
    credit_account_id: UUID
    amount_minor: int
    currency: str
    pending_id: UUID | None
    timeout_seconds: int | None
    expires_at: datetime | None
    reference: str | None
    created_at: datetime


class Plan(NamedTuple):
    """Everything one ledger transfer writes, checked against every rule."""

    debit_account_id: UUID
    credit_account_id: UUID
    amount_minor: int
    currency: str
    expires_at: datetime | None
    entries: tuple[Entry, ...]
    # Both accounts as the entries leave them (filled in by the checks).
    accounts_after: tuple[AccountSnapshot, ...] = ()


def check_shape(request: LedgerTransferCreate) -> None:
    """Each kind names what it needs and nothing that would be ignored."""
    if request.kind in _OPENING_KINDS:
        for field in ("debit_account_id", "credit_account_id", "amount_minor", "currency"):
            if getattr(request, field) is None:
                raise InvalidLedgerTransfer(
                    f"a {request.kind.value} transfer needs {field}", field=field
                )
        if request.pending_id is not None:
            raise InvalidLedgerTransfer(
                f"a {request.kind.value} transfer resolves no pending transfer",
                field="pending_id",
            )
        if request.kind == LedgerTransferKind.single_phase and request.timeout_seconds is not None:
            raise InvalidLedgerTransfer(
                "only a pending transfer can time out", field="timeout_seconds"
            )
        return
    assert request.kind in _RESOLVING_KINDS, f"unhandled kind {request.kind}"
    if request.pending_id is None:
        raise InvalidLedgerTransfer(
            f"a {request.kind.value} transfer needs pending_id", field="pending_id"
        )
    if request.timeout_seconds is not None:
        raise InvalidLedgerTransfer("only a pending transfer can time out", field="timeout_seconds")


def check_matches_pending(request: LedgerTransferCreate, pending: PendingSnapshot) -> None:
    """A post or void may repeat the hold's accounts and currency; if it does, they must agree."""
    assert request.kind in _RESOLVING_KINDS, "only posts and voids resolve a pending transfer"
    given = (
        ("debit_account_id", request.debit_account_id, pending.debit_account_id),
        ("credit_account_id", request.credit_account_id, pending.credit_account_id),
        ("currency", request.currency, pending.currency),
    )
    for field, asked, held in given:
        if asked is not None and asked != held:
            raise InvalidLedgerTransfer(
                f"{field} differs from the pending transfer {pending.id}", field=field
            )
    # A void always releases the whole hold; an amount, if given, must say so.
    if (
        request.kind == LedgerTransferKind.void_pending
        and request.amount_minor is not None
        and request.amount_minor != pending.amount_minor
    ):
        raise InvalidLedgerTransfer(
            f"a void releases the whole pending amount ({pending.amount_minor})",
            field="amount_minor",
        )


def first_difference(request: LedgerTransferCreate, stored: TransferRecord) -> str | None:
    """The first field in which a retried request differs from the stored transfer.

    Fields a post or void left out were taken from the pending transfer, so leaving them
    out again is no difference.
    """
    derived = request.kind in _RESOLVING_KINDS
    fields: tuple[tuple[str, object, object, bool], ...] = (
        ("kind", request.kind, stored.kind, False),
        ("pending_id", request.pending_id, stored.pending_id, False),
        ("currency", request.currency, stored.currency, derived),
        ("amount_minor", request.amount_minor, stored.amount_minor, derived),
        ("debit_account_id", request.debit_account_id, stored.debit_account_id, derived),
        ("credit_account_id", request.credit_account_id, stored.credit_account_id, derived),
        ("timeout_seconds", request.timeout_seconds, stored.timeout_seconds, False),
        ("reference", request.reference, stored.reference, False),
    )
    for field, asked, kept, may_be_omitted in fields:
        if asked is None and may_be_omitted:
            continue
        if asked != kept:
            return field
    return None


def check_distinct(debit_account_id: UUID, credit_account_id: UUID) -> None:
    if debit_account_id == credit_account_id:
        raise SameAccount(
            "a transfer moves money between two accounts", account_id=str(debit_account_id)
        )


def check_transfer_allowed(
    *,
    debit: AccountSnapshot,
    credit: AccountSnapshot,
    amount_minor: int,
    currency: str,
    outflow_today_minor: int = 0,
) -> None:
    """Accounts, status, currency and limits; funds are the hold's business, not this one's.

    `outflow_today_minor` is what the debit account already sent today (holds included).
    """
    assert amount_minor > 0, "amounts are validated positive at the edge"
    check_distinct(debit.id, credit.id)
    for account in (debit, credit):
        if account.status != AccountStatus.active:
            raise AccountNotActive(
                f"account {account.id} is {account.status.value}",
                account_id=str(account.id),
                account_status=account.status.value,
            )
    for account in (debit, credit):
        if account.currency != currency:
            raise CurrencyMismatch(
                f"account {account.id} holds {account.currency}, not {currency}",
                account_id=str(account.id),
                account_currency=account.currency,
            )
    limit_minor = debit.max_transfer_amount_minor
    if (
        debit.kind == AccountKind.customer
        and limit_minor is not None
        and amount_minor > limit_minor
    ):
        raise TransferLimitExceeded(
            f"account {debit.id} sends at most {limit_minor} per transfer",
            account_id=str(debit.id),
            max_transfer_amount_minor=limit_minor,
        )
    daily_minor = debit.daily_outflow_limit_minor
    if (
        debit.kind == AccountKind.customer
        and daily_minor is not None
        and outflow_today_minor + amount_minor > daily_minor
    ):
        raise DailyOutflowLimitExceeded(
            f"account {debit.id} may send {max(daily_minor - outflow_today_minor, 0)} more today",
            account_id=str(debit.id),
            daily_outflow_limit_minor=daily_minor,
            outflow_today_minor=outflow_today_minor,
        )


def plan_single_phase(
    *,
    debit: AccountSnapshot,
    credit: AccountSnapshot,
    amount_minor: int,
    currency: str,
    outflow_today_minor: int = 0,
) -> Plan:
    check_transfer_allowed(
        debit=debit,
        credit=credit,
        amount_minor=amount_minor,
        currency=currency,
        outflow_today_minor=outflow_today_minor,
    )
    entries = (
        Entry(debit.id, Balance.debits_posted, amount_minor),
        Entry(credit.id, Balance.credits_posted, amount_minor),
    )
    return _checked(debit.id, credit.id, amount_minor, currency, None, entries, (debit, credit))


def plan_pending(
    *,
    debit: AccountSnapshot,
    credit: AccountSnapshot,
    amount_minor: int,
    currency: str,
    timeout_seconds: int | None,
    now: datetime,
    outflow_today_minor: int = 0,
) -> Plan:
    check_transfer_allowed(
        debit=debit,
        credit=credit,
        amount_minor=amount_minor,
        currency=currency,
        outflow_today_minor=outflow_today_minor,
    )
    assert now.tzinfo is not None, "the clock must be timezone-aware"
    expires_at = None if timeout_seconds is None else now + timedelta(seconds=timeout_seconds)
    entries = (
        Entry(debit.id, Balance.debits_pending, amount_minor),
        Entry(credit.id, Balance.credits_pending, amount_minor),
    )
    return _checked(
        debit.id, credit.id, amount_minor, currency, expires_at, entries, (debit, credit)
    )


def plan_post_pending(
    *,
    pending: PendingSnapshot,
    debit: AccountSnapshot,
    credit: AccountSnapshot,
    amount_minor: int | None,
    resolution: Resolution | None,
    now: datetime,
) -> Plan:
    """Release the whole hold and post `amount_minor` (default: all of it) of it."""
    _check_unresolved(pending, resolution)
    _assert_accounts_of(pending, debit, credit)
    _check_not_expired(pending, now)
    amount = pending.amount_minor if amount_minor is None else amount_minor
    assert amount > 0, "amounts are validated positive at the edge"
    if amount > pending.amount_minor:
        raise PostAmountExceedsPending(
            f"pending transfer {pending.id} holds {pending.amount_minor}",
            pending_id=str(pending.id),
            pending_amount_minor=pending.amount_minor,
        )
    # The hold was checked when it was placed and its money is already set aside, so a
    # freeze in the meantime does not strand it: the saga's post is its pivot and retries
    # until it succeeds. A closed account takes no more money; closing it must first
    # refuse while holds are open.
    for account in (debit, credit):
        if account.status == AccountStatus.closed:
            raise AccountNotActive(
                f"account {account.id} is closed",
                account_id=str(account.id),
                account_status=account.status.value,
            )
    entries = (
        *_release(pending),
        Entry(debit.id, Balance.debits_posted, amount),
        Entry(credit.id, Balance.credits_posted, amount),
    )
    return _checked(debit.id, credit.id, amount, pending.currency, None, entries, (debit, credit))


def plan_void_pending(
    *,
    pending: PendingSnapshot,
    debit: AccountSnapshot,
    credit: AccountSnapshot,
    resolution: Resolution | None,
    now: datetime,
) -> Plan:
    """Release the whole hold, on any account status: releasing money that was set aside
    never moves it. After its deadline the hold is the expiry's to release (as TigerBeetle
    answers `pending_transfer_expired`), so a void then is refused, whether or not the
    sweeper has come by yet."""
    _check_unresolved(pending, resolution)
    _assert_accounts_of(pending, debit, credit)
    _check_not_expired(pending, now)
    entries = _release(pending)
    return _checked(
        debit.id, credit.id, pending.amount_minor, pending.currency, None, entries, (debit, credit)
    )


def plan_expiry_void(
    *, pending: PendingSnapshot, debit: AccountSnapshot, credit: AccountSnapshot, now: datetime
) -> Plan:
    """Release a hold whose deadline has passed (the caller knows it is still open)."""
    assert pending.expires_at is not None, "only a hold with a deadline expires"
    assert now >= pending.expires_at, "a hold expires at its deadline, not before"
    _assert_accounts_of(pending, debit, credit)
    entries = _release(pending)
    return _checked(
        debit.id, credit.id, pending.amount_minor, pending.currency, None, entries, (debit, credit)
    )


def without_expired_holds(
    account: AccountSnapshot, *, expired_debits_minor: int, expired_credits_minor: int
) -> AccountSnapshot:
    """The account as the API reports it: holds past their deadline no longer count, even
    before the sweeper has voided them in the journal."""
    assert 0 <= expired_debits_minor <= account.debits_pending, "expired holds are pending"
    assert 0 <= expired_credits_minor <= account.credits_pending, "expired holds are pending"
    if expired_debits_minor == 0 and expired_credits_minor == 0:
        return account
    return account._replace(
        debits_pending=account.debits_pending - expired_debits_minor,
        credits_pending=account.credits_pending - expired_credits_minor,
    )


def apply(account: AccountSnapshot, entries: Iterable[Entry]) -> AccountSnapshot:
    """The account after `entries` (entries of other accounts are ignored)."""
    debits_pending = account.debits_pending
    debits_posted = account.debits_posted
    credits_pending = account.credits_pending
    credits_posted = account.credits_posted
    account_id = account.id
    for entry in entries:
        # Identity first: a plan's entries carry its accounts' own id objects, and
        # uuid.UUID.__eq__ is Python code.
        if entry.account_id is not account_id and entry.account_id != account_id:
            continue
        balance = entry.balance
        if balance is Balance.debits_pending:
            debits_pending += entry.amount_minor
        elif balance is Balance.debits_posted:
            debits_posted += entry.amount_minor
        elif balance is Balance.credits_pending:
            credits_pending += entry.amount_minor
        else:
            credits_posted += entry.amount_minor
    # Spelled out rather than _replace: this runs twice for every event of a batch.
    return AccountSnapshot(
        account.id,
        account.kind,
        account.currency,
        account.status,
        account.debits_must_not_exceed_credits,
        account.credits_must_not_exceed_debits,
        account.max_transfer_amount_minor,
        debits_pending,
        debits_posted,
        credits_pending,
        credits_posted,
        account.overdraft_limit_minor,
        account.daily_outflow_limit_minor,
    )


class UnbalancedEntries(RuntimeError):
    """Entries that do not balance per phase, an entry that moves nothing, or a transfer
    without entries: a bug in the rules that planned them, which no request can cause. Not
    a ProblemError, so no handler answers it as a 4xx: it surfaces as a 500 and the
    transaction rolls back unwritten."""


def assert_balanced(entries: Iterable[Entry]) -> None:
    """Double entry: per phase, what is debited equals what is credited, and every entry
    moves money. Raises UnbalancedEntries (explicitly, so that `python -O` keeps it)."""
    pending_minor = 0
    posted_minor = 0
    for entry in entries:
        if entry.amount_minor == 0:
            raise UnbalancedEntries(f"an entry moves money, and this one moves none: {entry}")
        balance = entry.balance
        if balance is Balance.debits_pending:
            pending_minor += entry.amount_minor
        elif balance is Balance.credits_pending:
            pending_minor -= entry.amount_minor
        elif balance is Balance.debits_posted:
            posted_minor += entry.amount_minor
        else:
            posted_minor -= entry.amount_minor
    if pending_minor != 0:
        raise UnbalancedEntries(f"pending debits and credits differ by {pending_minor}")
    if posted_minor != 0:
        raise UnbalancedEntries(f"posted debits and credits differ by {posted_minor}")


def _release(pending: PendingSnapshot) -> tuple[Entry, Entry]:
    return (
        Entry(pending.debit_account_id, Balance.debits_pending, -pending.amount_minor),
        Entry(pending.credit_account_id, Balance.credits_pending, -pending.amount_minor),
    )


def _check_unresolved(pending: PendingSnapshot, resolution: Resolution | None) -> None:
    if resolution == Resolution.posted:
        raise PendingTransferAlreadyPosted(
            f"pending transfer {pending.id} was already posted", pending_id=str(pending.id)
        )
    if resolution == Resolution.voided:
        raise PendingTransferAlreadyVoided(
            f"pending transfer {pending.id} was already voided", pending_id=str(pending.id)
        )
    if resolution == Resolution.expired:
        assert pending.expires_at is not None, "only a hold with a deadline expires"
        _raise_expired(pending, pending.expires_at)
    assert resolution is None, f"unhandled resolution {resolution}"


def _check_not_expired(pending: PendingSnapshot, now: datetime) -> None:
    assert now.tzinfo is not None, "the clock must be timezone-aware"
    if pending.expires_at is not None and now >= pending.expires_at:
        _raise_expired(pending, pending.expires_at)


def _raise_expired(pending: PendingSnapshot, expires_at: datetime) -> None:
    raise PendingTransferExpired(
        f"pending transfer {pending.id} expired at {expires_at.isoformat()}",
        pending_id=str(pending.id),
        expires_at=expires_at.isoformat(),
    )


def _assert_accounts_of(
    pending: PendingSnapshot, debit: AccountSnapshot, credit: AccountSnapshot
) -> None:
    assert debit.id == pending.debit_account_id, "post/void debits the hold's debit account"
    assert credit.id == pending.credit_account_id, "post/void credits the hold's credit account"


def _checked(
    debit_account_id: UUID,
    credit_account_id: UUID,
    amount_minor: int,
    currency: str,
    expires_at: datetime | None,
    entries: tuple[Entry, ...],
    accounts: tuple[AccountSnapshot, AccountSnapshot],
) -> Plan:
    """The plan of these entries, once they pass the balance and overflow checks."""
    if not entries:
        raise UnbalancedEntries("a ledger transfer writes entries")
    assert_balanced(entries)
    after = (apply(accounts[0], entries), apply(accounts[1], entries))
    _check_balance_flags(accounts[0], after[0])
    _check_balance_flags(accounts[1], after[1])
    _check_overflow(after[0])
    _check_overflow(after[1])
    return Plan(
        debit_account_id, credit_account_id, amount_minor, currency, expires_at, entries, after
    )


def _check_balance_flags(before: AccountSnapshot, after: AccountSnapshot) -> None:
    """Pessimistic: holds count against the balance. Only a transfer that adds to the
    constrained side is refused; releasing a hold or posting less never is."""
    if before.debits_must_not_exceed_credits:
        debits_before = before.debits_pending + before.debits_posted
        debits_after = after.debits_pending + after.debits_posted
        overdraft_minor = after.overdraft_limit_minor or 0
        if debits_after > debits_before and debits_after - after.credits_posted > overdraft_minor:
            raise InsufficientFunds(
                f"account {before.id} has {before.debits_available_minor} available",
                account_id=str(before.id),
                available_minor=before.debits_available_minor,
            )
    if before.credits_must_not_exceed_debits:
        credits_before = before.credits_pending + before.credits_posted
        credits_after = after.credits_pending + after.credits_posted
        if credits_after > credits_before and credits_after > after.debits_posted:
            raise InsufficientFunds(
                f"account {before.id} may take {before.credits_available_minor} more credits",
                account_id=str(before.id),
                available_minor=before.credits_available_minor,
            )


def _check_overflow(after: AccountSnapshot) -> None:
    debits = after.debits_pending + after.debits_posted
    credits = after.credits_pending + after.credits_posted
    if debits > TOTAL_MAX or credits > TOTAL_MAX:
        raise AccountTotalsOverflow(
            f"account {after.id} cannot record more", account_id=str(after.id)
        )


class StatusAction(enum.StrEnum):
    """What an operator may do to a customer account's status."""

    freeze = "freeze"
    unfreeze = "unfreeze"
    close = "close"


def next_status(account: AccountSnapshot, action: StatusAction) -> AccountStatus:
    """The status `action` leaves the account in. Repeating an action changes nothing and
    is no error; a closed account stays closed."""
    _check_customer_account(account)
    if account.status == AccountStatus.closed:
        if action == StatusAction.close:
            return AccountStatus.closed
        raise AccountClosed(f"account {account.id} is closed", account_id=str(account.id))
    match action:
        case StatusAction.freeze:
            return AccountStatus.frozen
        case StatusAction.unfreeze:
            return AccountStatus.active
        case StatusAction.close:
            _check_empty(account)
            return AccountStatus.closed


def check_limits(account: AccountSnapshot, *, overdraft_limit_minor: int | None) -> None:
    """Whether the account may take these limits (the per-transfer and daily ones always
    may: they only bound what comes next)."""
    _check_customer_account(account)
    if account.status == AccountStatus.closed:
        raise AccountClosed(f"account {account.id} is closed", account_id=str(account.id))
    if overdraft_limit_minor is not None and not account.debits_must_not_exceed_credits:
        raise OverdraftNotAllowed(
            f"account {account.id} has no debits_must_not_exceed_credits rule",
            account_id=str(account.id),
        )
    if account.debits_must_not_exceed_credits:
        used_minor = account.debits_pending + account.debits_posted - account.credits_posted
        if used_minor > (overdraft_limit_minor or 0):
            raise OverdraftInUse(
                f"account {account.id} is {used_minor} below zero (holds included)",
                account_id=str(account.id),
                overdraft_used_minor=used_minor,
            )


def _check_customer_account(account: AccountSnapshot) -> None:
    if account.kind == AccountKind.system:
        raise SystemAccountImmutable(
            f"account {account.id} is the bank's {account.currency} system account",
            account_id=str(account.id),
        )


def _check_empty(account: AccountSnapshot) -> None:
    posted_minor = account.credits_posted - account.debits_posted
    if posted_minor != 0 or account.debits_pending != 0 or account.credits_pending != 0:
        raise AccountNotEmpty(
            f"account {account.id} holds {posted_minor} with "
            f"{account.debits_pending} held out and {account.credits_pending} held in",
            account_id=str(account.id),
            posted_minor=posted_minor,
            debits_pending_minor=account.debits_pending,
            credits_pending_minor=account.credits_pending,
        )


# --- A batch of ledger transfers, applied in memory ------------------------------------


class Posting(NamedTuple):
    """One ledger transfer a batch writes, with its journal entries in order."""

    transfer: TransferRecord
    entries: tuple[Entry, ...]


class EventOutcome(NamedTuple):
    """What one event came to: a created or replayed transfer, or the error it failed with."""

    transfer: TransferRecord | None
    created: bool
    error: ProblemError | None


class EntryColumns(NamedTuple):
    """The journal entries a state writes, column by column (as the database takes them),
    each with its account's balances (credits - debits) right after it."""

    transfer_ids: list[UUID]
    account_ids: list[UUID]
    balances: list[str]
    amounts_minor: list[int]
    posted_balances_after_minor: list[int]
    pending_balances_after_minor: list[int]


_OPENING_KIND_SET = frozenset(_OPENING_KINDS)
_ABSENT: Final = object()


class LedgerState:
    """The accounts, holds and transfers one transaction sees under its locks, changed in
    memory event by event with the rules above; `postings` is what it must write.

    A linked chain records every change in an undo log and rolls back through it if one of
    its events fails, so the chain leaves no trace, as TigerBeetle's do.
    """

    def __init__(
        self,
        *,
        accounts: Mapping[UUID, AccountSnapshot],
        pendings: Mapping[UUID, PendingSnapshot],
        resolutions: Mapping[UUID, Resolution],
        transfers: Mapping[UUID, TransferRecord],
        outflows_today_minor: Mapping[UUID, int],
        now: datetime,
        tombstones: Mapping[UUID, TransferRecord] | None = None,
    ) -> None:
        assert now.tzinfo is not None, "the clock must be timezone-aware"
        self.initial_accounts = dict(accounts)
        self.accounts = dict(accounts)
        self.pendings = dict(pendings)
        self.resolutions = dict(resolutions)
        self.transfers = dict(transfers)
        self.outflows_today_minor = dict(outflows_today_minor)
        # Voids of holds the ledger had not seen, by the hold's id (see `_void_unseen`).
        self.tombstones = dict(tombstones or {})
        self.now = now
        self.day_start, self.day_end = outflow_day(now)
        self.postings: list[Posting] = []
        # What to write besides the postings: new tombstones, and the holds that expired.
        self.tombstones_created: list[TransferRecord] = []
        self.expired_holds: list[PendingSnapshot] = []
        self._undo: list[tuple[dict[Any, Any], Any, object]] | None = None

    def expire(self, pending: PendingSnapshot) -> None:
        """Void a hold whose deadline has passed (the caller knows it is still open)."""
        assert self._undo is None, "expiry is not part of any chain"
        assert pending.id not in self.resolutions, "an open hold has no resolution"
        debit = self.accounts[pending.debit_account_id]
        credit = self.accounts[pending.credit_account_id]
        plan = plan_expiry_void(pending=pending, debit=debit, credit=credit, now=self.now)
        transfer = self._transfer(
            transfer_id=expiry_void_id(pending.id),
            kind=LedgerTransferKind.void_pending,
            plan=plan,
            pending_id=pending.id,
            timeout_seconds=None,
            reference=EXPIRY_VOID_REFERENCE,
        )
        # The daily outflow already leaves expired holds out, so nothing is given back here.
        self._record(transfer, plan)
        self._set(self.resolutions, pending.id, Resolution.expired)
        self.expired_holds.append(pending)

    def execute(
        self, requests: Sequence[LedgerTransferCreate], linked: Sequence[bool]
    ) -> list[EventOutcome]:
        """Apply the events in order; one outcome per event, in the same order."""
        assert len(requests) == len(linked), "one flag per event"
        outcomes: list[EventOutcome] = []
        index = 0
        while index < len(requests):
            if not linked[index]:
                outcomes.append(self._attempt(requests[index]))
                index += 1
                continue
            end = index
            while end < len(requests) and linked[end]:
                end += 1
            if end == len(requests):
                chain_open = LinkedEventChainOpen(
                    f"event {len(requests) - 1} is linked to an event the batch does not have"
                )
                outcomes.extend(EventOutcome(None, False, chain_open) for _ in range(index, end))
                break
            outcomes.extend(self._attempt_chain(requests[index : end + 1], first_index=index))
            index = end + 1
        assert len(outcomes) == len(requests), "one outcome per event"
        return outcomes

    def entry_columns(self) -> EntryColumns:
        """Every entry to write, in order, with the running balances of its account."""
        posted = {
            account_id: account.credits_posted - account.debits_posted
            for account_id, account in self.initial_accounts.items()
        }
        pending = {
            account_id: account.credits_pending - account.debits_pending
            for account_id, account in self.initial_accounts.items()
        }
        columns = EntryColumns([], [], [], [], [], [])
        for posting in self.postings:
            transfer_id = posting.transfer.id
            for account_id, balance, amount_minor in posting.entries:
                if balance is Balance.credits_posted:
                    posted[account_id] += amount_minor
                elif balance is Balance.debits_posted:
                    posted[account_id] -= amount_minor
                elif balance is Balance.credits_pending:
                    pending[account_id] += amount_minor
                else:
                    pending[account_id] -= amount_minor
                columns.transfer_ids.append(transfer_id)
                columns.account_ids.append(account_id)
                columns.balances.append(balance.value)
                columns.amounts_minor.append(amount_minor)
                columns.posted_balances_after_minor.append(posted[account_id])
                columns.pending_balances_after_minor.append(pending[account_id])
        return columns

    def changed_totals(self) -> dict[UUID, tuple[int, int, int, int]]:
        """Per changed account, what to add to (debits_pending, debits_posted,
        credits_pending, credits_posted)."""
        changes: dict[UUID, tuple[int, int, int, int]] = {}
        for account_id, after in self.accounts.items():
            before = self.initial_accounts[account_id]
            delta = (
                after.debits_pending - before.debits_pending,
                after.debits_posted - before.debits_posted,
                after.credits_pending - before.credits_pending,
                after.credits_posted - before.credits_posted,
            )
            if any(delta):
                changes[account_id] = delta
        return changes

    def _attempt(self, request: LedgerTransferCreate) -> EventOutcome:
        try:
            return self._execute_one(request)
        except ProblemError as error:
            return EventOutcome(None, False, error)

    def _attempt_chain(
        self, requests: Sequence[LedgerTransferCreate], *, first_index: int
    ) -> list[EventOutcome]:
        self._undo = []
        postings_before = len(self.postings)
        tombstones_before = len(self.tombstones_created)
        outcomes: list[EventOutcome] = []
        try:
            for request in requests:
                outcome = self._attempt(request)
                outcomes.append(outcome)
                if outcome.error is not None:
                    break
            failed = outcomes[-1].error
            if failed is None:
                return outcomes
            for mapping, key, old in reversed(self._undo):
                if old is _ABSENT:
                    del mapping[key]
                else:
                    mapping[key] = old
            del self.postings[postings_before:]
            del self.tombstones_created[tombstones_before:]
        finally:
            self._undo = None
        failed_index = first_index + len(outcomes) - 1
        linked_failure = LinkedEventFailed(
            f"event {failed_index} of the linked chain failed", failed_event_index=failed_index
        )
        return [
            EventOutcome(None, False, failed if position == len(outcomes) - 1 else linked_failure)
            for position in range(len(requests))
        ]

    def _set(self, mapping: dict[Any, Any], key: Any, value: object) -> None:
        if self._undo is not None:
            self._undo.append((mapping, key, mapping.get(key, _ABSENT)))
        mapping[key] = value

    def _account(self, account_id: UUID) -> AccountSnapshot:
        account = self.accounts.get(account_id)
        if account is None:
            raise AccountNotFound(f"no account {account_id}", account_id=str(account_id))
        return account

    def _execute_one(self, request: LedgerTransferCreate) -> EventOutcome:
        check_shape(request)
        stored = self.transfers.get(request.id)
        if stored is not None:
            field = first_difference(request, stored)
            if field is not None:
                raise LedgerTransferExists(
                    f"ledger transfer {request.id} exists with a different {field}", field=field
                )
            return EventOutcome(stored, False, None)
        if request.kind in _OPENING_KIND_SET:
            return self._open(request)
        return self._resolve(request)

    def _open(self, request: LedgerTransferCreate) -> EventOutcome:
        assert request.debit_account_id is not None, "check_shape requires it"
        assert request.credit_account_id is not None, "check_shape requires it"
        assert request.amount_minor is not None, "check_shape requires it"
        assert request.currency is not None, "check_shape requires it"
        if request.id in self.tombstones:
            raise PendingTransferVoided(
                f"transfer {request.id} was voided before it arrived; it may not be created",
                void_id=str(self.tombstones[request.id].id),
            )
        check_distinct(request.debit_account_id, request.credit_account_id)
        debit = self._account(request.debit_account_id)
        credit = self._account(request.credit_account_id)
        outflow_today_minor = self.outflows_today_minor.get(debit.id, 0)
        if request.kind == LedgerTransferKind.single_phase:
            plan = plan_single_phase(
                debit=debit,
                credit=credit,
                amount_minor=request.amount_minor,
                currency=request.currency,
                outflow_today_minor=outflow_today_minor,
            )
        else:
            plan = plan_pending(
                debit=debit,
                credit=credit,
                amount_minor=request.amount_minor,
                currency=request.currency,
                timeout_seconds=request.timeout_seconds,
                now=self.now,
                outflow_today_minor=outflow_today_minor,
            )
        transfer = self._transfer(
            transfer_id=request.id,
            kind=request.kind,
            plan=plan,
            pending_id=None,
            timeout_seconds=request.timeout_seconds,
            reference=request.reference,
        )
        self._record(transfer, plan)
        if debit.daily_outflow_limit_minor is not None:
            self._set(self.outflows_today_minor, debit.id, outflow_today_minor + plan.amount_minor)
        if request.kind == LedgerTransferKind.pending:
            hold = PendingSnapshot(
                id=request.id,
                debit_account_id=plan.debit_account_id,
                credit_account_id=plan.credit_account_id,
                amount_minor=plan.amount_minor,
                currency=plan.currency,
                expires_at=plan.expires_at,
                created_at=self.now,
            )
            self._set(self.pendings, hold.id, hold)
        return EventOutcome(transfer, True, None)

    def _resolve(self, request: LedgerTransferCreate) -> EventOutcome:
        assert request.pending_id is not None, "check_shape requires it"
        pending = self.pendings.get(request.pending_id)
        if pending is None:
            return self._void_unseen(request)
        check_matches_pending(request, pending)
        debit = self.accounts[pending.debit_account_id]
        credit = self.accounts[pending.credit_account_id]
        resolution = self.resolutions.get(pending.id)
        if request.kind == LedgerTransferKind.post_pending:
            plan = plan_post_pending(
                pending=pending,
                debit=debit,
                credit=credit,
                amount_minor=request.amount_minor,
                resolution=resolution,
                now=self.now,
            )
            released_minor = pending.amount_minor - plan.amount_minor
            resolved = Resolution.posted
        else:
            plan = plan_void_pending(
                pending=pending, debit=debit, credit=credit, resolution=resolution, now=self.now
            )
            released_minor = pending.amount_minor
            resolved = Resolution.voided
        transfer = self._transfer(
            transfer_id=request.id,
            kind=request.kind,
            plan=plan,
            pending_id=pending.id,
            timeout_seconds=None,
            reference=request.reference,
        )
        self._record(transfer, plan)
        self._set(self.resolutions, pending.id, resolved)
        # What a hold placed today set aside but did not send counts no more.
        placed_today = (
            pending.created_at is not None and self.day_start <= pending.created_at < self.day_end
        )
        if released_minor and placed_today and debit.id in self.outflows_today_minor:
            self._set(
                self.outflows_today_minor,
                debit.id,
                self.outflows_today_minor[debit.id] - released_minor,
            )
        return EventOutcome(transfer, True, None)

    def _void_unseen(self, request: LedgerTransferCreate) -> EventOutcome:
        """A void of a hold the ledger has not seen: if it names the hold's accounts, amount
        and currency, it is recorded as a tombstone that refuses the hold should it arrive
        later (a slow first attempt of its requester), and releases nothing. The order in
        which the hold and its void arrive then no longer matters; the service serialises
        the two on the accounts' locks, which both take."""
        assert request.pending_id is not None, "check_shape requires it"
        pending_id = request.pending_id
        if pending_id in self.tombstones:
            raise PendingTransferAlreadyVoided(
                f"pending transfer {pending_id} was already voided", pending_id=str(pending_id)
            )
        named = (
            request.debit_account_id,
            request.credit_account_id,
            request.amount_minor,
            request.currency,
        )
        if (
            request.kind != LedgerTransferKind.void_pending
            or request.debit_account_id not in self.accounts
            or request.credit_account_id not in self.accounts
            or None in named
        ):
            raise PendingTransferNotFound(
                f"no pending transfer {pending_id}", pending_id=str(pending_id)
            )
        assert request.debit_account_id is not None, "checked above"
        assert request.credit_account_id is not None, "checked above"
        assert request.amount_minor is not None, "checked above"
        assert request.currency is not None, "checked above"
        check_distinct(request.debit_account_id, request.credit_account_id)
        tombstone = TransferRecord(
            request.id,
            LedgerTransferKind.void_pending,
            request.debit_account_id,
            request.credit_account_id,
            request.amount_minor,
            request.currency,
            pending_id,
            None,
            None,
            request.reference,
            self.now,
        )
        self._set(self.tombstones, pending_id, tombstone)
        self._set(self.transfers, tombstone.id, tombstone)
        self.tombstones_created.append(tombstone)
        return EventOutcome(tombstone, True, None)

    def _transfer(
        self,
        *,
        transfer_id: UUID,
        kind: LedgerTransferKind,
        plan: Plan,
        pending_id: UUID | None,
        timeout_seconds: int | None,
        reference: str | None,
    ) -> TransferRecord:
        return TransferRecord(
            transfer_id,
            kind,
            plan.debit_account_id,
            plan.credit_account_id,
            plan.amount_minor,
            plan.currency,
            pending_id,
            timeout_seconds,
            plan.expires_at,
            reference,
            self.now,
        )

    def _record(self, transfer: TransferRecord, plan: Plan) -> None:
        assert len(plan.accounts_after) == 2, "a checked plan carries both accounts after it"
        for account in plan.accounts_after:
            self._set(self.accounts, account.id, account)
        self._set(self.transfers, transfer.id, transfer)
        self.postings.append(Posting(transfer, plan.entries))
