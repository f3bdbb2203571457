"""HTTP routes of the transactions service."""

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Final

from annotated_types import Le
from fastapi import APIRouter, Body, Header, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime

from contracts.common import LIMIT_DEFAULT, Page
from contracts.transfers import (
    CALLBACK_CLIENT_HEADER,
    CALLBACK_CLIENTS_PATH,
    CALLBACK_CONFIRMATIONS_PATH,
    PREFER_WAIT_SECONDS_MAX,
    TRANSFER_STEP_BATCH_PATH,
    TRANSFER_STEPS_PATH,
    TRANSFERS_BATCH_PATH,
    TRANSFERS_PATH,
    CallbackClientCreate,
    CallbackClientCreated,
    CancelRequest,
    ConfirmationCallback,
    ConfirmationReceipt,
    ReviewRequest,
    StepRecord,
    StepRecordBatch,
    Transfer,
    TransferBatchCreate,
    TransferBatchResponse,
    TransferBatchResult,
    TransferCreate,
    TransferStatus,
)
from kit.audit import request_id_of
from kit.auth import Principal
from kit.db import ServiceDatabase, Session
from kit.errors import (
    Forbidden,
    IdempotencyKeyMissing,
    InvalidRequest,
    ProblemError,
    TooManyRequests,
    Unauthorized,
)
from kit.pagination import InvalidCursor
from kit.params import Cursor, IdempotencyKey, Limit
from kit.problems import problem_responses
from kit.tracing import current_trace_id
from transactions import callbacks, service
from transactions.auth import (
    AccountsAdmin,
    MoneyMover,
    Reviewer,
    TransfersInternal,
    TransfersRead,
    TransfersWrite,
    count_money_request,
)
from transactions.errors import (
    AccountNotFound,
    AccountsUnavailable,
    CallbackClientExists,
    CallbackSignatureInvalid,
    CallbacksNotConfigured,
    CallbackTimestampInvalid,
    ExecuteAtTooFar,
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    PreferWaitInvalid,
    SameAccount,
    TransferNotCancellable,
    TransferNotFound,
    TransferNotInReview,
    WorkflowServiceUnavailable,
)
from transactions.resources import Resources

# A page of transfers loads every transfer's steps too: a lower cap than other lists.
TRANSFERS_LIMIT_MAX: Final = 100
IDEMPOTENCY_REPLAYED_HEADER: Final = "Idempotency-Replayed"
PREFERENCE_APPLIED_HEADER: Final = "Preference-Applied"


def requester_of(request: Request, principal: Principal) -> service.Requester:
    """The caller as the use cases see it. The Authorization header travels on only to
    the accounts service (ownership check) and is never logged."""
    return service.Requester(
        principal=principal,
        request_id=request_id_of(request),
        authorization=request.headers.get("authorization"),
    )


# Every route that needs a token may answer these (OpenAPI shows them).
_AUTH_PROBLEMS: Final = (Unauthorized, Forbidden)


Prefer = Annotated[
    str | None,
    Header(
        alias="Prefer",
        max_length=1000,
        description=(
            f"`wait=N` (0 to {PREFER_WAIT_SECONDS_MAX}): answer 200 with the final state "
            "if the transfer finishes within N seconds, else 202 as without it."
        ),
    ),
]

router = APIRouter(tags=["transfers"])
internal_router = APIRouter(tags=["internal"])
admin_router = APIRouter(tags=["admin"])
callbacks_router = APIRouter(tags=["callbacks"])


def _transfer_location(transfer_id: uuid.UUID) -> str:
    return f"{TRANSFERS_PATH}/{transfer_id}"


@router.post(
    TRANSFERS_PATH,
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Transfer,
    summary="Request a transfer (idempotent on the Idempotency-Key header)",
    description=(
        "Answers 202 with the pending transfer; its saga runs in the background. The same "
        "key with the same body replays the first answer with `Idempotency-Replayed: true`; "
        "a duplicate sent while the first is in flight waits for it (a few seconds) and "
        "replays it. With `Prefer: wait=N` the answer is 200 with the final state when the "
        "transfer finishes within N seconds (replays included)."
    ),
    responses={
        200: {"model": Transfer, "description": "The transfer finished within Prefer: wait"},
        **problem_responses(
            IdempotencyKeyMissing,
            *_AUTH_PROBLEMS,
            AccountNotFound,
            SameAccount,
            IdempotencyKeyReused,
            PreferWaitInvalid,
            ExecuteAtTooFar,
            IdempotencyKeyInFlight,
            TooManyRequests,
            WorkflowServiceUnavailable,
            AccountsUnavailable,
        ),
    },
)
async def create_transfer(
    principal: MoneyMover,
    request: Request,
    body: TransferCreate,
    database: ServiceDatabase,
    resources: Resources,
    idempotency_key: IdempotencyKey = None,
    prefer: Prefer = None,
) -> JSONResponse:
    wait_seconds = service.parse_prefer_wait(prefer)
    creation = await service.create_transfer(
        database,
        resources.workflows,
        resources.changes,
        resources.idempotency_policy,
        resources.accounts,
        requester=requester_of(request, principal),
        idempotency_key=idempotency_key,
        transfer=body,
    )
    headers = {"Location": _transfer_location(creation.transfer_id)}
    if creation.replayed:
        headers[IDEMPOTENCY_REPLAYED_HEADER] = "true"
    if wait_seconds is None:
        return JSONResponse(creation.body, status_code=creation.status_code, headers=headers)
    headers[PREFERENCE_APPLIED_HEADER] = f"wait={wait_seconds}"
    final = await service.wait_until_finished(
        database, resources.changes, transfer_id=creation.transfer_id, wait_seconds=wait_seconds
    )
    if final is None:
        return JSONResponse(creation.body, status_code=creation.status_code, headers=headers)
    return JSONResponse(final.model_dump(mode="json"), status_code=200, headers=headers)


@router.post(
    TRANSFERS_BATCH_PATH,
    summary="Request up to 100 transfers, each idempotent on its own key",
    description=(
        "Each item carries its own `idempotency_key` and is answered as a single POST "
        "would answer it (status, transfer or problem), in the items' order; a bad item "
        "does not stop the others. The batch itself answers 200. Each well-formed item "
        "counts against the caller's money rate like a single POST (429 per item)."
    ),
    responses=problem_responses(*_AUTH_PROBLEMS),
)
async def create_transfers_batch(
    principal: TransfersWrite,
    request: Request,
    body: TransferBatchCreate,
    database: ServiceDatabase,
    resources: Resources,
) -> TransferBatchResponse:
    answers = await service.create_transfers_batch(
        database,
        resources.workflows,
        resources.changes,
        resources.idempotency_policy,
        resources.accounts,
        requester=requester_of(request, principal),
        items=body.items,
        admit=_admission(request, principal),
    )
    trace_id, request_id = current_trace_id(), request_id_of(request)
    results: list[TransferBatchResult] = []
    for index, (item, answer) in enumerate(zip(body.items, answers, strict=True)):
        key = item.get("idempotency_key") if isinstance(item, dict) else None
        shown_key = key if isinstance(key, str) and len(key) <= 255 else None
        if isinstance(answer, ProblemError):
            problem = answer.to_problem(
                instance=f"{TRANSFERS_BATCH_PATH}#/items/{index}",
                trace_id=trace_id,
                request_id=request_id,
            )
            results.append(
                TransferBatchResult(
                    index=index,
                    idempotency_key=shown_key,
                    status=answer.status,
                    replayed=False,
                    transfer=None,
                    problem=problem,
                )
            )
        else:
            results.append(
                TransferBatchResult(
                    index=index,
                    idempotency_key=shown_key,
                    status=answer.status_code,
                    replayed=answer.replayed,
                    transfer=Transfer.model_validate(answer.body),
                    problem=None,
                )
            )
    return TransferBatchResponse(results=results)


def _admission(request: Request, principal: Principal) -> Callable[[], Awaitable[object]]:
    """Counts one batch item against the caller's money rate, as a single POST counts."""

    async def admit() -> Principal:
        return await count_money_request(request, principal)

    return admit


@router.get(
    f"{TRANSFERS_PATH}/{{transfer_id}}",
    summary="Get one transfer with its steps (a customer: one of their own)",
    responses=problem_responses(*_AUTH_PROBLEMS, TransferNotFound),
)
async def get_transfer(
    principal: TransfersRead, transfer_id: uuid.UUID, session: Session
) -> Transfer:
    return await service.get_transfer(session, transfer_id=transfer_id, viewer=principal)


@router.get(
    TRANSFERS_PATH,
    summary="List transfers, newest first (a customer: their own)",
    responses=problem_responses(*_AUTH_PROBLEMS, InvalidCursor),
)
async def list_transfers(
    principal: TransfersRead,
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
    limit: Annotated[Limit, Le(TRANSFERS_LIMIT_MAX)] = LIMIT_DEFAULT,
    cursor: Cursor = None,
) -> Page[Transfer]:
    return await service.list_transfers(
        session,
        viewer=principal,
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
    summary="Cancel a transfer (honoured only before it is posted)",
    description=(
        "The saga decides (update `request_cancel`): 202 once it accepted the cancel, "
        "409 when posting has begun or the transfer has finished."
    ),
    responses=problem_responses(
        *_AUTH_PROBLEMS,
        TransferNotFound,
        TransferNotCancellable,
        TooManyRequests,
        WorkflowServiceUnavailable,
    ),
)
async def cancel_transfer(
    principal: MoneyMover,
    request: Request,
    transfer_id: uuid.UUID,
    database: ServiceDatabase,
    resources: Resources,
    body: Annotated[CancelRequest | None, Body()] = None,
) -> Transfer:
    return await service.cancel_transfer(
        database,
        resources.workflows,
        transfer_id=transfer_id,
        request=body or CancelRequest(),
        requester=requester_of(request, principal),
    )


@internal_router.post(
    TRANSFER_STEPS_PATH,
    summary="Record a step of the transfer saga (idempotent; versions only move forward)",
    responses=problem_responses(*_AUTH_PROBLEMS, TransferNotFound, InvalidRequest),
)
async def record_step(
    principal: TransfersInternal,
    request: Request,
    transfer_id: uuid.UUID,
    body: StepRecord,
    session: Session,
) -> Transfer:
    return await service.record_step(
        session,
        transfer_id=transfer_id,
        record=body,
        requester=requester_of(request, principal),
    )


@internal_router.post(
    TRANSFER_STEP_BATCH_PATH,
    summary="Record consecutive steps of the transfer saga at once (each as `.../steps` would)",
    responses=problem_responses(*_AUTH_PROBLEMS, TransferNotFound, InvalidRequest),
)
async def record_steps(
    principal: TransfersInternal,
    request: Request,
    transfer_id: uuid.UUID,
    body: StepRecordBatch,
    session: Session,
) -> Transfer:
    return await service.record_steps(
        session,
        transfer_id=transfer_id,
        records=body.records,
        requester=requester_of(request, principal),
    )


@admin_router.post(
    "/v1/admin/transfers/{transfer_id}/review",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Decide on a transfer waiting in review",
    description=(
        "The reviewer is the token's subject; a body naming one (`reviewer_id`) is refused "
        "with 422, so no record names anyone the token does not."
    ),
    responses=problem_responses(
        *_AUTH_PROBLEMS, TransferNotFound, TransferNotInReview, WorkflowServiceUnavailable
    ),
)
async def review_transfer(
    principal: Reviewer,
    request: Request,
    transfer_id: uuid.UUID,
    body: ReviewRequest,
    session: Session,
    resources: Resources,
) -> Transfer:
    return await service.review_transfer(
        session,
        resources.workflows,
        transfer_id=transfer_id,
        request=body,
        requester=requester_of(request, principal),
    )


@admin_router.post(
    CALLBACK_CLIENTS_PATH,
    status_code=status.HTTP_201_CREATED,
    summary="Register a callback client; its signing secret is returned this once",
    description=(
        "The client decides only transfers out of `account_ids` (and, with "
        "`reference_prefix`, only those whose metadata `reference` starts with it); a "
        "callback about any other transfer answers 404 as a missing one."
    ),
    responses=problem_responses(*_AUTH_PROBLEMS, CallbackClientExists, CallbacksNotConfigured),
)
async def register_callback_client(
    principal: AccountsAdmin,
    request: Request,
    body: CallbackClientCreate,
    session: Session,
    resources: Resources,
) -> CallbackClientCreated:
    return await callbacks.register_client(
        session,
        resources.callback_secret_box,
        request=body,
        requester=requester_of(request, principal),
    )


@callbacks_router.post(
    CALLBACK_CONFIRMATIONS_PATH,
    summary="An external system approves or rejects a transfer in review (signed)",
    description=(
        "Signed per Standard Webhooks (`webhook-id`, `webhook-timestamp`, "
        "`webhook-signature`) with the secret of the client named in "
        f"`{CALLBACK_CLIENT_HEADER}`. The body is a `ConfirmationCallback`. A `webhook-id` "
        "seen before answers the first answer again (`Idempotency-Replayed: true`)."
    ),
    response_model=ConfirmationReceipt,
    openapi_extra={
        "parameters": [
            {"name": name, "in": "header", "required": True, "schema": {"type": "string"}}
            for name in (
                CALLBACK_CLIENT_HEADER,
                callbacks.WEBHOOK_ID_HEADER,
                callbacks.WEBHOOK_TIMESTAMP_HEADER,
                callbacks.WEBHOOK_SIGNATURE_HEADER,
            )
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ConfirmationCallback.model_json_schema()}},
        },
    },
    responses=problem_responses(
        CallbackSignatureInvalid,
        CallbackTimestampInvalid,
        TransferNotFound,
        TransferNotInReview,
        InvalidRequest,
        CallbacksNotConfigured,
        WorkflowServiceUnavailable,
    ),
)
async def receive_confirmation(
    request: Request, session: Session, resources: Resources
) -> JSONResponse:
    # The signature covers the exact bytes sent, so the body is read raw, not parsed;
    # the headers are read raw too, so that any flaw in them answers 401, not 422.
    answer = await callbacks.receive_confirmation(
        session,
        resources.workflows,
        resources.callback_secret_box,
        client_id=request.headers.get(CALLBACK_CLIENT_HEADER),
        headers=request.headers,
        body=await request.body(),
        request_id=request_id_of(request),
    )
    headers = {IDEMPOTENCY_REPLAYED_HEADER: "true"} if answer.replayed else None
    return JSONResponse(answer.receipt.model_dump(mode="json"), headers=headers)
