"""The ledger's routes (accounts, transfers): parse, call the service, shape the answer."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import ConfigDict, TypeAdapter, model_validator

from accounts.ledger import service
from accounts.ledger.errors import (
    AccountClosed,
    AccountNotActive,
    AccountNotEmpty,
    AccountNotFound,
    AccountTotalsOverflow,
    CurrencyMismatch,
    CustomerIdRequired,
    DailyOutflowLimitExceeded,
    InsufficientFunds,
    InvalidLedgerTransfer,
    LedgerBusy,
    LedgerTransferExists,
    LedgerTransferNotFound,
    OverdraftInUse,
    OverdraftNotAllowed,
    OwnerFromToken,
    PendingTransferAlreadyPosted,
    PendingTransferAlreadyVoided,
    PendingTransferExpired,
    PendingTransferNotFound,
    PendingTransferVoided,
    PostAmountExceedsPending,
    SameAccount,
    SystemAccountImmutable,
    TransferLimitExceeded,
    UnknownCustomer,
)
from accounts.ledger.resources import Resources
from accounts.ledger.rules import StatusAction, TransferRecord
from contracts.accounts import (
    ACCOUNTS_PATH,
    LEDGER_INVARIANTS_PATH,
    LEDGER_TRANSFER_BATCH_PATH,
    LEDGER_TRANSFERS_PATH,
    LEDGER_VALIDATIONS_PATH,
    TRANSFER_REFERENCE_PREFIX,
    Account,
    AccountLimitsUpdate,
    BalanceRule,
    DepositCreate,
    LedgerInvariants,
    LedgerTransfer,
    LedgerTransferBatch,
    LedgerTransferBatchResults,
    LedgerTransferCreate,
    LedgerTransferKind,
    LimitMinor,
    StatementEntry,
    TransferValidation,
    TransferValidationRequest,
    transfer_of_reference,
)
from contracts.auth import PrincipalKind, Scope
from contracts.common import LIMIT_DEFAULT, Identifier, Page, StrictModel
from contracts.money import CurrencyCode
from kit.audit import Actor
from kit.auth import Principal, require_any_scope, require_scopes
from kit.db import Session
from kit.deadline import DeadlineExceeded, InvalidDeadline, RequestDeadline
from kit.errors import (
    Forbidden,
    IdempotencyKeyMissing,
    InvalidRequest,
    TooManyRequests,
    Unauthorized,
)
from kit.pagination import InvalidCursor
from kit.params import (
    AuditActor,
    Cursor,
    IdempotencyKey,
    Limit,
    Now,
    required_idempotency_key,
)
from kit.problems import problem_responses, request_id_of
from kit.ratelimit import MONEY_BUCKET, rate_limited
from kit.tracing import current_trace_id

router = APIRouter()


# Who may call what. Ownership (a customer sees only their own accounts) is the service's
# check, and a foreign account answers 404 as if it did not exist.
AccountsRead = Annotated[Principal, Depends(require_scopes(Scope.accounts_read))]
AccountsAdmin = Annotated[Principal, Depends(require_scopes(Scope.accounts_admin))]
LedgerWrite = Annotated[Principal, Depends(require_scopes(Scope.ledger_write))]
# Ledger transfers: staff any (accounts:admin), the saga's worker only its own steps
# (`_check_ledger_writes`).
LedgerWriter = Annotated[
    Principal, Depends(require_any_scope(Scope.accounts_admin, Scope.ledger_write))
]
# Customers open accounts for themselves (accounts:write), operators for a customer
# (accounts:admin); `create_account` tells the two apart.
AccountOpener = Annotated[
    Principal, Depends(require_any_scope(Scope.accounts_write, Scope.accounts_admin))
]
# Ledger records name two accounts, customers' or the bank's: staff and the saga only.
LedgerReader = Annotated[
    Principal, Depends(require_any_scope(Scope.accounts_admin, Scope.ledger_write))
]
# Counted per principal, after the scope check: a refused call uses none of the budget.
MoneyMoved = Annotated[Principal, Depends(rate_limited(MONEY_BUCKET))]

_AUTH_PROBLEMS = (Unauthorized, Forbidden)
# What the saga writes: a customer transfer's hold, its post, its void.
_SAGA_STEP_KINDS = frozenset(
    {LedgerTransferKind.pending, LedgerTransferKind.post_pending, LedgerTransferKind.void_pending}
)


def _check_ledger_writes(principal: Principal, requests: Sequence[LedgerTransferCreate]) -> None:
    """Forbidden unless the principal may write every one of `requests`: accounts:admin any
    ledger transfer; ledger:write (the saga's worker) only a hold, post or void whose
    reference names a customer transfer (`transfer:<id>`), so that the worker's token cannot
    move money in one step nor outside a customer transfer's trail."""
    if principal.has(Scope.accounts_admin):
        return
    for request in requests:
        if request.kind not in _SAGA_STEP_KINDS:
            raise Forbidden(f"A {request.kind.value} ledger transfer needs accounts:admin.")
        if transfer_of_reference(request.reference) is None:
            raise Forbidden(
                f"A {request.kind.value} ledger transfer without a reference "
                f"{TRANSFER_REFERENCE_PREFIX}<transfer id> needs accounts:admin."
            )


def _owner(principal: Principal) -> str | None:
    """The customer whose objects alone this principal may see; None: any account. A
    reader that is neither a customer nor staff (accounts:admin) nor the saga
    (ledger:write) holds accounts:read for nothing here."""
    if principal.kind is PrincipalKind.customer:
        return principal.subject
    if principal.has(Scope.accounts_admin) or principal.has(Scope.ledger_write):
        return None
    raise Forbidden("Reading other customers' accounts needs the scope accounts:admin.")


class AccountOpen(StrictModel):
    """Open an account. A customer leaves out `customer_id` (the token names the owner);
    an operator names the registered customer who will own it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "currency": "EUR",
                    "max_transfer_amount_minor": 500000,
                    "daily_outflow_limit_minor": 1000000,
                    "balance_rule": "debits_must_not_exceed_credits",
                }
            ]
        }
    )

    customer_id: Identifier | None = None
    currency: CurrencyCode
    max_transfer_amount_minor: LimitMinor | None = None
    daily_outflow_limit_minor: LimitMinor | None = None
    balance_rule: BalanceRule = BalanceRule.debits_must_not_exceed_credits
    # How far debits may exceed credits; only with `debits_must_not_exceed_credits`.
    overdraft_limit_minor: LimitMinor | None = None

    @model_validator(mode="after")
    def _overdraft_needs_the_debit_rule(self) -> "AccountOpen":
        if (
            self.overdraft_limit_minor is not None
            and self.balance_rule != BalanceRule.debits_must_not_exceed_credits
        ):
            raise ValueError("an overdraft limit needs balance_rule debits_must_not_exceed_credits")
        return self


_REPLAYED: dict[int | str, dict[str, Any]] = {
    200: {"model": LedgerTransfer, "description": "Replayed: created by an earlier call"}
}
_MOVEMENT_PROBLEMS = (
    InvalidRequest,
    AccountNotFound,
    AccountNotActive,
    CurrencyMismatch,
    SameAccount,
    TransferLimitExceeded,
    DailyOutflowLimitExceeded,
    InsufficientFunds,
    LedgerTransferExists,
    AccountTotalsOverflow,
    LedgerBusy,
)
_STATUS_PROBLEMS = (
    *_AUTH_PROBLEMS,
    InvalidRequest,
    AccountNotFound,
    SystemAccountImmutable,
    AccountClosed,
    LedgerBusy,
)


@router.post(
    ACCOUNTS_PATH,
    status_code=status.HTTP_201_CREATED,
    tags=["accounts"],
    summary="Open an account: a customer for themselves, an operator for a named customer",
    description=(
        "A customer (accounts:write) opens an account they own and sends no `customer_id`: "
        "the token names the owner, so a `customer_id` in the body is refused "
        "(`owner-set-by-token`). An operator (accounts:admin) names the registered "
        "customer who will own the account in `customer_id`."
    ),
    responses=problem_responses(
        *_AUTH_PROBLEMS, InvalidRequest, OwnerFromToken, CustomerIdRequired, UnknownCustomer
    ),
)
async def create_account(
    body: AccountOpen, principal: AccountOpener, session: Session, now: Now, actor: AuditActor
) -> Account:
    if principal.kind is PrincipalKind.customer:
        if not principal.has(Scope.accounts_write):
            raise Forbidden("Opening an account needs the scope accounts:write.")
        if body.customer_id is not None:
            raise OwnerFromToken("leave out customer_id: the account will be yours")
        owner, must_be_registered = principal.subject, False
    else:
        if not principal.has(Scope.accounts_admin):
            raise Forbidden("Opening an account for a customer needs the scope accounts:admin.")
        if body.customer_id is None:
            raise CustomerIdRequired("name the owner in customer_id")
        owner, must_be_registered = body.customer_id, True
    return await service.create_account(
        session,
        owner=owner,
        owner_must_be_registered=must_be_registered,
        currency=body.currency,
        balance_rule=body.balance_rule,
        max_transfer_amount_minor=body.max_transfer_amount_minor,
        daily_outflow_limit_minor=body.daily_outflow_limit_minor,
        overdraft_limit_minor=body.overdraft_limit_minor,
        actor=actor,
        now=now,
    )


@router.get(
    ACCOUNTS_PATH,
    tags=["accounts"],
    summary="List accounts, oldest first: a customer's own, or (staff) anyone's",
    responses=problem_responses(*_AUTH_PROBLEMS, InvalidRequest, InvalidCursor),
)
async def list_accounts(
    principal: AccountsRead,
    session: Session,
    now: Now,
    customer_id: Annotated[Identifier | None, Query()] = None,
    limit: Limit = LIMIT_DEFAULT,
    cursor: Cursor = None,
) -> Page[Account]:
    return await service.list_accounts(
        session,
        owner=_owner(principal),
        customer_id=customer_id,
        limit=limit,
        cursor=cursor,
        now=now,
    )


@router.get(
    f"{ACCOUNTS_PATH}/{{account_id}}",
    tags=["accounts"],
    summary="Get one account with its balances (expired holds no longer count)",
    responses=problem_responses(*_AUTH_PROBLEMS, InvalidRequest, AccountNotFound),
)
async def get_account(
    account_id: uuid.UUID, principal: AccountsRead, session: Session, now: Now
) -> Account:
    return await service.get_account(
        session, account_id=account_id, owner=_owner(principal), now=now
    )


@router.post(
    f"{ACCOUNTS_PATH}/{{account_id}}/freeze",
    tags=["accounts", "admin"],
    summary="Freeze an account: no new transfers in or out; open holds may still resolve",
    responses=problem_responses(*_STATUS_PROBLEMS),
)
async def freeze_account(
    account_id: uuid.UUID,
    _principal: AccountsAdmin,
    resources: Resources,
    now: Now,
    actor: AuditActor,
) -> Account:
    return await service.change_status(
        resources.ledger, account_id=account_id, action=StatusAction.freeze, actor=actor, now=now
    )


@router.post(
    f"{ACCOUNTS_PATH}/{{account_id}}/unfreeze",
    tags=["accounts", "admin"],
    summary="Unfreeze an account",
    responses=problem_responses(*_STATUS_PROBLEMS),
)
async def unfreeze_account(
    account_id: uuid.UUID,
    _principal: AccountsAdmin,
    resources: Resources,
    now: Now,
    actor: AuditActor,
) -> Account:
    return await service.change_status(
        resources.ledger, account_id=account_id, action=StatusAction.unfreeze, actor=actor, now=now
    )


@router.post(
    f"{ACCOUNTS_PATH}/{{account_id}}/close",
    tags=["accounts", "admin"],
    summary="Close an account for good; it must hold nothing and have no open holds",
    responses=problem_responses(*_STATUS_PROBLEMS, AccountNotEmpty),
)
async def close_account(
    account_id: uuid.UUID,
    _principal: AccountsAdmin,
    resources: Resources,
    now: Now,
    actor: AuditActor,
) -> Account:
    return await service.change_status(
        resources.ledger, account_id=account_id, action=StatusAction.close, actor=actor, now=now
    )


@router.patch(
    f"{ACCOUNTS_PATH}/{{account_id}}/limits",
    tags=["accounts", "admin"],
    summary="Change an account's limits (a field sent replaces it, null removes it)",
    responses=problem_responses(*_STATUS_PROBLEMS, OverdraftNotAllowed, OverdraftInUse),
)
async def update_account_limits(
    account_id: uuid.UUID,
    body: AccountLimitsUpdate,
    _principal: AccountsAdmin,
    resources: Resources,
    now: Now,
    actor: AuditActor,
) -> Account:
    return await service.update_limits(
        resources.ledger, account_id=account_id, request=body, actor=actor, now=now
    )


@router.get(
    f"{ACCOUNTS_PATH}/{{account_id}}/entries",
    tags=["accounts"],
    summary="An account's statement: journal entries, oldest first, with running balances",
    responses=problem_responses(*_AUTH_PROBLEMS, InvalidRequest, AccountNotFound, InvalidCursor),
)
async def list_account_entries(
    account_id: uuid.UUID,
    principal: AccountsRead,
    session: Session,
    limit: Limit = LIMIT_DEFAULT,
    cursor: Cursor = None,
) -> Page[StatementEntry]:
    return await service.list_entries(
        session, account_id=account_id, owner=_owner(principal), limit=limit, cursor=cursor
    )


async def _move_external(
    direction: service.Direction,
    *,
    account_id: uuid.UUID,
    body: DepositCreate,
    idempotency_key: str | None,
    database: service.Ledger,
    response: Response,
    actor: Actor,
    now: datetime,
) -> LedgerTransfer:
    transfer, created = await service.move_external(
        database,
        account_id=account_id,
        direction=direction,
        idempotency_key=required_idempotency_key(idempotency_key),
        request=body,
        actor=actor,
        now=now,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return transfer


_EXTERNAL_PROBLEMS = (*_AUTH_PROBLEMS, TooManyRequests, IdempotencyKeyMissing, *_MOVEMENT_PROBLEMS)


@router.post(
    f"{ACCOUNTS_PATH}/{{account_id}}/deposits",
    status_code=status.HTTP_201_CREATED,
    tags=["accounts", "admin"],
    summary="Credit money from outside the bank (operators; idempotent on Idempotency-Key)",
    responses={**_REPLAYED, **problem_responses(*_EXTERNAL_PROBLEMS)},
)
async def deposit(
    account_id: uuid.UUID,
    body: DepositCreate,
    _principal: AccountsAdmin,
    _counted: MoneyMoved,
    resources: Resources,
    response: Response,
    now: Now,
    actor: AuditActor,
    idempotency_key: IdempotencyKey = None,
) -> LedgerTransfer:
    return await _move_external(
        service.Direction.deposit,
        account_id=account_id,
        body=body,
        idempotency_key=idempotency_key,
        database=resources.ledger,
        response=response,
        actor=actor,
        now=now,
    )


@router.post(
    f"{ACCOUNTS_PATH}/{{account_id}}/withdrawals",
    status_code=status.HTTP_201_CREATED,
    tags=["accounts", "admin"],
    summary="Debit money out of the bank (operators; idempotent on Idempotency-Key)",
    responses={**_REPLAYED, **problem_responses(*_EXTERNAL_PROBLEMS)},
)
async def withdraw(
    account_id: uuid.UUID,
    body: DepositCreate,
    _principal: AccountsAdmin,
    _counted: MoneyMoved,
    resources: Resources,
    response: Response,
    now: Now,
    actor: AuditActor,
    idempotency_key: IdempotencyKey = None,
) -> LedgerTransfer:
    return await _move_external(
        service.Direction.withdrawal,
        account_id=account_id,
        body=body,
        idempotency_key=idempotency_key,
        database=resources.ledger,
        response=response,
        actor=actor,
        now=now,
    )


_TRANSFER_PROBLEMS = (
    *_AUTH_PROBLEMS,
    InvalidLedgerTransfer,
    *_MOVEMENT_PROBLEMS,
    PendingTransferNotFound,
    PendingTransferAlreadyPosted,
    PendingTransferAlreadyVoided,
    PendingTransferExpired,
    PendingTransferVoided,
    PostAmountExceedsPending,
    InvalidDeadline,
    DeadlineExceeded,
)


@router.post(
    LEDGER_TRANSFERS_PATH,
    status_code=status.HTTP_201_CREATED,
    tags=["ledger"],
    summary="Record a ledger transfer: single-phase, hold, post or void (idempotent on id)",
    responses={**_REPLAYED, **problem_responses(*_TRANSFER_PROBLEMS)},
)
async def create_ledger_transfer(
    body: LedgerTransferCreate,
    principal: LedgerWriter,
    resources: Resources,
    response: Response,
    now: Now,
    actor: AuditActor,
    deadline: RequestDeadline,
) -> LedgerTransfer:
    _check_ledger_writes(principal, [body])
    transfer, created = await service.create_ledger_transfer(
        resources.ledger, request=body, actor=actor, now=now, deadline=deadline
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return transfer


@router.post(
    LEDGER_TRANSFER_BATCH_PATH,
    tags=["ledger"],
    summary="Record up to 1,000 ledger transfers in one transaction, with linked chains",
    description=(
        "One result per event, in order, each with the status the event alone would have "
        "answered (201, 200 for a replay, or its problem). Events apply in order and see "
        "the effects of the ones before. An event with `linked: true` is chained to the "
        "next: a chain succeeds or fails as a whole; its first failure reports its own "
        "problem and every other event of the chain `linked-event-failed`."
    ),
    response_model=LedgerTransferBatchResults,
    responses=problem_responses(
        *_AUTH_PROBLEMS, InvalidRequest, LedgerBusy, InvalidDeadline, DeadlineExceeded
    ),
)
async def create_ledger_transfers(
    body: LedgerTransferBatch,
    principal: LedgerWriter,
    resources: Resources,
    request: Request,
    now: Now,
    actor: AuditActor,
    deadline: RequestDeadline,
) -> Response:
    events = body.transfers
    # All or nothing: a batch with one event the caller may not write changes nothing.
    _check_ledger_writes(principal, events)
    outcomes = await service.create_ledger_transfers(
        resources.ledger,
        requests=events,
        linked=[event.linked for event in events],
        actor=actor,
        now=now,
        deadline=deadline,
    )
    trace_id, request_id = current_trace_id(), request_id_of(request)
    results = [
        _BatchResult(index, 201 if outcome.created else 200, outcome.transfer, None)
        if outcome.error is None
        else _BatchResult(
            index,
            outcome.error.status,
            None,
            outcome.error.to_problem(
                instance=request.url.path, trace_id=trace_id, request_id=request_id
            ).model_dump(mode="json", exclude_none=True),
        )
        for index, outcome in enumerate(outcomes)
    ]
    return Response(
        content=b'{"results":' + _BATCH_RESULTS.dump_json(results) + b"}",
        media_type="application/json",
    )


@dataclass(frozen=True, slots=True)
class _BatchResult:
    """`LedgerTransferBatchResult`, serialised straight from the ledger's records: a batch
    answers a thousand of them, and validating each into a model again costs as much as
    the ledger's own work (`test_batch` checks the two shapes agree)."""

    index: int
    status: int
    transfer: TransferRecord | None
    problem: dict[str, Any] | None


_BATCH_RESULTS = TypeAdapter(list[_BatchResult])


@router.get(
    f"{LEDGER_TRANSFERS_PATH}/{{transfer_id}}",
    tags=["ledger"],
    summary="Get one ledger transfer (staff and the saga)",
    responses=problem_responses(*_AUTH_PROBLEMS, InvalidRequest, LedgerTransferNotFound),
)
async def get_ledger_transfer(
    transfer_id: uuid.UUID, _principal: LedgerReader, session: Session
) -> LedgerTransfer:
    return await service.get_ledger_transfer(session, transfer_id=transfer_id)


@router.post(
    LEDGER_VALIDATIONS_PATH,
    tags=["ledger"],
    summary="Check accounts, status, currency and limits of a transfer (funds: the hold)",
    description="Answers the owners of both accounts, so the saga can tell both customers.",
    responses=problem_responses(
        *_AUTH_PROBLEMS,
        InvalidRequest,
        AccountNotFound,
        AccountNotActive,
        CurrencyMismatch,
        SameAccount,
        TransferLimitExceeded,
        DailyOutflowLimitExceeded,
        InvalidDeadline,
        DeadlineExceeded,
    ),
)
async def validate_transfer(
    body: TransferValidationRequest,
    _principal: LedgerWrite,
    resources: Resources,
    now: Now,
    deadline: RequestDeadline,
) -> TransferValidation:
    return await service.validate_transfer(
        resources.ledger, request=body, now=now, deadline=deadline
    )


@router.get(
    LEDGER_INVARIANTS_PATH,
    tags=["admin"],
    summary="Check the ledger's invariants: double entry per currency, totals against journal",
    responses=problem_responses(*_AUTH_PROBLEMS),
)
async def check_ledger_invariants(
    _principal: AccountsAdmin, session: Session, now: Now
) -> LedgerInvariants:
    return await service.check_invariants(session, now=now)
