"""HTTP routes of the transactions service."""

import uuid
from typing import Annotated, Final

from fastapi import APIRouter, Body, Depends, Header, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime

from contracts.common import Page
from contracts.transfers import (
    TRANSFER_STEPS_PATH,
    TRANSFERS_PATH,
    CancelRequest,
    ReviewDecision,
    StepRecord,
    Transfer,
    TransferCreate,
    TransferStatus,
)
from kit.db import Database, Session
from kit.problems import problem_responses
from transactions import service
from transactions.errors import (
    IdempotencyKeyInFlight,
    IdempotencyKeyMissing,
    IdempotencyKeyReused,
    InvalidCursor,
    SameAccount,
    TransferNotCancellable,
    TransferNotFound,
    TransferNotInReview,
    WorkflowServiceUnavailable,
)
from transactions.saga import TransferWorkflows

# Every caller shares one idempotency-key space until authentication names callers.
ANONYMOUS_CALLER: Final = "anonymous"
LIST_LIMIT_MAX: Final = 100
LIST_LIMIT_DEFAULT: Final = 50
IDEMPOTENCY_REPLAYED_HEADER: Final = "Idempotency-Replayed"


def _database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def _workflows(request: Request) -> TransferWorkflows:
    workflows: TransferWorkflows = request.app.state.workflows
    return workflows


DatabaseDependency = Annotated[Database, Depends(_database)]
Workflows = Annotated[TransferWorkflows, Depends(_workflows)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x20-\x7E]+$",
        description="Printable ASCII, unique per intended transfer; a retry sends it again.",
    ),
]

router = APIRouter(tags=["transfers"])
internal_router = APIRouter(tags=["internal"])
admin_router = APIRouter(tags=["admin"])


def _transfer_location(transfer_id: uuid.UUID) -> str:
    return f"{TRANSFERS_PATH}/{transfer_id}"


@router.post(
    TRANSFERS_PATH,
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Transfer,
    summary="Request a transfer (idempotent on the Idempotency-Key header)",
    description=(
        "Answers 202 with the pending transfer; its saga runs in the background. The same "
        "key with the same body replays the first answer with `Idempotency-Replayed: true`."
    ),
    responses=problem_responses(
        IdempotencyKeyMissing,
        SameAccount,
        IdempotencyKeyReused,
        IdempotencyKeyInFlight,
        WorkflowServiceUnavailable,
    ),
)
async def create_transfer(
    body: TransferCreate,
    database: DatabaseDependency,
    workflows: Workflows,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    creation = await service.create_transfer(
        database,
        workflows,
        caller=ANONYMOUS_CALLER,
        idempotency_key=idempotency_key,
        transfer=body,
    )
    headers = {"Location": _transfer_location(creation.transfer_id)}
    if creation.replayed:
        headers[IDEMPOTENCY_REPLAYED_HEADER] = "true"
    return JSONResponse(creation.body, status_code=creation.status_code, headers=headers)


@router.get(
    f"{TRANSFERS_PATH}/{{transfer_id}}",
    summary="Get one transfer with its steps",
    responses=problem_responses(TransferNotFound),
)
async def get_transfer(transfer_id: uuid.UUID, session: Session) -> Transfer:
    return await service.get_transfer(session, transfer_id=transfer_id)


@router.get(
    TRANSFERS_PATH,
    summary="List transfers, newest first",
    responses=problem_responses(InvalidCursor),
)
async def list_transfers(
    session: Session,
    status: TransferStatus | None = None,
    account_id: Annotated[
        uuid.UUID | None, Query(description="Transfers with this account as source or target")
    ] = None,
    created_after: Annotated[
        AwareDatetime | None, Query(description="Created at or after this instant")
    ] = None,
    created_before: Annotated[
        AwareDatetime | None, Query(description="Created before this instant")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=LIST_LIMIT_MAX)] = LIST_LIMIT_DEFAULT,
    cursor: Annotated[str | None, Query(max_length=service.CURSOR_LENGTH_MAX)] = None,
) -> Page[Transfer]:
    return await service.list_transfers(
        session,
        status=status,
        account_id=account_id,
        created_after=created_after,
        created_before=created_before,
        limit=limit,
        cursor=cursor,
    )


@router.post(
    f"{TRANSFERS_PATH}/{{transfer_id}}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Ask to cancel a transfer (honoured only before it is posted)",
    responses=problem_responses(
        TransferNotFound, TransferNotCancellable, WorkflowServiceUnavailable
    ),
)
async def cancel_transfer(
    transfer_id: uuid.UUID,
    session: Session,
    workflows: Workflows,
    body: Annotated[CancelRequest | None, Body()] = None,
) -> Transfer:
    return await service.cancel_transfer(
        session, workflows, transfer_id=transfer_id, request=body or CancelRequest()
    )


@internal_router.post(
    TRANSFER_STEPS_PATH,
    summary="Record a step of the transfer saga (idempotent; versions only move forward)",
    responses=problem_responses(TransferNotFound),
)
async def record_step(transfer_id: uuid.UUID, body: StepRecord, session: Session) -> Transfer:
    return await service.record_step(session, transfer_id=transfer_id, record=body)


@admin_router.post(
    "/v1/admin/transfers/{transfer_id}/review",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Decide on a transfer waiting in review",
    responses=problem_responses(TransferNotFound, TransferNotInReview, WorkflowServiceUnavailable),
)
async def review_transfer(
    transfer_id: uuid.UUID, body: ReviewDecision, session: Session, workflows: Workflows
) -> Transfer:
    return await service.review_transfer(session, workflows, transfer_id=transfer_id, decision=body)
