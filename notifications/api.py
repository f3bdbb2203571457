"""HTTP routes of the notifications service: parse, authorize, call the service, shape the
response.

Who may call what:
- `POST /v1/events` needs `notifications:publish` (the saga's worker); reading an event back
  needs that scope or `accounts:admin` (an operator).
- Webhook endpoints, their deliveries and the email contact belong to a customer: the
  owner is the bearer token's subject, never a request field. A customer needs
  `webhooks:manage`; someone else's endpoint or delivery answers 404 as if it did not
  exist, and a `customer_id` query parameter from a customer is refused (422).
- Operators (`accounts:admin`) may READ any customer's endpoints and deliveries, to answer
  "my webhooks stopped arriving" on call, and redeliver any customer's finished delivery;
  they change no endpoint or contact and never see secrets or email contacts. Listing
  endpoints, they name the customer with `customer_id`.
- Audit events (kit.audit) need `audit:read`.
"""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from contracts.auth import PrincipalKind, Scope
from contracts.common import LIMIT_DEFAULT, Identifier, Page
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
from kit.auth import Principal, require_any_scope, require_scopes
from kit.db import Session
from kit.errors import Forbidden, InvalidRequest, Unauthorized
from kit.pagination import InvalidCursor
from kit.params import AuditActor, Cursor, Limit, Now
from kit.problems import problem_responses
from kit.tracing import current_trace_context
from notifications import service
from notifications.errors import (
    DeliveryNotFound,
    DeliveryPending,
    EmailContactNotFound,
    EventIdReused,
    EventNotFound,
    WebhookEndpointDisabled,
    WebhookEndpointLimitReached,
    WebhookEndpointNotFound,
    WebhookUrlNotAllowed,
)
from notifications.resources import Resources
from notifications.service import Viewer

OWNER_PARAMETER = "customer_id"

EventsPublisher = Annotated[Principal, Depends(require_scopes(Scope.notifications_publish))]
EventsReader = Annotated[
    Principal, Depends(require_any_scope(Scope.notifications_publish, Scope.accounts_admin))
]
WebhooksManager = Annotated[Principal, Depends(require_scopes(Scope.webhooks_manage))]
WebhooksReader = Annotated[
    Principal, Depends(require_any_scope(Scope.webhooks_manage, Scope.accounts_admin))
]


def _refuse_owner_parameter(request: Request) -> None:
    if OWNER_PARAMETER in request.query_params:
        raise InvalidRequest(
            "The owner is the bearer token's subject; do not send customer_id.",
            errors=[
                {
                    "location": ["query", OWNER_PARAMETER],
                    "message": "not accepted from a customer",
                    "kind": "owner_from_token",
                }
            ],
        )


def _owner(principal: WebhooksManager, request: Request) -> str:
    """The customer whose objects a change acts on: the token's subject."""
    if principal.customer_id is None:
        raise Forbidden("Webhook endpoints and email contacts are changed by their customer.")
    _refuse_owner_parameter(request)
    return principal.customer_id


def _viewer(principal: WebhooksReader, request: Request) -> Viewer:
    """A customer reads their own objects; an operator (`accounts:admin`) reads anyone's."""
    if principal.kind is PrincipalKind.customer:
        if not principal.has(Scope.webhooks_manage):
            raise Forbidden("This operation needs the scope webhooks:manage.")
        _refuse_owner_parameter(request)
        return Viewer(customer_id=principal.customer_id)
    if principal.kind is PrincipalKind.operator and principal.has(Scope.accounts_admin):
        return Viewer(customer_id=None)
    raise Forbidden(
        "This operation needs the scope webhooks:manage (a customer) or accounts:admin "
        "(an operator)."
    )


Owner = Annotated[str, Depends(_owner)]
Reader = Annotated[Viewer, Depends(_viewer)]
# Redelivery sends again what was sent, with the same webhook-id, and changes none of the
# customer's settings: whoever may read a delivery may ask for it (an operator's audited).
Redeliverer = Annotated[Viewer, Depends(_viewer)]

ENDPOINT_PATH = f"{WEBHOOK_ENDPOINTS_PATH}/{{endpoint_id}}"
# Every protected route can answer these; listed so that /docs shows them.
AUTH_PROBLEMS = (Unauthorized, Forbidden)


router = APIRouter()


# --- events ---------------------------------------------------------------------------


@router.post(
    EVENTS_PATH,
    status_code=status.HTTP_201_CREATED,
    tags=["events"],
    summary="Publish a transfer event (idempotent on its id); fans it out to webhooks and email",
    responses={
        200: {"model": Event, "description": "Already accepted earlier"},
        **problem_responses(*AUTH_PROBLEMS, InvalidRequest, EventIdReused),
    },
)
async def publish_event(
    _principal: EventsPublisher,
    body: EventCreate,
    session: Session,
    response: Response,
    now: Now,
    resources: Resources,
) -> Event:
    event, created = await service.publish_event(
        session,
        event=body,
        now=now,
        email_enabled=resources.email_enabled,
        trace_context=current_trace_context(),
        on_commit=resources.dispatcher.wake,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return event


@router.get(
    f"{EVENTS_PATH}/{{event_id}}",
    tags=["events"],
    summary="Get one event",
    responses=problem_responses(*AUTH_PROBLEMS, InvalidRequest, EventNotFound),
)
async def get_event(_principal: EventsReader, event_id: uuid.UUID, session: Session) -> Event:
    return await service.get_event(session, event_id=event_id)


# --- webhook endpoints ------------------------------------------------------------------


@router.post(
    WEBHOOK_ENDPOINTS_PATH,
    status_code=status.HTTP_201_CREATED,
    tags=["webhook endpoints"],
    summary="Register a webhook endpoint; the answer shows its signing secret, this once",
    responses=problem_responses(
        *AUTH_PROBLEMS, InvalidRequest, WebhookUrlNotAllowed, WebhookEndpointLimitReached
    ),
)
async def create_webhook_endpoint(
    owner: Owner,
    actor: AuditActor,
    body: WebhookEndpointCreate,
    session: Session,
    resources: Resources,
    now: Now,
) -> WebhookEndpointCreated:
    return await service.create_endpoint(
        session,
        customer_id=owner,
        actor=actor,
        request=body,
        rules=resources.webhook_rules,
        now=now,
    )


@router.get(
    WEBHOOK_ENDPOINTS_PATH,
    tags=["webhook endpoints"],
    summary="List the customer's webhook endpoints, oldest first",
    responses=problem_responses(*AUTH_PROBLEMS, InvalidRequest, InvalidCursor),
)
async def list_webhook_endpoints(
    viewer: Reader,
    session: Session,
    customer_id: Annotated[
        Identifier | None,
        Query(description="Operators only: whose endpoints to list (customers: omit)."),
    ] = None,
    limit: Limit = LIMIT_DEFAULT,
    cursor: Cursor = None,
) -> Page[WebhookEndpoint]:
    owner = viewer.customer_id if viewer.customer_id is not None else customer_id
    if owner is None:
        raise InvalidRequest("An operator names the customer whose endpoints to list.")
    return await service.list_endpoints(session, customer_id=owner, limit=limit, cursor=cursor)


@router.get(
    ENDPOINT_PATH,
    tags=["webhook endpoints"],
    summary="Get one webhook endpoint",
    responses=problem_responses(*AUTH_PROBLEMS, InvalidRequest, WebhookEndpointNotFound),
)
async def get_webhook_endpoint(
    viewer: Reader, endpoint_id: uuid.UUID, session: Session
) -> WebhookEndpoint:
    return await service.get_endpoint(session, viewer=viewer, endpoint_id=endpoint_id)


@router.patch(
    ENDPOINT_PATH,
    tags=["webhook endpoints"],
    summary="Change an endpoint's URL, event types or description",
    responses=problem_responses(
        *AUTH_PROBLEMS, InvalidRequest, WebhookUrlNotAllowed, WebhookEndpointNotFound
    ),
)
async def update_webhook_endpoint(
    owner: Owner,
    actor: AuditActor,
    endpoint_id: uuid.UUID,
    body: WebhookEndpointUpdate,
    session: Session,
    resources: Resources,
    now: Now,
) -> WebhookEndpoint:
    return await service.update_endpoint(
        session,
        customer_id=owner,
        actor=actor,
        endpoint_id=endpoint_id,
        request=body,
        rules=resources.webhook_rules,
        now=now,
    )


@router.delete(
    ENDPOINT_PATH,
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["webhook endpoints"],
    summary="Delete an endpoint with its secrets and deliveries",
    responses=problem_responses(*AUTH_PROBLEMS, InvalidRequest, WebhookEndpointNotFound),
)
async def delete_webhook_endpoint(
    owner: Owner, actor: AuditActor, endpoint_id: uuid.UUID, session: Session, now: Now
) -> Response:
    await service.delete_endpoint(
        session, customer_id=owner, actor=actor, endpoint_id=endpoint_id, now=now
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    f"{ENDPOINT_PATH}/disable",
    tags=["webhook endpoints"],
    summary="Stop delivering to an endpoint (pending deliveries wait)",
    responses=problem_responses(*AUTH_PROBLEMS, InvalidRequest, WebhookEndpointNotFound),
)
async def disable_webhook_endpoint(
    owner: Owner, actor: AuditActor, endpoint_id: uuid.UUID, session: Session, now: Now
) -> WebhookEndpoint:
    return await service.set_endpoint_enabled(
        session, customer_id=owner, actor=actor, endpoint_id=endpoint_id, enabled=False, now=now
    )


@router.post(
    f"{ENDPOINT_PATH}/enable",
    tags=["webhook endpoints"],
    summary="Deliver to an endpoint again (also after it answered 410 Gone)",
    responses=problem_responses(*AUTH_PROBLEMS, InvalidRequest, WebhookEndpointNotFound),
)
async def enable_webhook_endpoint(
    owner: Owner,
    actor: AuditActor,
    endpoint_id: uuid.UUID,
    session: Session,
    now: Now,
    resources: Resources,
) -> WebhookEndpoint:
    return await service.set_endpoint_enabled(
        session,
        customer_id=owner,
        actor=actor,
        endpoint_id=endpoint_id,
        enabled=True,
        now=now,
        on_commit=resources.dispatcher.wake,
    )


@router.post(
    f"{ENDPOINT_PATH}/rotate-secret",
    tags=["webhook endpoints"],
    summary="Issue a new signing secret; the previous one keeps signing for a grace period",
    responses=problem_responses(*AUTH_PROBLEMS, InvalidRequest, WebhookEndpointNotFound),
)
async def rotate_webhook_endpoint_secret(
    owner: Owner,
    actor: AuditActor,
    endpoint_id: uuid.UUID,
    session: Session,
    resources: Resources,
    now: Now,
    body: WebhookSecretRotate | None = None,
) -> WebhookSecretRotated:
    return await service.rotate_secret(
        session,
        customer_id=owner,
        actor=actor,
        endpoint_id=endpoint_id,
        grace_seconds=None if body is None else body.grace_seconds,
        rules=resources.webhook_rules,
        now=now,
    )


# --- deliveries -------------------------------------------------------------------------


@router.get(
    f"{ENDPOINT_PATH}/deliveries",
    tags=["deliveries"],
    summary="List an endpoint's deliveries, newest first (filter `status=failed` for give-ups)",
    responses=problem_responses(
        *AUTH_PROBLEMS, InvalidRequest, InvalidCursor, WebhookEndpointNotFound
    ),
)
async def list_deliveries(
    viewer: Reader,
    endpoint_id: uuid.UUID,
    session: Session,
    status_filter: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    limit: Limit = LIMIT_DEFAULT,
    cursor: Cursor = None,
) -> Page[Delivery]:
    return await service.list_deliveries(
        session,
        viewer=viewer,
        endpoint_id=endpoint_id,
        status=status_filter,
        limit=limit,
        cursor=cursor,
    )


@router.get(
    f"{DELIVERIES_PATH}/{{delivery_id}}",
    tags=["deliveries"],
    summary="Get one delivery with its attempts (status, latency, response excerpt)",
    responses=problem_responses(*AUTH_PROBLEMS, InvalidRequest, DeliveryNotFound),
)
async def get_delivery(viewer: Reader, delivery_id: uuid.UUID, session: Session) -> DeliveryDetail:
    return await service.get_delivery(session, viewer=viewer, delivery_id=delivery_id)


@router.post(
    f"{DELIVERIES_PATH}/{{delivery_id}}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    tags=["deliveries"],
    summary="Send a finished delivery again now, with the same webhook-id (its customer, "
    "or an operator with accounts:admin)",
    responses=problem_responses(
        *AUTH_PROBLEMS, InvalidRequest, DeliveryNotFound, DeliveryPending, WebhookEndpointDisabled
    ),
)
async def redeliver(
    redeliverer: Redeliverer,
    actor: AuditActor,
    delivery_id: uuid.UUID,
    session: Session,
    now: Now,
    resources: Resources,
) -> Delivery:
    return await service.redeliver(
        session,
        viewer=redeliverer,
        actor=actor,
        delivery_id=delivery_id,
        now=now,
        on_commit=resources.dispatcher.wake,
    )


# --- email contact ----------------------------------------------------------------------


@router.put(
    EMAIL_CONTACT_PATH,
    tags=["email"],
    summary="Set the address the customer's transfer emails go to",
    responses=problem_responses(*AUTH_PROBLEMS, InvalidRequest),
)
async def set_email_contact(
    owner: Owner, actor: AuditActor, body: EmailContactPut, session: Session, now: Now
) -> EmailContact:
    return await service.put_email_contact(
        session, customer_id=owner, actor=actor, address=body.address, now=now
    )


@router.get(
    EMAIL_CONTACT_PATH,
    tags=["email"],
    summary="Get the customer's email contact",
    responses=problem_responses(*AUTH_PROBLEMS, InvalidRequest, EmailContactNotFound),
)
async def get_email_contact(owner: Owner, session: Session) -> EmailContact:
    return await service.get_email_contact(session, customer_id=owner)


@router.delete(
    EMAIL_CONTACT_PATH,
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["email"],
    summary="Stop emailing the customer",
    responses=problem_responses(*AUTH_PROBLEMS, InvalidRequest, EmailContactNotFound),
)
async def delete_email_contact(
    owner: Owner, actor: AuditActor, session: Session, now: Now
) -> Response:
    await service.delete_email_contact(session, customer_id=owner, actor=actor, now=now)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
