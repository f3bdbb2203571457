"""The webhooks notifications sends are described in its OpenAPI `webhooks` section
(docs/decisions/0040): one per event type, none forgotten; each with the schema of the body
the dispatcher really sends (from the data the saga's activity publishes), an example it
accepts, the Standard Webhooks headers and what the receiver's answer means."""

import json
import uuid
from datetime import UTC, datetime
from typing import Any, Final

import jsonschema
import pytest
from jsonschema.protocols import Validator

from contracts.notifications import EventType
from contracts.transfers import TransferStatus
from notifications.dispatcher import webhook_body
from tests.service_apps import service_apps, write_signing_keys
from workflows.models import EventPublication
from workflows.tests.test_activities import TRANSFER, Services, run

HEADERS: Final = ("webhook-id", "webhook-signature", "webhook-timestamp")
OCCURRED_AT: Final = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
REVERSALS: Final = {EventType.transfer_reversed, EventType.transfer_reversal_failed}


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    keys = write_signing_keys(tmp_path_factory.mktemp("webhooks-keys"))
    return service_apps(keys)["notifications"].openapi()


def webhook(document: dict[str, Any], event_type: EventType) -> dict[str, Any]:
    operation: dict[str, Any] = document["webhooks"][event_type.value]["post"]
    return operation


def validator(document: dict[str, Any], event_type: EventType) -> Validator:
    """The webhook's body schema, its `$ref`s resolved against the whole document."""
    body = webhook(document, event_type)["requestBody"]["content"]["application/json"]
    schema = {**body["schema"], "components": document["components"]}
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


async def saga_data(event_type: EventType) -> dict[str, object]:
    """An event's `data` as the saga publishes it, routing keys included (the dispatcher
    strips them): a transfer event from the saga's own activity (publish_event, its HTTP
    call captured); an occurrence's as publish_occurrence_failed shapes it."""
    if event_type is EventType.standing_order_occurrence_failed:
        # Refused before its transfer existed: no transfer id.
        return {
            "transfer_id": None,
            "status": "rejected",
            "amount_minor": 50_000,
            "currency": "EUR",
            "source_account_id": str(uuid.uuid4()),
            "target_account_id": str(uuid.uuid4()),
            "failure_reason": "insufficient-funds",
            "standing_order_id": str(uuid.uuid4()),
            "scheduled_at": OCCURRED_AT.isoformat(),
            "source_customer_id": "customer-a",
        }
    services = Services()
    try:
        services.answer_json(201, {})
        publication = EventPublication(
            transfer=TRANSFER,
            type=event_type,
            status=TransferStatus.rejected,
            occurred_at=OCCURRED_AT,
            failure_reason="insufficient-funds",
            source_customer_id="customer-a",
            target_customer_id="customer-b",
            original_transfer_id=uuid.uuid4() if event_type in REVERSALS else None,
        )
        await run(services.activities.publish_event, publication)
        data: dict[str, object] = services.body()["data"]
        return data
    finally:
        await services.activities.aclose()


async def sent_body(event_type: EventType) -> dict[str, Any]:
    """The JSON body the dispatcher sends for this event."""
    data = await saga_data(event_type)
    body: dict[str, Any] = json.loads(webhook_body(event_type, occurred_at=OCCURRED_AT, data=data))
    return body


def test_the_webhooks_section_lists_exactly_the_event_types(document: dict[str, Any]) -> None:
    assert set(document.get("webhooks", {})) == {event_type.value for event_type in EventType}
    assert all(list(item) == ["post"] for item in document["webhooks"].values())


@pytest.mark.parametrize("event_type", list(EventType))
async def test_each_schema_validates_the_body_the_dispatcher_sends(
    document: dict[str, Any], event_type: EventType
) -> None:
    body = await sent_body(event_type)
    assert not set(body["data"]) & {"source_customer_id", "target_customer_id"}
    assert ("original_transfer_id" in body["data"]) == (event_type in REVERSALS)
    validator(document, event_type).validate(body)


@pytest.mark.parametrize("event_type", list(EventType))
async def test_each_schema_refuses_another_types_body_and_a_body_without_the_amount(
    document: dict[str, Any], event_type: EventType
) -> None:
    check = validator(document, event_type)
    other = next(other for other in EventType if other is not event_type)
    assert not check.is_valid(await sent_body(other))
    body = await sent_body(event_type)
    del body["data"]["amount_minor"]
    assert not check.is_valid(body)


@pytest.mark.parametrize("event_type", list(EventType))
def test_each_webhook_has_an_example_its_schema_accepts(
    document: dict[str, Any], event_type: EventType
) -> None:
    content = webhook(document, event_type)["requestBody"]["content"]["application/json"]
    examples = [example["value"] for example in content.get("examples", {}).values()]
    assert examples, "an example payload"
    for example in examples:
        assert example["type"] == event_type.value
        validator(document, event_type).validate(example)


@pytest.mark.parametrize("event_type", list(EventType))
def test_each_webhook_documents_the_standard_webhooks_headers_and_the_answers(
    document: dict[str, Any], event_type: EventType
) -> None:
    operation = webhook(document, event_type)
    headers = {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}
    assert sorted(headers) == sorted(HEADERS)
    assert all(header["required"] and header["description"] for header in headers.values())
    signature = headers["webhook-signature"]["description"]
    assert all(part in signature for part in ("HMAC-SHA256", "v1,", "id.timestamp.body"))
    assert "tolerance" in headers["webhook-timestamp"]["description"]
    # The receiver's answer: 2xx delivered, 410 disables the endpoint, anything else retried.
    assert set(operation["responses"]) == {"2XX", "410", "default"}
    assert "disabled" in operation["responses"]["410"]["description"]
    assert "retried" in operation["responses"]["default"]["description"]
    assert operation["operationId"].endswith("Webhook")
    assert operation["tags"] == ["webhooks"]
