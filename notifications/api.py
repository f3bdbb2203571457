"""HTTP routes of the notifications service: parse, call the service, shape the response.

Until tokens exist the owner of endpoints, deliveries and contacts is the `customer_id`
query parameter (the `Owner` dependency); the use cases take it as an argument, so a token
can supply it later without touching them.
"""

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from contracts.common import LIMIT_DEFAULT, LIMIT_MAX, Identifier, Page
from contracts.notifications import (
    DELIVERIES_PATH,
    EMAIL_CONTACT_PATH,
    EVENTS_PATH,
    WEBHOOK_ENDPOINTS_PATH,
    Delivery,
    DeliveryDetail,
    DeliveryStatus,
    EmailContact,
    EmailContactPut,
    Event,
    EventCreate,
    WebhookEndpoint,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointUpdate,
    WebhookSecretRotate,
    WebhookSecretRotated,
)
from kit.db import Session
from kit.problems import problem_responses
from notifications import service
from notifications.errors import (
    DeliveryNotFound,
    DeliveryPending,
    EmailContactNotFound,
    EventIdReused,
    EventNotFound,
    InvalidCursor,
    InvalidRequest,
    WebhookEndpointDisabled,
    WebhookEndpointLimitReached,
    WebhookEndpointNotFound,
    WebhookUrlNotAllowed,
)
from notifications.service import WebhookRules

router = APIRouter()


def _now(request: Request) -> datetime:
    clock: Callable[[], datetime] = request.app.state.clock
    return clock()


def _rules(request: Request) -> WebhookRules:
    rules: WebhookRules = request.app.state.webhook_rules
    return rules


def _wake_dispatcher(request: Request) -> Callable[[], None]:
    """Called once the transaction has committed: the new rows are due now."""
    dispatcher = getattr(request.app.state, "dispatcher", None)
    return (lambda: None) if dispatcher is None else dispatcher.wake


Now = Annotated[datetime, Depends(_now)]
Rules = Annotated[WebhookRules, Depends(_rules)]
WakeDispatcher = Annotated[Callable[[], None], Depends(_wake_dispatcher)]
Owner = Annotated[
    Identifier,
    Query(
        alias="customer_id",
        description="The customer who owns the resource (until tokens carry it).",
    ),
]
Limit = Annotated[int, Query(ge=1, le=LIMIT_MAX)]
Cursor = Annotated[str | None, Query(max_length=200)]

ENDPOINT_PATH = f"{WEBHOOK_ENDPOINTS_PATH}/{{endpoint_id}}"


# --- events ---------------------------------------------------------------------------


@router.post(
    EVENTS_PATH,
    status_code=status.HTTP_201_CREATED,
    tags=["events"],
    summary="Publish a transfer event (idempotent on its id); fans it out to webhooks and email",
    responses={
        200: {"model": Event, "description": "Already accepted earlier"},
        **problem_responses(InvalidRequest, EventIdReused),
    },
)
async def publish_event(
    body: EventCreate,
    session: Session,
    response: Response,
    request: Request,
    now: Now,
    wake: WakeDispatcher,
) -> Event:
    event, created = await service.publish_event(
        session,
        event=body,
        now=now,
        email_enabled=request.app.state.email_enabled,
        on_commit=wake,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return event


@router.get(
    f"{EVENTS_PATH}/{{event_id}}",
    tags=["events"],
    summary="Get one event",
    responses=problem_responses(InvalidRequest, EventNotFound),
)
async def get_event(event_id: uuid.UUID, session: Session) -> Event:
    return await service.get_event(session, event_id=event_id)


# --- webhook endpoints ------------------------------------------------------------------


@router.post(
    WEBHOOK_ENDPOINTS_PATH,
    status_code=status.HTTP_201_CREATED,
    tags=["webhook endpoints"],
    summary="Register a webhook endpoint; the answer shows its signing secret, this once",
    responses=problem_responses(InvalidRequest, WebhookUrlNotAllowed, WebhookEndpointLimitReached),
)
async def create_endpoint(
    body: WebhookEndpointCreate, owner: Owner, session: Session, rules: Rules, now: Now
) -> WebhookEndpointCreated:
    return await service.create_endpoint(
        session, customer_id=owner, request=body, rules=rules, now=now
    )


@router.get(
    WEBHOOK_ENDPOINTS_PATH,
    tags=["webhook endpoints"],
    summary="List the customer's webhook endpoints, oldest first",
    responses=problem_responses(InvalidRequest, InvalidCursor),
)
async def list_endpoints(
    owner: Owner, session: Session, limit: Limit = LIMIT_DEFAULT, cursor: Cursor = None
) -> Page[WebhookEndpoint]:
    return await service.list_endpoints(session, customer_id=owner, limit=limit, cursor=cursor)


@router.get(
    ENDPOINT_PATH,
    tags=["webhook endpoints"],
    summary="Get one webhook endpoint",
    responses=problem_responses(InvalidRequest, WebhookEndpointNotFound),
)
async def get_endpoint(endpoint_id: uuid.UUID, owner: Owner, session: Session) -> WebhookEndpoint:
    return await service.get_endpoint(session, customer_id=owner, endpoint_id=endpoint_id)


@router.patch(
    ENDPOINT_PATH,
    tags=["webhook endpoints"],
    summary="Change an endpoint's URL, event types or description",
    responses=problem_responses(InvalidRequest, WebhookUrlNotAllowed, WebhookEndpointNotFound),
)
async def update_endpoint(
    endpoint_id: uuid.UUID,
    body: WebhookEndpointUpdate,
    owner: Owner,
    session: Session,
    rules: Rules,
    now: Now,
) -> WebhookEndpoint:
    return await service.update_endpoint(
        session, customer_id=owner, endpoint_id=endpoint_id, request=body, rules=rules, now=now
    )


@router.delete(
    ENDPOINT_PATH,
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["webhook endpoints"],
    summary="Delete an endpoint with its secrets and deliveries",
    responses=problem_responses(InvalidRequest, WebhookEndpointNotFound),
)
async def delete_endpoint(endpoint_id: uuid.UUID, owner: Owner, session: Session) -> Response:
    await service.delete_endpoint(session, customer_id=owner, endpoint_id=endpoint_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    f"{ENDPOINT_PATH}/disable",
    tags=["webhook endpoints"],
    summary="Stop delivering to an endpoint (pending deliveries wait)",
    responses=problem_responses(InvalidRequest, WebhookEndpointNotFound),
)
async def disable_endpoint(
    endpoint_id: uuid.UUID, owner: Owner, session: Session, now: Now
) -> WebhookEndpoint:
    return await service.set_endpoint_enabled(
        session, customer_id=owner, endpoint_id=endpoint_id, enabled=False, now=now
    )


@router.post(
    f"{ENDPOINT_PATH}/enable",
    tags=["webhook endpoints"],
    summary="Deliver to an endpoint again (also after it answered 410 Gone)",
    responses=problem_responses(InvalidRequest, WebhookEndpointNotFound),
)
async def enable_endpoint(
    endpoint_id: uuid.UUID, owner: Owner, session: Session, now: Now, wake: WakeDispatcher
) -> WebhookEndpoint:
    return await service.set_endpoint_enabled(
        session, customer_id=owner, endpoint_id=endpoint_id, enabled=True, now=now, on_commit=wake
    )


@router.post(
    f"{ENDPOINT_PATH}/rotate-secret",
    tags=["webhook endpoints"],
    summary="Issue a new signing secret; the previous one keeps signing for a grace period",
    responses=problem_responses(InvalidRequest, WebhookEndpointNotFound),
)
async def rotate_secret(
    endpoint_id: uuid.UUID,
    owner: Owner,
    session: Session,
    rules: Rules,
    now: Now,
    body: WebhookSecretRotate | None = None,
) -> WebhookSecretRotated:
    return await service.rotate_secret(
        session,
        customer_id=owner,
        endpoint_id=endpoint_id,
        grace_seconds=None if body is None else body.grace_seconds,
        rules=rules,
        now=now,
    )


# --- deliveries -------------------------------------------------------------------------


@router.get(
    f"{ENDPOINT_PATH}/deliveries",
    tags=["deliveries"],
    summary="List an endpoint's deliveries, newest first (filter `status=failed` for give-ups)",
    responses=problem_responses(InvalidRequest, InvalidCursor, WebhookEndpointNotFound),
)
async def list_deliveries(
    endpoint_id: uuid.UUID,
    owner: Owner,
    session: Session,
    status_filter: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    limit: Limit = LIMIT_DEFAULT,
    cursor: Cursor = None,
) -> Page[Delivery]:
    return await service.list_deliveries(
        session,
        customer_id=owner,
        endpoint_id=endpoint_id,
        status=status_filter,
        limit=limit,
        cursor=cursor,
    )


@router.get(
    f"{DELIVERIES_PATH}/{{delivery_id}}",
    tags=["deliveries"],
    summary="Get one delivery with its attempts (status, latency, response excerpt)",
    responses=problem_responses(InvalidRequest, DeliveryNotFound),
)
async def get_delivery(delivery_id: uuid.UUID, owner: Owner, session: Session) -> DeliveryDetail:
    return await service.get_delivery(session, customer_id=owner, delivery_id=delivery_id)


@router.post(
    f"{DELIVERIES_PATH}/{{delivery_id}}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    tags=["deliveries"],
    summary="Send a finished delivery again now, with the same webhook-id",
    responses=problem_responses(
        InvalidRequest, DeliveryNotFound, DeliveryPending, WebhookEndpointDisabled
    ),
)
async def redeliver(
    delivery_id: uuid.UUID, owner: Owner, session: Session, now: Now, wake: WakeDispatcher
) -> Delivery:
    return await service.redeliver(
        session, customer_id=owner, delivery_id=delivery_id, now=now, on_commit=wake
    )


# --- email contact ----------------------------------------------------------------------


@router.put(
    EMAIL_CONTACT_PATH,
    tags=["email"],
    summary="Set the address the customer's transfer emails go to",
    responses=problem_responses(InvalidRequest),
)
async def put_email_contact(
    body: EmailContactPut, owner: Owner, session: Session, now: Now
) -> EmailContact:
    return await service.put_email_contact(
        session, customer_id=owner, address=body.address, now=now
    )


@router.get(
    EMAIL_CONTACT_PATH,
    tags=["email"],
    summary="Get the customer's email contact",
    responses=problem_responses(InvalidRequest, EmailContactNotFound),
)
async def get_email_contact(owner: Owner, session: Session) -> EmailContact:
    return await service.get_email_contact(session, customer_id=owner)


@router.delete(
    EMAIL_CONTACT_PATH,
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["email"],
    summary="Stop emailing the customer",
    responses=problem_responses(InvalidRequest, EmailContactNotFound),
)
async def delete_email_contact(owner: Owner, session: Session) -> Response:
    await service.delete_email_contact(session, customer_id=owner)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
