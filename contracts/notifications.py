"""Notifications service wire contracts: transfer events published by the saga, webhook
endpoints and their deliveries, email contacts."""

import enum
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.common import Identifier, ShortText, StrictModel
from contracts.examples import (
    EXAMPLE_CUSTOMER_ID,
    EXAMPLE_DELIVERY_ID,
    EXAMPLE_EVENT_ID,
    EXAMPLE_LATER_TIME,
    EXAMPLE_PAYEE_CUSTOMER_ID,
    EXAMPLE_SOURCE_ACCOUNT_ID,
    EXAMPLE_TARGET_ACCOUNT_ID,
    EXAMPLE_TIME,
    EXAMPLE_TRANSFER_ID,
    EXAMPLE_WEBHOOK_ENDPOINT_ID,
    example_of,
)

EVENTS_PATH = "/v1/events"


class NotificationsProblem(enum.StrEnum):
    """The notifications service's own problem slugs (the generic ones: `CommonProblem`)."""

    event_id_reused = "event-id-reused"
    event_not_found = "event-not-found"
    webhook_url_not_allowed = "webhook-url-not-allowed"
    webhook_endpoint_not_found = "webhook-endpoint-not-found"
    webhook_endpoint_limit_reached = "webhook-endpoint-limit-reached"
    delivery_not_found = "delivery-not-found"
    delivery_pending = "delivery-pending"
    webhook_endpoint_disabled = "webhook-endpoint-disabled"
    email_contact_not_found = "email-contact-not-found"


class EventType(enum.StrEnum):
    transfer_created = "transfer.created"
    transfer_in_review = "transfer.in_review"
    transfer_completed = "transfer.completed"
    transfer_rejected = "transfer.rejected"
    transfer_declined = "transfer.declined"
    transfer_expired = "transfer.expired"
    transfer_cancelled = "transfer.cancelled"
    # A reversal's end: its data names the reversal and the transfer it reverses.
    transfer_reversed = "transfer.reversed"
    transfer_reversal_failed = "transfer.reversal_failed"
    # An occurrence of a standing order whose transfer did not complete; the order goes on.
    standing_order_occurrence_failed = "standing_order.occurrence_failed"


class EventCreate(StrictModel):
    """An event to fan out; idempotent on `id` (the saga derives it from transfer id + type)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": EXAMPLE_EVENT_ID,
                    "type": "transfer.completed",
                    "timestamp": EXAMPLE_LATER_TIME,
                    "data": {
                        "transfer_id": EXAMPLE_TRANSFER_ID,
                        "status": "completed",
                        "amount_minor": 125000,
                        "currency": "EUR",
                        "source_account_id": EXAMPLE_SOURCE_ACCOUNT_ID,
                        "target_account_id": EXAMPLE_TARGET_ACCOUNT_ID,
                        "source_customer_id": EXAMPLE_CUSTOMER_ID,
                        "target_customer_id": EXAMPLE_PAYEE_CUSTOMER_ID,
                    },
                }
            ]
        }
    )

    id: UUID
    type: EventType
    timestamp: datetime
    data: dict[str, Any] = Field(max_length=50)


class Event(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{**example_of(EventCreate), "received_at": EXAMPLE_LATER_TIME}]
        }
    )

    id: UUID
    type: EventType
    timestamp: datetime
    data: dict[str, Any]
    received_at: datetime


# --- Outbound webhooks and email (notifications service) -----------------------------

WEBHOOK_ENDPOINTS_PATH = "/v1/webhook-endpoints"
DELIVERIES_PATH = "/v1/deliveries"
EMAIL_CONTACT_PATH = "/v1/email-contact"
# Standard Webhooks: a signing secret is `whsec_` + base64 of the key bytes.
WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
WEBHOOK_URL_LENGTH_MAX = 2048
WEBHOOK_SECRET_GRACE_SECONDS_MAX = 7 * 24 * 3600
# Keys of an event's `data` that route it to customers; they are not sent to webhooks.
ROUTING_DATA_KEYS = ("source_customer_id", "target_customer_id")

WebhookUrl = Annotated[
    str,
    Field(
        min_length=1,
        max_length=WEBHOOK_URL_LENGTH_MAX,
        examples=["https://hooks.example.com/sagabank"],
    ),
]
EventTypes = Annotated[list[EventType], Field(min_length=1, max_length=len(EventType))]
EmailAddress = Annotated[
    str,
    # Deliberately simple: one @, no whitespace (so no header injection), a dot in the domain.
    Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
]


class TransferEventData(BaseModel):
    """The `data` of a transfer event as the saga publishes it.

    `source_customer_id` / `target_customer_id` route the event: the source customer's
    webhook endpoints and email contact get every event of the transfer, the target
    customer's only `transfer.completed`. An event without them is stored and goes to nobody.
    """

    transfer_id: UUID
    status: str = Field(max_length=20)
    amount_minor: int = Field(gt=0, strict=True)
    currency: str = Field(min_length=3, max_length=3)
    source_account_id: UUID
    target_account_id: UUID
    failure_reason: str | None = Field(default=None, max_length=500)
    source_customer_id: Identifier | None = None
    target_customer_id: Identifier | None = None
    # A reversal's events: `transfer_id` is the reversal, this the transfer it reverses.
    original_transfer_id: UUID | None = None


class WebhookPayload(BaseModel):
    """The body of every webhook request (Standard Webhooks: type, timestamp, data)."""

    type: EventType
    timestamp: datetime
    data: dict[str, Any]


class TransferWebhookData(BaseModel):
    """The `data` a receiver gets with a `transfer.*` webhook: the saga's TransferEventData
    without its routing keys (customer ids stay inside the bank)."""

    transfer_id: UUID = Field(description="For a reversal's events, the reversal.")
    status: str = Field(examples=["completed"])
    amount_minor: int = Field(gt=0, description="In the currency's minor units (cents).")
    currency: str = Field(min_length=3, max_length=3, examples=["EUR"])
    source_account_id: UUID
    target_account_id: UUID
    failure_reason: str | None = Field(default=None, examples=["insufficient-funds"])
    original_transfer_id: UUID | None = Field(
        default=None, description="Reversals only: the transfer the reversal reverses."
    )


class StandingOrderOccurrenceFailedWebhookData(BaseModel):
    """The `data` of a `standing_order.occurrence_failed` webhook: the occurrence's transfer
    (none if it was refused before it existed), the order, and when it was due."""

    transfer_id: UUID | None
    status: str = Field(examples=["rejected"])
    amount_minor: int = Field(gt=0, description="In the currency's minor units (cents).")
    currency: str = Field(min_length=3, max_length=3, examples=["EUR"])
    source_account_id: UUID
    target_account_id: UUID
    failure_reason: str | None = Field(default=None, examples=["insufficient-funds"])
    standing_order_id: UUID
    scheduled_at: datetime


class WebhookEndpointCreate(StrictModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "url": "https://hooks.example.com/sagabank",
                    "event_types": ["transfer.completed", "transfer.rejected"],
                    "description": "Bookkeeping",
                }
            ]
        }
    )

    url: WebhookUrl
    event_types: EventTypes
    description: ShortText | None = None


class WebhookEndpointUpdate(StrictModel):
    """Only the fields sent change. `url` and `event_types` cannot be cleared (null leaves
    them as they are); `description: null` clears the description."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"event_types": ["transfer.completed", "transfer.rejected", "transfer.reversed"]}
            ]
        }
    )

    url: WebhookUrl | None = None
    event_types: EventTypes | None = None
    description: ShortText | None = None


class WebhookEndpoint(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": EXAMPLE_WEBHOOK_ENDPOINT_ID,
                    "customer_id": EXAMPLE_CUSTOMER_ID,
                    "url": "https://hooks.example.com/sagabank",
                    "event_types": ["transfer.completed", "transfer.rejected"],
                    "description": "Bookkeeping",
                    "enabled": True,
                    "disabled_reason": None,
                    "created_at": EXAMPLE_TIME,
                    "updated_at": EXAMPLE_TIME,
                }
            ]
        }
    )

    id: UUID
    customer_id: str
    url: str
    event_types: list[EventType]
    description: str | None
    enabled: bool
    # Why the endpoint is disabled: `disabled` (by its owner) or `gone` (it answered 410).
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


class WebhookEndpointCreated(WebhookEndpoint):
    """Returned once, at creation: the only time the signing secret is shown."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": EXAMPLE_WEBHOOK_ENDPOINT_ID,
                    "customer_id": EXAMPLE_CUSTOMER_ID,
                    "url": "https://hooks.example.com/sagabank",
                    "event_types": ["transfer.completed", "transfer.rejected"],
                    "description": "Bookkeeping",
                    "enabled": True,
                    "disabled_reason": None,
                    "created_at": EXAMPLE_TIME,
                    "updated_at": EXAMPLE_TIME,
                    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw/VG7DnDJWCc=",
                }
            ]
        }
    )

    secret: str


class WebhookSecretRotate(StrictModel):
    """How long the previous secret(s) keep signing beside the new one (default: a setting)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"grace_seconds": 86400}]})

    grace_seconds: int | None = Field(default=None, ge=0, le=WEBHOOK_SECRET_GRACE_SECONDS_MAX)


class WebhookSecretRotated(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "endpoint_id": EXAMPLE_WEBHOOK_ENDPOINT_ID,
                    "secret": "whsec_C2FGq4Tdq1Rb7L0ZxU9fKkPq3nJmVwYs8hE6aDgTzXo=",
                    "previous_secrets_expire_at": "2026-12-07T09:30:00Z",
                }
            ]
        }
    )

    endpoint_id: UUID
    secret: str
    previous_secrets_expire_at: datetime


class DeliveryStatus(enum.StrEnum):
    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"


class DeliveryAttempt(BaseModel):
    number: int
    started_at: datetime
    status_code: int | None
    latency_ms: int = Field(
        description="How long the receiver took; for an abandoned attempt, how long it held "
        "its lease before it was given up."
    )
    outcome: str = Field(
        description="succeeded, failed, gone (410: the endpoint is disabled), or abandoned "
        "(the attempt never finished, e.g. its sender died; it counts as a failed attempt)."
    )
    error: str | None
    response_excerpt: str | None


class Delivery(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": EXAMPLE_DELIVERY_ID,
                    "webhook_id": "msg_" + EXAMPLE_DELIVERY_ID,
                    "endpoint_id": EXAMPLE_WEBHOOK_ENDPOINT_ID,
                    "event_id": EXAMPLE_EVENT_ID,
                    "event_type": "transfer.completed",
                    "status": "succeeded",
                    "attempts_made": 1,
                    "next_attempt_at": None,
                    "last_attempt_at": EXAMPLE_LATER_TIME,
                    "last_status_code": 200,
                    "created_at": EXAMPLE_LATER_TIME,
                    "updated_at": EXAMPLE_LATER_TIME,
                }
            ]
        }
    )

    id: UUID
    # The `webhook-id` header: the same on every attempt and redelivery of this delivery.
    webhook_id: str
    endpoint_id: UUID
    event_id: UUID
    event_type: EventType
    status: DeliveryStatus
    attempts_made: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    created_at: datetime
    updated_at: datetime


DELIVERY_ATTEMPTS_SHOWN_MAX = 50


class DeliveryDetail(Delivery):
    """A delivery with its attempts, newest first (at most DELIVERY_ATTEMPTS_SHOWN_MAX)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": EXAMPLE_DELIVERY_ID,
                    "webhook_id": "msg_" + EXAMPLE_DELIVERY_ID,
                    "endpoint_id": EXAMPLE_WEBHOOK_ENDPOINT_ID,
                    "event_id": EXAMPLE_EVENT_ID,
                    "event_type": "transfer.completed",
                    "status": "succeeded",
                    "attempts_made": 1,
                    "next_attempt_at": None,
                    "last_attempt_at": EXAMPLE_LATER_TIME,
                    "last_status_code": 200,
                    "created_at": EXAMPLE_LATER_TIME,
                    "updated_at": EXAMPLE_LATER_TIME,
                    "attempts": [
                        {
                            "number": 1,
                            "started_at": EXAMPLE_LATER_TIME,
                            "status_code": 200,
                            "latency_ms": 142,
                            "outcome": "succeeded",
                            "error": None,
                            "response_excerpt": "ok",
                        }
                    ],
                }
            ]
        }
    )

    attempts: list[DeliveryAttempt]


class EmailContactPut(StrictModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"address": "ada@example.com"}]})

    address: EmailAddress


class EmailContact(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "customer_id": EXAMPLE_CUSTOMER_ID,
                    "address": "ada@example.com",
                    "updated_at": EXAMPLE_TIME,
                }
            ]
        }
    )

    customer_id: str
    address: str
    updated_at: datetime
