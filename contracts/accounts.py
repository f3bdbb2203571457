"""Accounts service wire contracts: bank accounts, balances, deposits and the ledger."""

import enum
from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, Field

from contracts.common import Identifier, ShortText, StrictModel
from contracts.money import AMOUNT_MINOR_MAX, AmountMinor, CurrencyCode

ACCOUNTS_PATH = "/v1/accounts"
LEDGER_TRANSFERS_PATH = "/v1/ledger/transfers"
LEDGER_VALIDATIONS_PATH = "/v1/ledger/validations"

LimitMinor = Annotated[int, Field(gt=0, le=AMOUNT_MINOR_MAX, strict=True)]


class AccountStatus(enum.StrEnum):
    active = "active"
    frozen = "frozen"
    closed = "closed"


class AccountKind(enum.StrEnum):
    customer = "customer"
    # Per-currency accounts through which money enters (deposits) and leaves (withdrawals).
    system = "system"


class AccountCreate(StrictModel):
    customer_id: Identifier
    currency: CurrencyCode
    max_transfer_amount_minor: LimitMinor | None = None
    daily_outflow_limit_minor: LimitMinor | None = None


class Balances(BaseModel):
    """Balances in minor units. `available` already subtracts pending debits (holds)."""

    posted_minor: int
    pending_minor: int
    available_minor: int
    debits_pending_minor: int
    debits_posted_minor: int
    credits_pending_minor: int
    credits_posted_minor: int


class Account(BaseModel):
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


class DepositCreate(StrictModel):
    """Operator moves money in from (deposit) or out to (withdrawal) the system account."""

    amount_minor: AmountMinor
    currency: CurrencyCode
    reference: ShortText | None = None


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

    id: UUID
    kind: LedgerTransferKind
    debit_account_id: UUID | None = None
    credit_account_id: UUID | None = None
    amount_minor: AmountMinor | None = None
    currency: CurrencyCode | None = None
    pending_id: UUID | None = None
    timeout_seconds: Annotated[int, Field(gt=0, le=30 * 24 * 3600)] | None = None
    reference: ShortText | None = None


class LedgerTransfer(BaseModel):
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

    transfer_id: UUID
    source_account_id: UUID
    target_account_id: UUID
    amount_minor: AmountMinor
    currency: CurrencyCode


class TransferValidation(BaseModel):
    transfer_id: UUID
    valid: bool


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
    """Whether each account's stored totals equal the sum of its journal entries."""

    accounts_checked: int
    mismatched_count: int
    # The first INVARIANT_MISMATCHES_MAX mismatching accounts, in id order.
    mismatched_account_ids: list[UUID] = Field(max_length=INVARIANT_MISMATCHES_MAX)


class LedgerInvariants(BaseModel):
    """The ledger's invariants checked at one moment; `ok` only when every check holds."""

    ok: bool
    currencies: list[CurrencyTotals]
    accounts: AccountTotalsCheck
    checked_at: datetime
