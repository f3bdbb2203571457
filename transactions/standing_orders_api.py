"""HTTP routes of standing orders (recurring transfers) and their occurrences."""

import uuid
from typing import Annotated, Final

from annotated_types import Le
from fastapi import APIRouter, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime

from contracts.common import LIMIT_DEFAULT, Page
from contracts.standing_orders import (
    STANDING_ORDER_OCCURRENCES_INTERNAL_PATH,
    STANDING_ORDER_OUTCOMES_INTERNAL_PATH,
    STANDING_ORDERS_PATH,
    OccurrenceOutcome,
    OccurrenceRequest,
    StandingOrder,
    StandingOrderCreate,
    StandingOrderOccurrence,
)
from kit.db import ServiceDatabase, Session
from kit.errors import Forbidden, IdempotencyKeyMissing, InvalidRequest, Unauthorized
from kit.pagination import InvalidCursor
from kit.params import Cursor, IdempotencyKey, Limit
from kit.problems import problem_responses
from transactions import standing_orders

# The caller as the use cases see it, exactly as the transfers' routes make it.
from transactions.api import IDEMPOTENCY_REPLAYED_HEADER, requester_of
from transactions.auth import MoneyMover, TransfersInternal, TransfersRead
from transactions.errors import (
    AccountNotFound,
    AccountsUnavailable,
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    SameAccount,
    WorkflowServiceUnavailable,
)
from transactions.resources import Resources

# Each order in a page asks Temporal for its next run times: a low cap.
STANDING_ORDERS_LIMIT_MAX: Final = 50
OCCURRENCES_LIMIT_MAX: Final = 200
_AUTH_PROBLEMS: Final = (Unauthorized, Forbidden)
_ONE: Final = f"{STANDING_ORDERS_PATH}/{{standing_order_id}}"

standing_orders_router = APIRouter(tags=["standing orders"])
standing_orders_internal_router = APIRouter(tags=["internal"])


@standing_orders_router.post(
    STANDING_ORDERS_PATH,
    status_code=status.HTTP_201_CREATED,
    response_model=StandingOrder,
    summary="Create a standing order (idempotent on the Idempotency-Key header)",
    description=(
        "The owner of the source account only. One Temporal Schedule "
        "(`standing-order-<id>`) runs it; each occurrence is an ordinary transfer."
    ),
    responses=problem_responses(
        IdempotencyKeyMissing,
        *_AUTH_PROBLEMS,
        AccountNotFound,
        SameAccount,
        standing_orders.IntervalNotValid,
        standing_orders.IntervalTooShort,
        standing_orders.ScheduleNotValid,
        IdempotencyKeyReused,
        IdempotencyKeyInFlight,
        WorkflowServiceUnavailable,
        AccountsUnavailable,
    ),
)
async def create_standing_order(
    principal: MoneyMover,
    request: Request,
    body: StandingOrderCreate,
    database: ServiceDatabase,
    resources: Resources,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    creation = await standing_orders.create_standing_order(
        database,
        resources.workflows,
        resources.standing_order_schedules,
        resources.changes,
        resources.idempotency_policy,
        resources.accounts,
        rules=resources.standing_order_rules,
        requester=requester_of(request, principal),
        idempotency_key=idempotency_key,
        order=body,
    )
    headers = {"Location": f"{STANDING_ORDERS_PATH}/{creation.transfer_id}"}
    if creation.replayed:
        headers[IDEMPOTENCY_REPLAYED_HEADER] = "true"
    return JSONResponse(creation.body, status_code=creation.status_code, headers=headers)


@standing_orders_router.get(
    STANDING_ORDERS_PATH,
    summary="List standing orders, newest first (a customer: their own)",
    responses=problem_responses(*_AUTH_PROBLEMS, InvalidCursor),
)
async def list_standing_orders(
    principal: TransfersRead,
    session: Session,
    resources: Resources,
    limit: Annotated[Limit, Le(STANDING_ORDERS_LIMIT_MAX)] = LIMIT_DEFAULT,
    cursor: Cursor = None,
) -> Page[StandingOrder]:
    return await standing_orders.list_standing_orders(
        session,
        resources.workflows,
        resources.standing_order_schedules,
        viewer=principal,
        limit=limit,
        cursor=cursor,
    )


@standing_orders_router.get(
    _ONE,
    summary="Get one standing order with its next run times (from its schedule)",
    responses=problem_responses(*_AUTH_PROBLEMS, standing_orders.StandingOrderNotFound),
)
async def get_standing_order(
    principal: TransfersRead, standing_order_id: uuid.UUID, session: Session, resources: Resources
) -> StandingOrder:
    return await standing_orders.get_standing_order(
        session,
        resources.workflows,
        resources.standing_order_schedules,
        standing_order_id=standing_order_id,
        viewer=principal,
    )


@standing_orders_router.get(
    f"{_ONE}/occurrences",
    summary="The order's occurrences, oldest first, each with its transfer and status",
    responses=problem_responses(*_AUTH_PROBLEMS, standing_orders.StandingOrderNotFound),
)
async def list_standing_order_occurrences(
    principal: TransfersRead,
    standing_order_id: uuid.UUID,
    session: Session,
    after: Annotated[
        AwareDatetime | None, Query(description="Occurrences scheduled after this instant")
    ] = None,
    limit: Annotated[Limit, Le(OCCURRENCES_LIMIT_MAX)] = LIMIT_DEFAULT,
) -> list[StandingOrderOccurrence]:
    return await standing_orders.list_occurrences(
        session, standing_order_id=standing_order_id, viewer=principal, after=after, limit=limit
    )


_CHANGE_PROBLEMS: Final = (
    *_AUTH_PROBLEMS,
    standing_orders.StandingOrderNotFound,
    WorkflowServiceUnavailable,
)


@standing_orders_router.post(
    f"{_ONE}/pause",
    summary="Pause the order's schedule (idempotent)",
    responses=problem_responses(*_CHANGE_PROBLEMS, standing_orders.StandingOrderCancelled),
)
async def pause_standing_order(
    principal: MoneyMover,
    request: Request,
    standing_order_id: uuid.UUID,
    database: ServiceDatabase,
    resources: Resources,
) -> StandingOrder:
    return await standing_orders.set_paused(
        database,
        resources.workflows,
        resources.standing_order_schedules,
        standing_order_id=standing_order_id,
        paused=True,
        requester=requester_of(request, principal),
    )


@standing_orders_router.post(
    f"{_ONE}/resume",
    summary="Resume the order's schedule (idempotent)",
    responses=problem_responses(*_CHANGE_PROBLEMS, standing_orders.StandingOrderCancelled),
)
async def resume_standing_order(
    principal: MoneyMover,
    request: Request,
    standing_order_id: uuid.UUID,
    database: ServiceDatabase,
    resources: Resources,
) -> StandingOrder:
    return await standing_orders.set_paused(
        database,
        resources.workflows,
        resources.standing_order_schedules,
        standing_order_id=standing_order_id,
        paused=False,
        requester=requester_of(request, principal),
    )


@standing_orders_router.delete(
    _ONE,
    summary="Cancel the order: its schedule is deleted (idempotent)",
    responses=problem_responses(*_CHANGE_PROBLEMS),
)
async def cancel_standing_order(
    principal: MoneyMover,
    request: Request,
    standing_order_id: uuid.UUID,
    database: ServiceDatabase,
    resources: Resources,
) -> StandingOrder:
    return await standing_orders.cancel_standing_order(
        database,
        resources.workflows,
        resources.standing_order_schedules,
        standing_order_id=standing_order_id,
        requester=requester_of(request, principal),
    )


@standing_orders_internal_router.post(
    STANDING_ORDER_OCCURRENCES_INTERNAL_PATH,
    summary="Create the transfer of one scheduled time of an order (once per time)",
    description=(
        "A transfer refused for good (the source account gone or no longer the owner's, "
        "terms refused) answers 200 with the occurrence failed and no transfer, recorded "
        "once; transient trouble answers 503 or 409 and is asked again."
    ),
    responses=problem_responses(
        *_AUTH_PROBLEMS,
        standing_orders.StandingOrderNotFound,
        standing_orders.StandingOrderCancelled,
        IdempotencyKeyInFlight,
        WorkflowServiceUnavailable,
        AccountsUnavailable,
    ),
)
async def create_standing_order_occurrence(
    principal: TransfersInternal,
    request: Request,
    standing_order_id: uuid.UUID,
    body: OccurrenceRequest,
    database: ServiceDatabase,
    resources: Resources,
) -> StandingOrderOccurrence:
    return await standing_orders.create_occurrence(
        database,
        resources.workflows,
        resources.changes,
        resources.idempotency_policy,
        resources.accounts,
        standing_order_id=standing_order_id,
        request=body,
        requester=requester_of(request, principal),
    )


@standing_orders_internal_router.post(
    STANDING_ORDER_OUTCOMES_INTERNAL_PATH,
    summary="Record how an occurrence's transfer ended (a failure is marked once)",
    responses=problem_responses(
        *_AUTH_PROBLEMS, standing_orders.StandingOrderNotFound, InvalidRequest
    ),
)
async def record_standing_order_outcome(
    principal: TransfersInternal,
    standing_order_id: uuid.UUID,
    body: OccurrenceOutcome,
    session: Session,
) -> StandingOrderOccurrence:
    return await standing_orders.record_outcome(
        session, standing_order_id=standing_order_id, outcome=body
    )
