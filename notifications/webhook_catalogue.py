"""The webhooks this service sends, in its OpenAPI `webhooks` section: one per event type
(contracts.notifications.EventType, so a new type cannot be forgotten), each with the
schema of the body the dispatcher sends, an example, the Standard Webhooks headers and what
the receiver's answer means (docs/decisions/0040)."""

from collections.abc import Callable
from typing import Annotated, Any, Final, Literal

from fastapi import Body, FastAPI, Header
from fastapi.openapi.models import Example
from pydantic import AwareDatetime, BaseModel, ConfigDict, create_model

from contracts.notifications import (
    EventType,
    StandingOrderOccurrenceFailedWebhookData,
    TransferWebhookData,
)
from notifications.schedule import (
    ATTEMPTS_MAX,
    JITTER_FRACTION,
    RETRY_AFTER_MAX_SECONDS,
    RETRY_DELAYS_SECONDS,
)

TAG: Final = "webhooks"
# What standardwebhooks' verifiers accept by default; the sender stamps each attempt anew.
TIMESTAMP_TOLERANCE_SECONDS: Final = 5 * 60
_REVERSALS: Final = frozenset({EventType.transfer_reversed, EventType.transfer_reversal_failed})
# The status an example shows: the status the transfer has when its event is sent.
_EXAMPLE_STATUS: Final = {
    EventType.transfer_created: "pending",
    EventType.transfer_reversed: "completed",
    EventType.transfer_reversal_failed: "rejected",
    EventType.standing_order_occurrence_failed: "rejected",
}
_FAILURES: Final = frozenset(
    {
        EventType.transfer_rejected,
        EventType.transfer_declined,
        EventType.transfer_reversal_failed,
        EventType.standing_order_occurrence_failed,
    }
)

WEBHOOK_ID_DESCRIPTION: Final = (
    "The message id (`msg_…`): the same on every attempt and redelivery of one delivery, "
    "so deduplicate on it (delivery is at least once)."
)
WEBHOOK_TIMESTAMP_DESCRIPTION: Final = (
    "When this attempt was signed, in Unix seconds. It is signed with the body, so refuse a "
    f"timestamp more than {TIMESTAMP_TOLERANCE_SECONDS} s from your clock (the tolerance "
    "of the Standard Webhooks libraries): an old request cannot be replayed."
)
WEBHOOK_SIGNATURE_DESCRIPTION: Final = (
    "Space-separated signatures, each `v1,` + base64 of HMAC-SHA256 over "
    "`id.timestamp.body` (the `webhook-id`, a dot, the `webhook-timestamp`, a dot, the raw "
    "body bytes), keyed with the base64-decoded part of your `whsec_…` secret after the "
    "prefix. One per live secret: two or more while a rotation's grace period runs. Accept "
    "the request if any `v1` signature matches (compare in constant time); a Standard "
    "Webhooks library (`standardwebhooks`) does all of this."
)


def _schedule_text() -> str:
    waits = ", ".join(_duration(seconds) for seconds in RETRY_DELAYS_SECONDS[1:])
    return (
        f"{ATTEMPTS_MAX} attempts, the first at once, then after {waits} "
        f"(±{JITTER_FRACTION:.0%}); then the delivery has failed"
    )


def _duration(seconds: int) -> str:
    if seconds >= 3600:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min" if seconds >= 60 else f"{seconds} s"


RECEIVER_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    "2XX": {
        "description": "Delivered: the delivery succeeded, no further attempt. Answer "
        "within the sender's timeout (`NOTIFICATIONS_WEBHOOK_TIMEOUT_SECONDS`, 10 s by "
        "default) and do the work afterwards."
    },
    "410": {
        "description": "Gone: this delivery fails without retry and the endpoint is "
        "disabled (`disabled_reason: gone`): nothing more is sent to it until its owner "
        "enables it again (`POST /v1/webhook-endpoints/{endpoint_id}/enable`), when its "
        "waiting deliveries resume."
    },
    "default": {
        "description": "Anything else (a redirect too: never followed), no answer within "
        "the timeout, or no connection: the attempt failed and is retried on the "
        f"schedule: {_schedule_text()}. A 429 or 503 with `Retry-After` (seconds or an "
        f"HTTP date, at most {RETRY_AFTER_MAX_SECONDS // 3600} h) waits at least that "
        "long. Every retry carries the same `webhook-id`."
    },
}


# When each is sent; the source customer's endpoints taking the type get it, and for
# `transfer.completed` the target customer's too.
_WHEN: Final = {
    EventType.transfer_created: "A transfer was accepted; its saga runs.",
    EventType.transfer_in_review: "Fraud checks hold the transfer for a reviewer.",
    EventType.transfer_completed: "The money moved. Also sent to the receiving customer.",
    EventType.transfer_rejected: "The transfer failed (`failure_reason` says why).",
    EventType.transfer_declined: "The fraud score or a reviewer declined the transfer.",
    EventType.transfer_expired: "Its review or its hold ran out of time.",
    EventType.transfer_cancelled: "The payer cancelled the transfer before it completed.",
    EventType.transfer_reversed: "A reversal completed: `transfer_id` is the reversal, "
    "`original_transfer_id` the transfer it reversed.",
    EventType.transfer_reversal_failed: "A reversal failed: `transfer_id` is the reversal, "
    "`original_transfer_id` the transfer it was to reverse.",
    EventType.standing_order_occurrence_failed: "An occurrence of a standing order did not "
    "complete; the order goes on.",
}


def description(event_type: EventType) -> str:
    """What the webhook means and how to check it came from the bank."""
    when = _WHEN.get(event_type, f"A `{event_type.value}` event.")
    return (
        f"{when} Sent to each enabled webhook endpoint of the customer that takes "
        f"`{event_type.value}`. Verify `webhook-signature` before trusting the body, "
        "refuse a stale `webhook-timestamp`, deduplicate on `webhook-id`."
    )


def _data_model(event_type: EventType) -> type[BaseModel]:
    if event_type is EventType.standing_order_occurrence_failed:
        return StandingOrderOccurrenceFailedWebhookData
    return TransferWebhookData


def _camel(event_type: EventType) -> str:
    """`transfer.in_review` -> `TransferInReview`."""
    words = event_type.value.replace(".", "_").split("_")
    return "".join(word.capitalize() for word in words)


def payload_model(event_type: EventType) -> type[BaseModel]:
    """The body of this event type's webhook (contracts' WebhookPayload, typed): its `type`
    is this one, its `data` the model the saga's data is, without routing keys."""
    # A Literal of a value known only here: mypy cannot check what it cannot see.
    event_literal: Any = Literal[event_type.value]
    return create_model(
        f"{_camel(event_type)}Webhook",
        __config__=ConfigDict(title=f"{_camel(event_type)}Webhook"),
        __doc__=f"The body of a `{event_type.value}` webhook (Standard Webhooks).",
        type=(event_literal, ...),
        timestamp=(AwareDatetime, ...),
        data=(_data_model(event_type), ...),
    )


def example_payload(event_type: EventType) -> dict[str, Any]:
    """A body of this type as the dispatcher sends it (ids made up)."""
    data: dict[str, Any] = {
        "transfer_id": "3f6c2a1e-9b1d-4c57-8a7e-2d6f0b9c1a42",
        "status": _EXAMPLE_STATUS.get(event_type, event_type.value.split(".")[1]),
        "amount_minor": 12_500,
        "currency": "EUR",
        "source_account_id": "7d0e6b54-1f0a-4d3c-9a57-0c8e2b6f4d11",
        "target_account_id": "a2b9c4d7-5e3f-4a1b-8c6d-9e0f1a2b3c4d",
        "failure_reason": "insufficient-funds" if event_type in _FAILURES else None,
    }
    if event_type in _REVERSALS:
        data["original_transfer_id"] = "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f"
    if event_type is EventType.standing_order_occurrence_failed:
        data["standing_order_id"] = "5b4a3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d"
        data["scheduled_at"] = "2026-12-06T09:00:00+00:00"
    return {"type": event_type.value, "timestamp": "2026-12-06T09:00:01Z", "data": data}


def _receiver(event_type: EventType) -> Callable[..., Any]:
    """A stand-in for the customer's endpoint: FastAPI reads its signature for the spec."""

    async def receiver(
        webhook_id: Annotated[str, Header(description=WEBHOOK_ID_DESCRIPTION)],
        webhook_timestamp: Annotated[str, Header(description=WEBHOOK_TIMESTAMP_DESCRIPTION)],
        webhook_signature: Annotated[str, Header(description=WEBHOOK_SIGNATURE_DESCRIPTION)],
        payload: Any,
    ) -> None:
        """Never called: the receiver is the customer's."""

    example: Example = {
        "summary": f"A {event_type.value} event",
        "value": example_payload(event_type),
    }
    receiver.__annotations__["payload"] = Annotated[
        payload_model(event_type), Body(openapi_examples={"example": example})
    ]
    receiver.__name__ = f"{_camel(event_type)}Webhook"
    return receiver


def install_webhook_catalogue(app: FastAPI) -> None:
    """Describe every event type's webhook in `app`'s OpenAPI `webhooks` section."""
    for event_type in EventType:
        app.webhooks.post(
            event_type.value,
            tags=[TAG],
            summary=f"`{event_type.value}`, signed per Standard Webhooks",
            description=description(event_type),
            operation_id=f"{_camel(event_type)[0].lower()}{_camel(event_type)[1:]}Webhook",
            responses=dict(RECEIVER_RESPONSES),
        )(_receiver(event_type))
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()
        for item in document.get("webhooks", {}).values():
            # FastAPI adds its 200 and a 422 a receiver never answers for us.
            item["post"]["responses"] = {
                code: dict(response) for code, response in RECEIVER_RESPONSES.items()
            }
        return document

    app.openapi = openapi  # type: ignore[method-assign]
