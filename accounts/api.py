"""HTTP routes of the accounts service: parse, call the service, shape the response."""

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status

from accounts import service
from accounts.errors import (
    AccountNotActive,
    AccountNotFound,
    AccountTotalsOverflow,
    CurrencyMismatch,
    IdempotencyKeyMissing,
    InsufficientFunds,
    InvalidCursor,
    InvalidLedgerTransfer,
    InvalidRequest,
    LedgerTransferExists,
    LedgerTransferNotFound,
    PendingTransferAlreadyPosted,
    PendingTransferAlreadyVoided,
    PendingTransferExpired,
    PendingTransferNotFound,
    PostAmountExceedsPending,
    SameAccount,
    TransferLimitExceeded,
)
from contracts.accounts import (
    ACCOUNTS_PATH,
    LEDGER_INVARIANTS_PATH,
    LEDGER_TRANSFERS_PATH,
    LEDGER_VALIDATIONS_PATH,
    Account,
    AccountCreate,
    DepositCreate,
    LedgerInvariants,
    LedgerTransfer,
    LedgerTransferCreate,
    TransferValidation,
    TransferValidationRequest,
)
from contracts.common import LIMIT_DEFAULT, LIMIT_MAX, Identifier, Page
from kit.db import Session
from kit.problems import problem_responses

IDEMPOTENCY_KEY_LENGTH_MAX = 200

router = APIRouter()


def _now(request: Request) -> datetime:
    clock: Callable[[], datetime] = request.app.state.clock
    return clock()


Now = Annotated[datetime, Depends(_now)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=IDEMPOTENCY_KEY_LENGTH_MAX,
        description="Required. A retry with the same key replays the first answer.",
    ),
]

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
    InsufficientFunds,
    LedgerTransferExists,
    AccountTotalsOverflow,
)


@router.post(
    ACCOUNTS_PATH,
    status_code=status.HTTP_201_CREATED,
    tags=["accounts"],
    summary="Open a customer account (no overdraft)",
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
    customer_id: Annotated[Identifier | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=LIMIT_MAX)] = LIMIT_DEFAULT,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[Account]:
    return await service.list_accounts(session, customer_id=customer_id, limit=limit, cursor=cursor)


@router.get(
    f"{ACCOUNTS_PATH}/{{account_id}}",
    tags=["accounts"],
    summary="Get one account with its balances",
    responses=problem_responses(InvalidRequest, AccountNotFound),
)
async def get_account(account_id: uuid.UUID, session: Session) -> Account:
    return await service.get_account(session, account_id=account_id)


async def _move_external(
    direction: service.Direction,
    *,
    account_id: uuid.UUID,
    body: DepositCreate,
    idempotency_key: str | None,
    session: Session,
    response: Response,
    now: datetime,
) -> LedgerTransfer:
    if not idempotency_key:
        raise IdempotencyKeyMissing("send an Idempotency-Key header (at most 200 characters)")
    transfer, created = await service.move_external(
        session,
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
    session: Session,
    response: Response,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> LedgerTransfer:
    return await _move_external(
        service.Direction.deposit,
        account_id=account_id,
        body=body,
        idempotency_key=idempotency_key,
        session=session,
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
    session: Session,
    response: Response,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> LedgerTransfer:
    return await _move_external(
        service.Direction.withdrawal,
        account_id=account_id,
        body=body,
        idempotency_key=idempotency_key,
        session=session,
        response=response,
        now=now,
    )


@router.post(
    LEDGER_TRANSFERS_PATH,
    status_code=status.HTTP_201_CREATED,
    tags=["ledger"],
    summary="Record a ledger transfer: single-phase, hold, post or void (idempotent on id)",
    responses={
        **_REPLAYED,
        **problem_responses(
            InvalidLedgerTransfer,
            *_MOVEMENT_PROBLEMS,
            PendingTransferNotFound,
            PendingTransferAlreadyPosted,
            PendingTransferAlreadyVoided,
            PendingTransferExpired,
            PostAmountExceedsPending,
        ),
    },
)
async def create_ledger_transfer(
    body: LedgerTransferCreate, session: Session, response: Response, now: Now
) -> LedgerTransfer:
    transfer, created = await service.create_ledger_transfer(session, request=body, now=now)
    if not created:
        response.status_code = status.HTTP_200_OK
    return transfer


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
    ),
)
async def validate_transfer(
    body: TransferValidationRequest, session: Session
) -> TransferValidation:
    return await service.validate_transfer(session, request=body)


@router.get(
    LEDGER_INVARIANTS_PATH,
    tags=["admin"],
    summary="Check the ledger's invariants: double entry per currency, totals against journal",
)
async def check_ledger_invariants(session: Session, now: Now) -> LedgerInvariants:
    return await service.check_invariants(session, now=now)
