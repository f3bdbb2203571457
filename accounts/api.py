"""HTTP routes of the accounts service: parse, call the service, shape the response."""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from pydantic import TypeAdapter

from accounts import service
from accounts.errors import (
    AccountClosed,
    AccountNotActive,
    AccountNotEmpty,
    AccountNotFound,
    AccountTotalsOverflow,
    CurrencyMismatch,
    DailyOutflowLimitExceeded,
    IdempotencyKeyMissing,
    InsufficientFunds,
    InvalidCursor,
    InvalidLedgerTransfer,
    InvalidRequest,
    LedgerBusy,
    LedgerTransferExists,
    LedgerTransferNotFound,
    OverdraftInUse,
    OverdraftNotAllowed,
    PendingTransferAlreadyPosted,
    PendingTransferAlreadyVoided,
    PendingTransferExpired,
    PendingTransferNotFound,
    PostAmountExceedsPending,
    SameAccount,
    SystemAccountImmutable,
    TransferLimitExceeded,
)
from accounts.ledger import StatusAction, TransferRecord
from contracts.accounts import (
    ACCOUNTS_PATH,
    LEDGER_INVARIANTS_PATH,
    LEDGER_TRANSFER_BATCH_PATH,
    LEDGER_TRANSFERS_PATH,
    LEDGER_VALIDATIONS_PATH,
    Account,
    AccountCreate,
    AccountLimitsUpdate,
    DepositCreate,
    LedgerInvariants,
    LedgerTransfer,
    LedgerTransferBatch,
    LedgerTransferBatchResults,
    LedgerTransferCreate,
    StatementEntry,
    TransferValidation,
    TransferValidationRequest,
)
from contracts.common import LIMIT_DEFAULT, LIMIT_MAX, Identifier, Page
from kit.db import Session
from kit.problems import problem_responses

IDEMPOTENCY_KEY_LENGTH_MAX = 200
CURSOR_LENGTH_MAX = 200

router = APIRouter()


def _now(request: Request) -> datetime:
    clock: Callable[[], datetime] = request.app.state.clock
    return clock()


def _ledger(request: Request) -> service.Ledger:
    database: service.Ledger = request.app.state.ledger
    return database


Now = Annotated[datetime, Depends(_now)]
LedgerDatabase = Annotated[service.Ledger, Depends(_ledger)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=IDEMPOTENCY_KEY_LENGTH_MAX,
        description="Required. A retry with the same key replays the first answer.",
    ),
]
Limit = Annotated[int, Query(ge=1, le=LIMIT_MAX)]
Cursor = Annotated[str | None, Query(max_length=CURSOR_LENGTH_MAX)]

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
    summary="Open a customer account (by default with no overdraft)",
    responses=problem_responses(InvalidRequest),
)
async def create_account(body: AccountCreate, session: Session, now: Now) -> Account:
    return await service.create_account(session, request=body, now=now)


@router.get(
    ACCOUNTS_PATH,
    tags=["accounts"],
    summary="List accounts, oldest first, optionally of one customer",
    responses=problem_responses(InvalidRequest, InvalidCursor),
)
async def list_accounts(
    session: Session,
    now: Now,
    customer_id: Annotated[Identifier | None, Query()] = None,
    limit: Limit = LIMIT_DEFAULT,
    cursor: Cursor = None,
) -> Page[Account]:
    return await service.list_accounts(
        session, customer_id=customer_id, limit=limit, cursor=cursor, now=now
    )


@router.get(
    f"{ACCOUNTS_PATH}/{{account_id}}",
    tags=["accounts"],
    summary="Get one account with its balances (expired holds no longer count)",
    responses=problem_responses(InvalidRequest, AccountNotFound),
)
async def get_account(account_id: uuid.UUID, session: Session, now: Now) -> Account:
    return await service.get_account(session, account_id=account_id, now=now)


@router.post(
    f"{ACCOUNTS_PATH}/{{account_id}}/freeze",
    tags=["accounts", "admin"],
    summary="Freeze an account: no new transfers in or out; open holds may still resolve",
    responses=problem_responses(*_STATUS_PROBLEMS),
)
async def freeze_account(account_id: uuid.UUID, database: LedgerDatabase, now: Now) -> Account:
    return await service.change_status(
        database, account_id=account_id, action=StatusAction.freeze, now=now
    )


@router.post(
    f"{ACCOUNTS_PATH}/{{account_id}}/unfreeze",
    tags=["accounts", "admin"],
    summary="Unfreeze an account",
    responses=problem_responses(*_STATUS_PROBLEMS),
)
async def unfreeze_account(account_id: uuid.UUID, database: LedgerDatabase, now: Now) -> Account:
    return await service.change_status(
        database, account_id=account_id, action=StatusAction.unfreeze, now=now
    )


@router.post(
    f"{ACCOUNTS_PATH}/{{account_id}}/close",
    tags=["accounts", "admin"],
    summary="Close an account for good; it must hold nothing and have no open holds",
    responses=problem_responses(*_STATUS_PROBLEMS, AccountNotEmpty),
)
async def close_account(account_id: uuid.UUID, database: LedgerDatabase, now: Now) -> Account:
    return await service.change_status(
        database, account_id=account_id, action=StatusAction.close, now=now
    )


@router.patch(
    f"{ACCOUNTS_PATH}/{{account_id}}/limits",
    tags=["accounts", "admin"],
    summary="Change an account's limits (a field sent replaces it, null removes it)",
    responses=problem_responses(*_STATUS_PROBLEMS, OverdraftNotAllowed, OverdraftInUse),
)
async def update_limits(
    account_id: uuid.UUID, body: AccountLimitsUpdate, database: LedgerDatabase, now: Now
) -> Account:
    return await service.update_limits(database, account_id=account_id, request=body, now=now)


@router.get(
    f"{ACCOUNTS_PATH}/{{account_id}}/entries",
    tags=["accounts"],
    summary="An account's statement: journal entries, oldest first, with running balances",
    responses=problem_responses(InvalidRequest, AccountNotFound, InvalidCursor),
)
async def list_entries(
    account_id: uuid.UUID,
    session: Session,
    limit: Limit = LIMIT_DEFAULT,
    cursor: Cursor = None,
) -> Page[StatementEntry]:
    return await service.list_entries(session, account_id=account_id, limit=limit, cursor=cursor)


async def _move_external(
    direction: service.Direction,
    *,
    account_id: uuid.UUID,
    body: DepositCreate,
    idempotency_key: str | None,
    database: service.Ledger,
    response: Response,
    now: datetime,
) -> LedgerTransfer:
    if not idempotency_key:
        raise IdempotencyKeyMissing("send an Idempotency-Key header (at most 200 characters)")
    transfer, created = await service.move_external(
        database,
        account_id=account_id,
        direction=direction,
        idempotency_key=idempotency_key,
        request=body,
        now=now,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return transfer


@router.post(
    f"{ACCOUNTS_PATH}/{{account_id}}/deposits",
    status_code=status.HTTP_201_CREATED,
    tags=["accounts"],
    summary="Credit money from outside the bank (idempotent on Idempotency-Key)",
    responses={**_REPLAYED, **problem_responses(IdempotencyKeyMissing, *_MOVEMENT_PROBLEMS)},
)
async def deposit(
    account_id: uuid.UUID,
    body: DepositCreate,
    database: LedgerDatabase,
    response: Response,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> LedgerTransfer:
    return await _move_external(
        service.Direction.deposit,
        account_id=account_id,
        body=body,
        idempotency_key=idempotency_key,
        database=database,
        response=response,
        now=now,
    )


@router.post(
    f"{ACCOUNTS_PATH}/{{account_id}}/withdrawals",
    status_code=status.HTTP_201_CREATED,
    tags=["accounts"],
    summary="Debit money out of the bank (idempotent on Idempotency-Key)",
    responses={**_REPLAYED, **problem_responses(IdempotencyKeyMissing, *_MOVEMENT_PROBLEMS)},
)
async def withdraw(
    account_id: uuid.UUID,
    body: DepositCreate,
    database: LedgerDatabase,
    response: Response,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> LedgerTransfer:
    return await _move_external(
        service.Direction.withdrawal,
        account_id=account_id,
        body=body,
        idempotency_key=idempotency_key,
        database=database,
        response=response,
        now=now,
    )


_TRANSFER_PROBLEMS = (
    InvalidLedgerTransfer,
    *_MOVEMENT_PROBLEMS,
    PendingTransferNotFound,
    PendingTransferAlreadyPosted,
    PendingTransferAlreadyVoided,
    PendingTransferExpired,
    PostAmountExceedsPending,
)


@router.post(
    LEDGER_TRANSFERS_PATH,
    status_code=status.HTTP_201_CREATED,
    tags=["ledger"],
    summary="Record a ledger transfer: single-phase, hold, post or void (idempotent on id)",
    responses={**_REPLAYED, **problem_responses(*_TRANSFER_PROBLEMS)},
)
async def create_ledger_transfer(
    body: LedgerTransferCreate, database: LedgerDatabase, response: Response, now: Now
) -> LedgerTransfer:
    transfer, created = await service.create_ledger_transfer(database, request=body, now=now)
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
    responses=problem_responses(InvalidRequest, LedgerBusy),
)
async def create_ledger_transfers(
    body: LedgerTransferBatch, database: LedgerDatabase, request: Request, now: Now
) -> Response:
    events = body.transfers
    outcomes = await service.create_ledger_transfers(
        database, requests=events, linked=[event.linked for event in events], now=now
    )
    trace_id = getattr(request.state, "request_id", None)
    results = [
        _BatchResult(index, 201 if outcome.created else 200, outcome.transfer, None)
        if outcome.error is None
        else _BatchResult(
            index,
            outcome.error.status,
            None,
            outcome.error.to_problem(instance=request.url.path, trace_id=trace_id).model_dump(
                mode="json", exclude_none=True
            ),
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
    summary="Get one ledger transfer",
    responses=problem_responses(InvalidRequest, LedgerTransferNotFound),
)
async def get_ledger_transfer(transfer_id: uuid.UUID, session: Session) -> LedgerTransfer:
    return await service.get_ledger_transfer(session, transfer_id=transfer_id)


@router.post(
    LEDGER_VALIDATIONS_PATH,
    tags=["ledger"],
    summary="Check accounts, status, currency and limits of a transfer (funds: the hold)",
    responses=problem_responses(
        InvalidRequest,
        AccountNotFound,
        AccountNotActive,
        CurrencyMismatch,
        SameAccount,
        TransferLimitExceeded,
        DailyOutflowLimitExceeded,
    ),
)
async def validate_transfer(
    body: TransferValidationRequest, database: LedgerDatabase, now: Now
) -> TransferValidation:
    return await service.validate_transfer(database, request=body, now=now)


@router.get(
    LEDGER_INVARIANTS_PATH,
    tags=["admin"],
    summary="Check the ledger's invariants: double entry per currency, totals against journal",
)
async def check_ledger_invariants(session: Session, now: Now) -> LedgerInvariants:
    return await service.check_invariants(session, now=now)
