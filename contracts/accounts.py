"""Accounts service wire contracts: bank accounts, balances, deposits and the ledger."""

import enum
from datetime import datetime
from typing import Annotated, Final
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.common import ShortText, StrictModel
from contracts.examples import (
    EXAMPLE_CUSTOMER_ID,
    EXAMPLE_LEDGER_TRANSFER_ID,
    EXAMPLE_PAYEE_CUSTOMER_ID,
    EXAMPLE_SOURCE_ACCOUNT_ID,
    EXAMPLE_TARGET_ACCOUNT_ID,
    EXAMPLE_TIME,
    EXAMPLE_TRANSFER_ID,
    example_of,
)
from contracts.money import AMOUNT_MINOR_MAX, AmountMinor, CurrencyCode
from contracts.problem import Problem

ACCOUNTS_PATH = "/v1/accounts"
LEDGER_TRANSFERS_PATH = "/v1/ledger/transfers"
LEDGER_VALIDATIONS_PATH = "/v1/ledger/validations"

LimitMinor = Annotated[int, Field(gt=0, le=AMOUNT_MINOR_MAX, strict=True)]
# The longest a hold may wait to be posted or voided: a 30-day review and a day's grace.
PENDING_TIMEOUT_SECONDS_MAX: Final = 31 * 24 * 3600


class AccountsProblem(enum.StrEnum):
    """The accounts service's own problem slugs (the generic ones: `CommonProblem`)."""

    account_not_found = "account-not-found"
    account_not_active = "account-not-active"
    currency_mismatch = "currency-mismatch"
    same_account = "same-account"
    transfer_limit_exceeded = "transfer-limit-exceeded"
    insufficient_funds = "insufficient-funds"
    account_totals_overflow = "account-totals-overflow"
    invalid_ledger_transfer = "invalid-ledger-transfer"
    ledger_transfer_exists = "ledger-transfer-exists"
    ledger_transfer_not_found = "ledger-transfer-not-found"
    pending_transfer_not_found = "pending-transfer-not-found"
    pending_transfer_already_posted = "pending-transfer-already-posted"
    pending_transfer_already_voided = "pending-transfer-already-voided"
    # A hold past its deadline, released by the ledger: it can be neither posted nor voided.
    pending_transfer_expired = "pending-transfer-expired"
    # A hold refused because a void of its id arrived first (the void left a tombstone).
    pending_transfer_voided = "pending-transfer-voided"
    post_amount_exceeds_pending = "post-amount-exceeds-pending"
    daily_outflow_limit_exceeded = "daily-outflow-limit-exceeded"
    account_closed = "account-closed"
    account_not_empty = "account-not-empty"
    system_account_immutable = "system-account-immutable"
    overdraft_not_allowed = "overdraft-not-allowed"
    overdraft_in_use = "overdraft-in-use"
    linked_event_failed = "linked-event-failed"
    linked_event_chain_open = "linked-event-chain-open"
    ledger_busy = "ledger-busy"
    oauth_invalid_request = "oauth-invalid-request"
    oauth_invalid_client = "oauth-invalid-client"
    oauth_invalid_grant = "oauth-invalid-grant"
    oauth_unsupported_grant_type = "oauth-unsupported-grant-type"
    oauth_invalid_scope = "oauth-invalid-scope"
    customer_exists = "customer-exists"
    owner_set_by_token = "owner-set-by-token"  # noqa: S105 - a problem slug, not a password
    customer_id_required = "customer-id-required"
    unknown_customer = "unknown-customer"
    staff_exists = "staff-exists"
    staff_not_found = "staff-not-found"
    staff_secrets_not_configured = "staff-secrets-not-configured"


# Every 4xx with which the ledger's validation and ledger-transfer endpoints refuse a request
# for what it asks (the generic `CommonProblem`s apart): asking again gets the same answer.
# The saga ends a transfer on the first its validation or hold meets; the routes' declared
# problems and this tuple are checked to agree (accounts/tests/test_problems.py).
LEDGER_REFUSALS: Final[tuple[AccountsProblem, ...]] = (
    # The validation's (and any ledger transfer's)
    AccountsProblem.account_not_found,
    AccountsProblem.account_not_active,
    AccountsProblem.currency_mismatch,
    AccountsProblem.same_account,
    AccountsProblem.transfer_limit_exceeded,
    AccountsProblem.daily_outflow_limit_exceeded,
    # A ledger transfer's
    AccountsProblem.insufficient_funds,
    AccountsProblem.ledger_transfer_exists,
    AccountsProblem.account_totals_overflow,
    AccountsProblem.invalid_ledger_transfer,
    AccountsProblem.pending_transfer_voided,
    # A post's or a void's
    AccountsProblem.pending_transfer_not_found,
    AccountsProblem.pending_transfer_already_posted,
    AccountsProblem.pending_transfer_already_voided,
    AccountsProblem.pending_transfer_expired,
    AccountsProblem.post_amount_exceeds_pending,
)


class AccountStatus(enum.StrEnum):
    active = "active"
    frozen = "frozen"
    closed = "closed"


class AccountKind(enum.StrEnum):
    customer = "customer"
    # Per-currency accounts through which money enters (deposits) and leaves (withdrawals).
    system = "system"


class BalanceRule(enum.StrEnum):
    """Which side of a customer account may not outgrow the other (TigerBeetle's flags)."""

    # No overdraft (beyond `overdraft_limit_minor`): the default for customer accounts.
    debits_must_not_exceed_credits = "debits_must_not_exceed_credits"
    # Credited only up to what it was debited, e.g. a loan or a settlement account.
    credits_must_not_exceed_debits = "credits_must_not_exceed_debits"


class Balances(BaseModel):
    """Balances in minor units, as of now: an expired hold no longer counts in any of them.

    `available_minor` subtracts pending debits (holds) and adds the overdraft limit.
    """

    posted_minor: int
    pending_minor: int
    available_minor: int
    debits_pending_minor: int
    debits_posted_minor: int
    credits_pending_minor: int
    credits_posted_minor: int


class Account(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": EXAMPLE_SOURCE_ACCOUNT_ID,
                    "customer_id": EXAMPLE_CUSTOMER_ID,
                    "kind": "customer",
                    "currency": "EUR",
                    "status": "active",
                    "debits_must_not_exceed_credits": True,
                    "credits_must_not_exceed_debits": False,
                    "max_transfer_amount_minor": 500000,
                    "daily_outflow_limit_minor": 1000000,
                    "balances": {
                        "posted_minor": 125000,
                        "pending_minor": -2500,
                        "available_minor": 122500,
                        "debits_pending_minor": 2500,
                        "debits_posted_minor": 75000,
                        "credits_pending_minor": 0,
                        "credits_posted_minor": 200000,
                    },
                    "created_at": EXAMPLE_TIME,
                    "overdraft_limit_minor": None,
                }
            ]
        }
    )

    id: UUID
    customer_id: str | None
    kind: AccountKind
    currency: str
    status: AccountStatus
    debits_must_not_exceed_credits: bool
    credits_must_not_exceed_debits: bool
    max_transfer_amount_minor: int | None
    daily_outflow_limit_minor: int | None
    balances: Balances
    created_at: datetime
    overdraft_limit_minor: int | None = None


class AccountLimitsUpdate(StrictModel):
    """Change an account's limits: a field sent replaces that limit (`null` removes it);
    a field left out stays as it is."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"max_transfer_amount_minor": 250000, "daily_outflow_limit_minor": None}]
        }
    )

    max_transfer_amount_minor: LimitMinor | None = None
    daily_outflow_limit_minor: LimitMinor | None = None
    overdraft_limit_minor: LimitMinor | None = None


class DepositCreate(StrictModel):
    """Operator moves money in from (deposit) or out to (withdrawal) the system account."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"amount_minor": 150000, "currency": "EUR", "reference": "Salary December"}
            ]
        }
    )

    amount_minor: AmountMinor
    currency: CurrencyCode
    reference: ShortText | None = None


# A saga's ledger transfers carry `transfer:<transfer id>` as their reference, so the ledger
# knows which customer transfer a hold belongs to (its audit events name the transfer).
TRANSFER_REFERENCE_PREFIX: Final = "transfer:"


def transfer_reference(transfer_id: UUID) -> str:
    return f"{TRANSFER_REFERENCE_PREFIX}{transfer_id}"


def transfer_of_reference(reference: str | None) -> UUID | None:
    """The customer transfer a ledger transfer's reference names, if it names one."""
    if reference is None or not reference.startswith(TRANSFER_REFERENCE_PREFIX):
        return None
    try:
        return UUID(reference.removeprefix(TRANSFER_REFERENCE_PREFIX))
    except ValueError:
        return None


class LedgerTransferKind(enum.StrEnum):
    single_phase = "single_phase"
    pending = "pending"
    post_pending = "post_pending"
    void_pending = "void_pending"


class LedgerTransferCreate(StrictModel):
    """A ledger transfer, idempotent on `id`: the same id with the same fields returns the original.

    `single_phase` and `pending` name both accounts and the amount. `post_pending` and
    `void_pending` name `pending_id`; a post may carry a smaller amount (partial post).
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": EXAMPLE_LEDGER_TRANSFER_ID,
                    "kind": "pending",
                    "debit_account_id": EXAMPLE_SOURCE_ACCOUNT_ID,
                    "credit_account_id": EXAMPLE_TARGET_ACCOUNT_ID,
                    "amount_minor": 2500,
                    "currency": "EUR",
                    "timeout_seconds": 86400,
                    "reference": "transfer:" + EXAMPLE_TRANSFER_ID,
                }
            ]
        }
    )

    id: UUID
    kind: LedgerTransferKind
    debit_account_id: UUID | None = None
    credit_account_id: UUID | None = None
    amount_minor: AmountMinor | None = None
    currency: CurrencyCode | None = None
    pending_id: UUID | None = None
    timeout_seconds: Annotated[int, Field(gt=0, le=PENDING_TIMEOUT_SECONDS_MAX)] | None = None
    reference: ShortText | None = None


class LedgerTransfer(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": EXAMPLE_LEDGER_TRANSFER_ID,
                    "kind": "pending",
                    "debit_account_id": EXAMPLE_SOURCE_ACCOUNT_ID,
                    "credit_account_id": EXAMPLE_TARGET_ACCOUNT_ID,
                    "amount_minor": 2500,
                    "currency": "EUR",
                    "pending_id": None,
                    "timeout_seconds": 86400,
                    "expires_at": "2026-12-07T09:30:00Z",
                    "reference": "transfer:" + EXAMPLE_TRANSFER_ID,
                    "created_at": EXAMPLE_TIME,
                }
            ]
        }
    )

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


class TransferValidationRequest(StrictModel):
    """Ask whether a customer transfer may go ahead: accounts, currency, status and limits."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "transfer_id": EXAMPLE_TRANSFER_ID,
                    "source_account_id": EXAMPLE_SOURCE_ACCOUNT_ID,
                    "target_account_id": EXAMPLE_TARGET_ACCOUNT_ID,
                    "amount_minor": 2500,
                    "currency": "EUR",
                }
            ]
        }
    )

    transfer_id: UUID
    source_account_id: UUID
    target_account_id: UUID
    amount_minor: AmountMinor
    currency: CurrencyCode


class TransferValidation(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "transfer_id": EXAMPLE_TRANSFER_ID,
                    "valid": True,
                    "source_customer_id": EXAMPLE_CUSTOMER_ID,
                    "target_customer_id": EXAMPLE_PAYEE_CUSTOMER_ID,
                }
            ]
        }
    )

    transfer_id: UUID
    valid: bool
    # Who owns each side, so the saga can route the transfer's events to both customers.
    source_customer_id: str | None = None
    target_customer_id: str | None = None


LEDGER_INVARIANTS_PATH = "/v1/admin/ledger/invariants"
# How many mismatching account ids one invariants report lists (the count is always exact).
INVARIANT_MISMATCHES_MAX = 100


class CurrencyTotals(BaseModel):
    """Sums over every account of one currency; double entry keeps each pair equal."""

    currency: str
    debits_pending_minor: int
    credits_pending_minor: int
    debits_posted_minor: int
    credits_posted_minor: int
    pending_balanced: bool
    posted_balanced: bool


class AccountTotalsCheck(BaseModel):
    """Whether each account's stored totals equal the sum of its journal entries (journal
    entries of an account that does not exist count as a mismatch, under that id)."""

    accounts_checked: int
    mismatched_count: int
    # The first INVARIANT_MISMATCHES_MAX mismatching accounts, in id order.
    mismatched_account_ids: list[UUID] = Field(max_length=INVARIANT_MISMATCHES_MAX)


class LedgerInvariants(BaseModel):
    """The ledger's invariants checked at one moment; `ok` only when every check holds."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ok": True,
                    "currencies": [
                        {
                            "currency": "EUR",
                            "debits_pending_minor": 2500,
                            "credits_pending_minor": 2500,
                            "debits_posted_minor": 9850000,
                            "credits_posted_minor": 9850000,
                            "pending_balanced": True,
                            "posted_balanced": True,
                        }
                    ],
                    "accounts": {
                        "accounts_checked": 42,
                        "mismatched_count": 0,
                        "mismatched_account_ids": [],
                    },
                    "checked_at": EXAMPLE_TIME,
                    "expired_holds_unswept_count": 0,
                    "entries_without_transfer_count": 0,
                    "transfers_without_entries_count": 0,
                }
            ]
        }
    )

    ok: bool
    currencies: list[CurrencyTotals]
    accounts: AccountTotalsCheck
    checked_at: datetime
    # Holds past their deadline that the sweeper has not voided yet (informational: they
    # already count for nothing in the balances the API reports).
    expired_holds_unswept_count: int = 0
    # Journal entries whose ledger transfer does not exist (any makes `ok` false). The
    # database refuses them; only a writer that turned its triggers off can leave some.
    entries_without_transfer_count: int = 0
    # Ledger transfers with no journal entry (any makes `ok` false): every kind writes
    # entries, and the database does not refuse a transfer without them (it would cost a
    # look-up per transfer at every commit).
    transfers_without_entries_count: int = 0


class StatementEntryTotal(enum.StrEnum):
    """The account total a journal entry moves."""

    debits_pending = "debits_pending"
    debits_posted = "debits_posted"
    credits_pending = "credits_pending"
    credits_posted = "credits_posted"


class StatementEntry(BaseModel):
    """One journal entry of an account, with the account's balances right after it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 1042,
                    "transfer_id": EXAMPLE_LEDGER_TRANSFER_ID,
                    "transfer_kind": "pending",
                    "reference": "transfer:" + EXAMPLE_TRANSFER_ID,
                    "total": "debits_pending",
                    "amount_minor": 2500,
                    "posted_balance_after_minor": 125000,
                    "pending_balance_after_minor": -2500,
                    "created_at": EXAMPLE_TIME,
                }
            ]
        }
    )

    id: int
    transfer_id: UUID
    transfer_kind: LedgerTransferKind
    reference: str | None
    total: StatementEntryTotal
    # Signed: releasing a hold is a negative pending entry.
    amount_minor: int
    # credits - debits, posted and pending, after this entry (as Balances reports them).
    posted_balance_after_minor: int
    pending_balance_after_minor: int
    created_at: datetime


LEDGER_TRANSFER_BATCH_PATH = "/v1/ledger/transfers/batch"
LEDGER_TRANSFER_BATCH_SIZE_MAX = 1000


class LedgerTransferBatchEvent(LedgerTransferCreate):
    """A ledger transfer in a batch. `linked` ties it to the next event: a chain of linked
    events (up to the first one without `linked`) succeeds or fails as a whole."""

    linked: bool = False


class LedgerTransferBatch(StrictModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "transfers": [
                        {
                            "id": EXAMPLE_LEDGER_TRANSFER_ID,
                            "kind": "pending",
                            "debit_account_id": EXAMPLE_SOURCE_ACCOUNT_ID,
                            "credit_account_id": EXAMPLE_TARGET_ACCOUNT_ID,
                            "amount_minor": 2500,
                            "currency": "EUR",
                            "timeout_seconds": 86400,
                            "reference": "transfer:" + EXAMPLE_TRANSFER_ID,
                            "linked": False,
                        }
                    ]
                }
            ]
        }
    )

    transfers: list[LedgerTransferBatchEvent] = Field(
        min_length=1, max_length=LEDGER_TRANSFER_BATCH_SIZE_MAX
    )


class LedgerTransferBatchResult(BaseModel):
    """The outcome of one event, at the event's position in the batch.

    `status` is what the event alone would have answered: 201 created, 200 replayed (same
    id, same fields), else the status of `problem`.
    """

    index: int
    status: int
    transfer: LedgerTransfer | None = None
    problem: Problem | None = None


class LedgerTransferBatchResults(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "results": [
                        {
                            "index": 0,
                            "status": 201,
                            "transfer": example_of(LedgerTransfer),
                        }
                    ]
                }
            ]
        }
    )

    results: list[LedgerTransferBatchResult] = Field(max_length=LEDGER_TRANSFER_BATCH_SIZE_MAX)
