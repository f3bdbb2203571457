"""The ledger's rules, after TigerBeetle: from account snapshots and a request to the
journal entries one ledger transfer writes. Pure: the service locks, reads and persists."""

import enum
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from uuid import UUID

from accounts.errors import (
    AccountNotActive,
    AccountTotalsOverflow,
    CurrencyMismatch,
    InsufficientFunds,
    InvalidLedgerTransfer,
    PendingTransferAlreadyPosted,
    PendingTransferAlreadyVoided,
    PendingTransferExpired,
    PostAmountExceedsPending,
    SameAccount,
    TransferLimitExceeded,
)
from contracts.accounts import (
    AccountKind,
    AccountStatus,
    LedgerTransfer,
    LedgerTransferCreate,
    LedgerTransferKind,
)

# Account totals are PostgreSQL bigint; the database's balance checks add pending and
# posted, so each side's sum must fit as well.
TOTAL_MAX = 2**63 - 1

_OPENING_KINDS = (LedgerTransferKind.single_phase, LedgerTransferKind.pending)
_RESOLVING_KINDS = (LedgerTransferKind.post_pending, LedgerTransferKind.void_pending)


class Balance(enum.StrEnum):
    """The four running totals of an account; every journal entry moves exactly one."""

    debits_pending = "debits_pending"
    debits_posted = "debits_posted"
    credits_pending = "credits_pending"
    credits_posted = "credits_posted"


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
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
        """What this account may still be debited under `debits_must_not_exceed_credits`."""
        return self.credits_posted - self.debits_posted - self.debits_pending

    @property
    def credits_available_minor(self) -> int:
        """What this account may still be credited under `credits_must_not_exceed_debits`."""
        return self.debits_posted - self.credits_posted - self.credits_pending


@dataclass(frozen=True, slots=True)
class Entry:
    """A signed change of one balance of one account."""

    account_id: UUID
    balance: Balance
    amount_minor: int


@dataclass(frozen=True, slots=True)
class PendingSnapshot:
    """The pending transfer (hold) a post or void resolves."""

    id: UUID
    debit_account_id: UUID
    credit_account_id: UUID
    amount_minor: int
    currency: str
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything one ledger transfer writes, checked against every rule."""

    debit_account_id: UUID
    credit_account_id: UUID
    amount_minor: int
    currency: str
    expires_at: datetime | None
    entries: tuple[Entry, ...]


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


def first_difference(request: LedgerTransferCreate, stored: LedgerTransfer) -> str | None:
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
    *, debit: AccountSnapshot, credit: AccountSnapshot, amount_minor: int, currency: str
) -> None:
    """Accounts, status, currency and limits; funds are the hold's business, not this one's."""
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


def plan_single_phase(
    *, debit: AccountSnapshot, credit: AccountSnapshot, amount_minor: int, currency: str
) -> Plan:
    check_transfer_allowed(debit=debit, credit=credit, amount_minor=amount_minor, currency=currency)
    entries = (
        Entry(debit.id, Balance.debits_posted, amount_minor),
        Entry(credit.id, Balance.credits_posted, amount_minor),
    )
    return _checked(
        Plan(debit.id, credit.id, amount_minor, currency, None, entries), (debit, credit)
    )


def plan_pending(
    *,
    debit: AccountSnapshot,
    credit: AccountSnapshot,
    amount_minor: int,
    currency: str,
    timeout_seconds: int | None,
    now: datetime,
) -> Plan:
    check_transfer_allowed(debit=debit, credit=credit, amount_minor=amount_minor, currency=currency)
    assert now.tzinfo is not None, "the clock must be timezone-aware"
    expires_at = None if timeout_seconds is None else now + timedelta(seconds=timeout_seconds)
    entries = (
        Entry(debit.id, Balance.debits_pending, amount_minor),
        Entry(credit.id, Balance.credits_pending, amount_minor),
    )
    return _checked(
        Plan(debit.id, credit.id, amount_minor, currency, expires_at, entries), (debit, credit)
    )


def plan_post_pending(
    *,
    pending: PendingSnapshot,
    debit: AccountSnapshot,
    credit: AccountSnapshot,
    amount_minor: int | None,
    resolved_by: LedgerTransferKind | None,
    now: datetime,
) -> Plan:
    """Release the whole hold and post `amount_minor` (default: all of it) of it."""
    _check_unresolved(pending, resolved_by)
    _assert_accounts_of(pending, debit, credit)
    assert now.tzinfo is not None, "the clock must be timezone-aware"
    if pending.expires_at is not None and now >= pending.expires_at:
        raise PendingTransferExpired(
            f"pending transfer {pending.id} expired at {pending.expires_at.isoformat()}",
            pending_id=str(pending.id),
            expires_at=pending.expires_at.isoformat(),
        )
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
    return _checked(
        Plan(debit.id, credit.id, amount, pending.currency, None, entries), (debit, credit)
    )


def plan_void_pending(
    *,
    pending: PendingSnapshot,
    debit: AccountSnapshot,
    credit: AccountSnapshot,
    resolved_by: LedgerTransferKind | None,
) -> Plan:
    """Release the whole hold. Allowed after expiry and on any account status: releasing
    money that was set aside never moves it, and refusing would strand it."""
    _check_unresolved(pending, resolved_by)
    _assert_accounts_of(pending, debit, credit)
    entries = _release(pending)
    return _checked(
        Plan(debit.id, credit.id, pending.amount_minor, pending.currency, None, entries),
        (debit, credit),
    )


def apply(account: AccountSnapshot, entries: Iterable[Entry]) -> AccountSnapshot:
    """The account after `entries` (entries of other accounts are ignored)."""
    totals = {balance: account.total(balance) for balance in Balance}
    for entry in entries:
        if entry.account_id == account.id:
            totals[entry.balance] += entry.amount_minor
    return replace(
        account,
        debits_pending=totals[Balance.debits_pending],
        debits_posted=totals[Balance.debits_posted],
        credits_pending=totals[Balance.credits_pending],
        credits_posted=totals[Balance.credits_posted],
    )


def deltas(entries: Iterable[Entry]) -> dict[UUID, dict[Balance, int]]:
    """Per account, the net change of each balance the entries move."""
    changes: dict[UUID, dict[Balance, int]] = {}
    for entry in entries:
        per_account = changes.setdefault(entry.account_id, {})
        per_account[entry.balance] = per_account.get(entry.balance, 0) + entry.amount_minor
    return changes


def assert_balanced(entries: Iterable[Entry]) -> None:
    """Double entry: per phase, what is debited equals what is credited."""
    sums = dict.fromkeys(Balance, 0)
    for entry in entries:
        assert entry.amount_minor != 0, "an entry moves money"
        sums[entry.balance] += entry.amount_minor
    assert sums[Balance.debits_pending] == sums[Balance.credits_pending], sums
    assert sums[Balance.debits_posted] == sums[Balance.credits_posted], sums


def _release(pending: PendingSnapshot) -> tuple[Entry, Entry]:
    return (
        Entry(pending.debit_account_id, Balance.debits_pending, -pending.amount_minor),
        Entry(pending.credit_account_id, Balance.credits_pending, -pending.amount_minor),
    )


def _check_unresolved(pending: PendingSnapshot, resolved_by: LedgerTransferKind | None) -> None:
    if resolved_by == LedgerTransferKind.post_pending:
        raise PendingTransferAlreadyPosted(
            f"pending transfer {pending.id} was already posted", pending_id=str(pending.id)
        )
    if resolved_by == LedgerTransferKind.void_pending:
        raise PendingTransferAlreadyVoided(
            f"pending transfer {pending.id} was already voided", pending_id=str(pending.id)
        )
    assert resolved_by is None, f"a {resolved_by} does not resolve a pending transfer"


def _assert_accounts_of(
    pending: PendingSnapshot, debit: AccountSnapshot, credit: AccountSnapshot
) -> None:
    assert debit.id == pending.debit_account_id, "post/void debits the hold's debit account"
    assert credit.id == pending.credit_account_id, "post/void credits the hold's credit account"


def _checked(plan: Plan, accounts: tuple[AccountSnapshot, AccountSnapshot]) -> Plan:
    assert_balanced(plan.entries)
    for account in accounts:
        _check_balance_flags(account, apply(account, plan.entries))
    for account in accounts:
        _check_overflow(apply(account, plan.entries))
    return plan


def _check_balance_flags(before: AccountSnapshot, after: AccountSnapshot) -> None:
    """Pessimistic: holds count against the balance. Only a transfer that adds to the
    constrained side is refused; releasing a hold or posting less never is."""
    if before.debits_must_not_exceed_credits:
        debits_before = before.debits_pending + before.debits_posted
        debits_after = after.debits_pending + after.debits_posted
        if debits_after > debits_before and debits_after > after.credits_posted:
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
