"""HTTP routes of reversals: create one, list a transfer's, read one."""

import uuid
from typing import Final

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse

from contracts.reversals import (
    REVERSALS_PATH,
    TRANSFER_REVERSALS_PATH,
    Reversal,
    ReversalCreate,
    ReversalList,
)
from kit.db import ServiceDatabase, Session
from kit.errors import Forbidden, IdempotencyKeyMissing, TooManyRequests, Unauthorized
from kit.params import IdempotencyKey
from kit.problems import problem_responses
from transactions import reversals
from transactions.api import IDEMPOTENCY_REPLAYED_HEADER, requester_of
from transactions.auth import Reverser, TransfersRead
from transactions.errors import (
    AccountsUnavailable,
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    ReversalExceedsTransfer,
    ReversalNotFound,
    TransferNotFound,
    TransferNotReversible,
    WorkflowServiceUnavailable,
)
from transactions.resources import Resources

_AUTH_PROBLEMS: Final = (Unauthorized, Forbidden)

reversals_router = APIRouter(tags=["reversals"])


@reversals_router.post(
    TRANSFER_REVERSALS_PATH,
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Reversal,
    summary="Reverse a completed transfer, in full or in part (idempotent on Idempotency-Key)",
    description=(
        "Moves money back from the payee to the payer through its own saga. Allowed to the "
        "owner of the transfer's target account and to operators with `transfers:reverse`. "
        "Without `amount_minor`, reverses what remains; reversals add up to at most the "
        "transfer's amount (409 `reversal-exceeds-transfer`). The key's semantics are a "
        "transfer's: the same key and body replay the first answer."
    ),
    responses=problem_responses(
        IdempotencyKeyMissing,
        *_AUTH_PROBLEMS,
        TransferNotFound,
        TransferNotReversible,
        ReversalExceedsTransfer,
        IdempotencyKeyReused,
        IdempotencyKeyInFlight,
        TooManyRequests,
        WorkflowServiceUnavailable,
        AccountsUnavailable,
    ),
)
async def create_reversal(
    principal: Reverser,
    request: Request,
    transfer_id: uuid.UUID,
    body: ReversalCreate,
    database: ServiceDatabase,
    resources: Resources,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    creation = await reversals.create_reversal(
        database,
        resources.workflows,
        resources.changes,
        resources.idempotency_policy,
        resources.accounts,
        requester=requester_of(request, principal),
        original_transfer_id=transfer_id,
        idempotency_key=idempotency_key,
        reversal=body,
    )
    headers = {"Location": f"{REVERSALS_PATH}/{creation.transfer_id}"}
    if creation.replayed:
        headers[IDEMPOTENCY_REPLAYED_HEADER] = "true"
    return JSONResponse(creation.body, status_code=creation.status_code, headers=headers)


@reversals_router.get(
    TRANSFER_REVERSALS_PATH,
    summary="List a transfer's reversals, oldest first",
    responses=problem_responses(*_AUTH_PROBLEMS, TransferNotFound),
)
async def list_reversals(
    principal: TransfersRead, transfer_id: uuid.UUID, session: Session
) -> ReversalList:
    items = await reversals.list_reversals(session, transfer_id=transfer_id, viewer=principal)
    return ReversalList(items=items)


@reversals_router.get(
    f"{REVERSALS_PATH}/{{reversal_id}}",
    summary="Get one reversal with its steps",
    responses=problem_responses(*_AUTH_PROBLEMS, ReversalNotFound),
)
async def get_reversal(
    principal: TransfersRead, reversal_id: uuid.UUID, session: Session
) -> Reversal:
    return await reversals.get_reversal(session, reversal_id=reversal_id, viewer=principal)
