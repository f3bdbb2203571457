"""Callback clients and POST /v1/callbacks/confirmations, signed per Standard Webhooks.

Requests are signed here with the independent `standardwebhooks` library; nothing a
refused request carries may reach the saga or the database.
"""

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import text
from standardwebhooks.webhooks import Webhook
from temporalio.client import Client

from contracts.transfers import SIGNAL_REVIEW_DECISION, ReviewDecision
from kit.testing import assert_problem
from transactions.config import Settings
from transactions.tests.support import (
    build_app,
    client_of,
    create,
    operator,
    report,
    signals,
    workflow_handle,
)

CONFIRMATIONS = "/v1/callbacks/confirmations"
CLIENTS = "/v1/admin/callback-clients"


async def _register(client: httpx.AsyncClient, name: str | None = None) -> dict[str, Any]:
    response = await client.post(
        CLIENTS, headers=operator(), json={"name": name or f"rail-{uuid.uuid4().hex[:8]}"}
    )
    assert response.status_code == 201, response.text
    registered: dict[str, Any] = response.json()
    return registered


def _signed(
    registered: dict[str, Any],
    body: bytes,
    *,
    webhook_id: str | None = None,
    at: datetime | None = None,
    secret: str | None = None,
) -> dict[str, str]:
    """The headers a Standard Webhooks sender puts on `body`."""
    message_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    timestamp = at or datetime.now(UTC)
    signature = Webhook(secret or registered["secret"]).sign(message_id, timestamp, body.decode())
    return {
        "Callback-Client-Id": registered["id"],
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def _confirmation(transfer_id: str, decision: str = "approve", **extra: Any) -> bytes:
    body = {"transfer_id": transfer_id, "decision": decision, "external_reference": "RX-1042"}
    return json.dumps({**body, **extra}).encode()


async def _in_review(client: httpx.AsyncClient) -> str:
    transfer = await create(client)
    response = await report(
        client, transfer["id"], step="score", outcome="review", status="in_review", version=3
    )
    assert response.status_code == 200, response.text
    transfer_id: str = transfer["id"]
    return transfer_id


async def _receipts(app: FastAPI) -> int:
    async with app.state.database.engine.connect() as connection:
        count: int = (
            await connection.execute(text("SELECT count(*) FROM callback_receipts"))
        ).scalar_one()
        return count


async def _nothing_happened(app: FastAPI, temporal: Client, transfer_id: str) -> None:
    assert await signals(temporal, transfer_id, ReviewDecision) == []
    assert await _receipts(app) == 0


class TestRegisterCallbackClient:
    async def test_valid(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        response = await client.post(
            CLIENTS, headers=operator(), json={"name": "rail-x", "description": "Payment rail X"}
        )
        assert response.status_code == 201, response.text
        registered = response.json()
        assert registered["name"] == "rail-x"
        assert registered["description"] == "Payment rail X"
        assert uuid.UUID(registered["id"])
        secret = registered["secret"]
        assert secret.startswith("whsec_")
        raw = base64.b64decode(secret.removeprefix("whsec_"))
        assert len(raw) == 32
        # Stored sealed: neither the secret nor its spelling appears in the table.
        async with app.state.database.engine.connect() as connection:
            (stored,) = (
                await connection.execute(text("SELECT secret_ciphertext FROM callback_clients"))
            ).one()
        assert raw not in bytes(stored)
        assert secret.encode() not in bytes(stored)

    async def test_each_client_gets_its_own_secret(self, client: httpx.AsyncClient) -> None:
        first, second = await _register(client), await _register(client)
        assert first["secret"] != second["secret"]

    async def test_name_taken(self, client: httpx.AsyncClient) -> None:
        await _register(client, "rail-x")
        response = await client.post(CLIENTS, headers=operator(), json={"name": "rail-x"})
        assert_problem(response, 409, "callback-client-exists")

    @pytest.mark.parametrize(
        "body",
        [
            {"name": ""},
            {"name": "Rail X"},
            {"name": "r" * 49},
            {"name": "rail-x", "secret": "whsec_mine"},
            {},
        ],
    )
    async def test_malformed(self, client: httpx.AsyncClient, body: dict[str, Any]) -> None:
        assert_problem(
            await client.post(CLIENTS, headers=operator(), json=body), 422, "invalid-request"
        )

    async def test_without_a_secrets_key(self, settings: Settings, temporal: Client) -> None:
        unkeyed = settings.model_copy(update={"callback_secrets_key": None})
        async with client_of(build_app(unkeyed, temporal_client=temporal)) as client:
            response = await client.post(CLIENTS, headers=operator(), json={"name": "rail-x"})
            assert_problem(response, 503, "callbacks-not-configured")
            refused = await client.post(CONFIRMATIONS, content=b"{}")
            assert_problem(refused, 503, "callbacks-not-configured")


class TestConfirmationCallback:
    async def test_approve(self, client: httpx.AsyncClient, app: FastAPI, temporal: Client) -> None:
        registered = await _register(client, "rail-x")
        transfer_id = await _in_review(client)
        body = _confirmation(transfer_id, note="checked by phone")
        headers = _signed(registered, body)

        response = await client.post(CONFIRMATIONS, content=body, headers=headers)

        assert response.status_code == 200, response.text
        assert "idempotency-replayed" not in response.headers
        assert response.json() == {
            "webhook_id": headers["webhook-id"],
            "transfer_id": transfer_id,
            "decision": "approve",
            "external_reference": "RX-1042",
            "transfer_status": "in_review",
        }
        assert await signals(temporal, transfer_id, ReviewDecision) == [
            (
                SIGNAL_REVIEW_DECISION,
                ReviewDecision(
                    decision="approve",
                    reviewer_id="callback:rail-x",
                    note="ref RX-1042: checked by phone",
                ),
            )
        ]
        assert await _receipts(app) == 1

    async def test_reject(self, client: httpx.AsyncClient, temporal: Client) -> None:
        registered = await _register(client)
        transfer_id = await _in_review(client)
        body = _confirmation(transfer_id, "reject")
        response = await client.post(CONFIRMATIONS, content=body, headers=_signed(registered, body))
        assert response.status_code == 200, response.text
        ((name, decision),) = await signals(temporal, transfer_id, ReviewDecision)
        assert name == SIGNAL_REVIEW_DECISION
        assert decision.decision == "reject"
        assert decision.note == "ref RX-1042"

    async def test_replayed_webhook_id_has_no_second_effect(
        self, client: httpx.AsyncClient, app: FastAPI, temporal: Client
    ) -> None:
        registered = await _register(client)
        transfer_id = await _in_review(client)
        body = _confirmation(transfer_id)
        headers = _signed(registered, body)
        first = await client.post(CONFIRMATIONS, content=body, headers=headers)

        again = await client.post(CONFIRMATIONS, content=body, headers=headers)
        # Re-signed a minute later, as a sender's retry would be: still the same message.
        later = _signed(
            registered,
            body,
            webhook_id=headers["webhook-id"],
            at=datetime.now(UTC) + timedelta(minutes=1),
        )
        retried = await client.post(CONFIRMATIONS, content=body, headers=later)

        for response in (again, retried):
            assert response.status_code == 200, response.text
            assert response.headers["idempotency-replayed"] == "true"
            assert response.json() == first.json()
        assert len(await signals(temporal, transfer_id, ReviewDecision)) == 1
        assert await _receipts(app) == 1

    async def test_concurrent_deliveries_take_effect_once(
        self, client: httpx.AsyncClient, app: FastAPI, temporal: Client
    ) -> None:
        registered = await _register(client)
        transfer_id = await _in_review(client)
        body = _confirmation(transfer_id)
        headers = _signed(registered, body)
        responses = await asyncio.gather(
            *(client.post(CONFIRMATIONS, content=body, headers=headers) for _ in range(5))
        )
        assert [response.status_code for response in responses] == [200] * 5
        assert len({response.text for response in responses}) == 1
        assert len(await signals(temporal, transfer_id, ReviewDecision)) == 1
        assert await _receipts(app) == 1

    async def test_same_webhook_id_from_two_clients_is_two_messages(
        self, client: httpx.AsyncClient, temporal: Client
    ) -> None:
        first_client, second_client = await _register(client), await _register(client)
        transfer_id = await _in_review(client)
        body = _confirmation(transfer_id)
        for registered in (first_client, second_client):
            headers = _signed(registered, body, webhook_id="msg_shared")
            response = await client.post(CONFIRMATIONS, content=body, headers=headers)
            assert response.status_code == 200, response.text
            assert "idempotency-replayed" not in response.headers
        assert len(await signals(temporal, transfer_id, ReviewDecision)) == 2

    async def test_tampered_body(
        self, client: httpx.AsyncClient, app: FastAPI, temporal: Client
    ) -> None:
        registered = await _register(client)
        transfer_id = await _in_review(client)
        headers = _signed(registered, _confirmation(transfer_id, "reject"))
        tampered = _confirmation(transfer_id, "approve")
        response = await client.post(CONFIRMATIONS, content=tampered, headers=headers)
        assert_problem(response, 401, "callback-signature-invalid")
        await _nothing_happened(app, temporal, transfer_id)

    async def test_wrong_secret(
        self, client: httpx.AsyncClient, app: FastAPI, temporal: Client
    ) -> None:
        registered, other = await _register(client), await _register(client)
        transfer_id = await _in_review(client)
        body = _confirmation(transfer_id)
        for secret in (other["secret"], "whsec_" + base64.b64encode(b"k" * 32).decode()):
            headers = _signed(registered, body, secret=secret)
            response = await client.post(CONFIRMATIONS, content=body, headers=headers)
            assert_problem(response, 401, "callback-signature-invalid")
        await _nothing_happened(app, temporal, transfer_id)

    async def test_signed_for_another_client(
        self, client: httpx.AsyncClient, app: FastAPI, temporal: Client
    ) -> None:
        # Signed correctly by one client, presented as another's.
        registered, other = await _register(client), await _register(client)
        transfer_id = await _in_review(client)
        body = _confirmation(transfer_id)
        headers = {**_signed(other, body), "Callback-Client-Id": registered["id"]}
        response = await client.post(CONFIRMATIONS, content=body, headers=headers)
        assert_problem(response, 401, "callback-signature-invalid")
        await _nothing_happened(app, temporal, transfer_id)

    @pytest.mark.parametrize("offset", [timedelta(minutes=-6), timedelta(minutes=6)])
    async def test_timestamp_out_of_range(
        self, client: httpx.AsyncClient, app: FastAPI, temporal: Client, offset: timedelta
    ) -> None:
        registered = await _register(client)
        transfer_id = await _in_review(client)
        body = _confirmation(transfer_id)
        headers = _signed(registered, body, at=datetime.now(UTC) + offset)
        response = await client.post(CONFIRMATIONS, content=body, headers=headers)
        assert_problem(response, 401, "callback-timestamp-invalid")
        await _nothing_happened(app, temporal, transfer_id)

    async def test_stale_replay_of_a_valid_message(
        self, client: httpx.AsyncClient, app: FastAPI, temporal: Client
    ) -> None:
        # A message captured 10 minutes ago and sent again, signature intact.
        registered = await _register(client)
        transfer_id = await _in_review(client)
        body = _confirmation(transfer_id)
        captured = _signed(registered, body, at=datetime.now(UTC) - timedelta(minutes=10))
        response = await client.post(CONFIRMATIONS, content=body, headers=captured)
        assert_problem(response, 401, "callback-timestamp-invalid")
        await _nothing_happened(app, temporal, transfer_id)

    async def test_missing_or_malformed_headers(
        self, client: httpx.AsyncClient, app: FastAPI, temporal: Client
    ) -> None:
        registered = await _register(client)
        transfer_id = await _in_review(client)
        body = _confirmation(transfer_id)
        signature, timestamp = "callback-signature-invalid", "callback-timestamp-invalid"
        # (header, value or None to leave it out, problem slug)
        cases: list[tuple[str, str | None, str]] = [
            ("webhook-id", None, signature),
            ("webhook-timestamp", None, signature),
            ("webhook-signature", None, signature),
            ("Callback-Client-Id", None, signature),
            ("Callback-Client-Id", "not-a-uuid", signature),
            ("Callback-Client-Id", str(uuid.uuid4()), signature),
            ("webhook-signature", "v1,not-base64!", signature),
            ("webhook-signature", "garbage", signature),
            ("webhook-signature", "v2,c2lnbmF0dXJl", signature),
            ("webhook-signature", "v1," + "A" * 2000, signature),
            ("webhook-id", "x" * 256, signature),
            ("webhook-timestamp", "soon", timestamp),
            ("webhook-timestamp", "1.5e9", timestamp),
        ]
        for header, value, slug in cases:
            headers = _signed(registered, body)
            if value is None:
                del headers[header]
            else:
                headers[header] = value
            response = await client.post(CONFIRMATIONS, content=body, headers=headers)
            assert_problem(response, 401, slug)
        await _nothing_happened(app, temporal, transfer_id)

    async def test_signature_among_several(
        self, client: httpx.AsyncClient, temporal: Client
    ) -> None:
        # A sender rotating its secret signs with the old and the new one.
        registered = await _register(client)
        transfer_id = await _in_review(client)
        body = _confirmation(transfer_id)
        headers = _signed(registered, body)
        old = Webhook(base64.b64encode(b"o" * 32).decode()).sign(
            headers["webhook-id"],
            datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC),
            body.decode(),
        )
        headers["webhook-signature"] = f"{old} {headers['webhook-signature']}"
        response = await client.post(CONFIRMATIONS, content=body, headers=headers)
        assert response.status_code == 200, response.text

    async def test_transfer_not_in_review(
        self, client: httpx.AsyncClient, app: FastAPI, temporal: Client
    ) -> None:
        registered = await _register(client)
        transfer = await create(client)
        body = _confirmation(transfer["id"])
        headers = _signed(registered, body)

        response = await client.post(CONFIRMATIONS, content=body, headers=headers)

        assert_problem(response, 409, "transfer-not-in-review")
        await _nothing_happened(app, temporal, transfer["id"])
        # The refusal recorded nothing: once in review, the same message takes effect.
        await report(
            client, transfer["id"], step="score", outcome="review", status="in_review", version=3
        )
        accepted = await client.post(CONFIRMATIONS, content=body, headers=headers)
        assert accepted.status_code == 200, accepted.text
        assert "idempotency-replayed" not in accepted.headers
        assert len(await signals(temporal, transfer["id"], ReviewDecision)) == 1

    @pytest.mark.parametrize("status", ["completed", "declined", "expired", "cancelled"])
    async def test_transfer_already_decided(
        self, client: httpx.AsyncClient, app: FastAPI, temporal: Client, status: str
    ) -> None:
        registered = await _register(client)
        transfer_id = await _in_review(client)
        await report(
            client, transfer_id, step="notify", outcome="succeeded", status=status, version=9
        )
        body = _confirmation(transfer_id)
        response = await client.post(CONFIRMATIONS, content=body, headers=_signed(registered, body))
        assert_problem(response, 409, "transfer-not-in-review")
        await _nothing_happened(app, temporal, transfer_id)

    async def test_workflow_already_closed(
        self, client: httpx.AsyncClient, app: FastAPI, temporal: Client
    ) -> None:
        registered = await _register(client)
        transfer_id = await _in_review(client)
        await workflow_handle(temporal, transfer_id).terminate(reason="test")
        body = _confirmation(transfer_id)
        response = await client.post(CONFIRMATIONS, content=body, headers=_signed(registered, body))
        assert_problem(response, 409, "transfer-not-in-review")
        assert await _receipts(app) == 0

    async def test_unknown_transfer(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        registered = await _register(client)
        body = _confirmation(str(uuid.uuid4()))
        response = await client.post(CONFIRMATIONS, content=body, headers=_signed(registered, body))
        assert_problem(response, 404, "transfer-not-found")
        assert await _receipts(app) == 0

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param(b"not json", id="not-json"),
            pytest.param(b'{"transfer_id": "x", "decision": "approve"}', id="malformed-fields"),
            pytest.param(b"{}", id="empty"),
        ],
    )
    async def test_signed_but_malformed(
        self, client: httpx.AsyncClient, app: FastAPI, body: bytes
    ) -> None:
        registered = await _register(client)
        response = await client.post(CONFIRMATIONS, content=body, headers=_signed(registered, body))
        problem = assert_problem(response, 422, "invalid-request")
        assert problem["errors"]
        assert await _receipts(app) == 0

    async def test_unknown_decision(
        self, client: httpx.AsyncClient, app: FastAPI, temporal: Client
    ) -> None:
        registered = await _register(client)
        transfer_id = await _in_review(client)
        body = _confirmation(transfer_id, "maybe")
        response = await client.post(CONFIRMATIONS, content=body, headers=_signed(registered, body))
        assert_problem(response, 422, "invalid-request")
        await _nothing_happened(app, temporal, transfer_id)

    async def test_secret_unreadable_after_the_key_changed(
        self, client: httpx.AsyncClient, settings: Settings, temporal: Client
    ) -> None:
        registered = await _register(client)
        transfer_id = await _in_review(client)
        other_key = SecretStr(base64.b64encode(b"n" * 32).decode())
        rekeyed = settings.model_copy(update={"callback_secrets_key": other_key})
        body = _confirmation(transfer_id)
        async with client_of(build_app(rekeyed, temporal_client=temporal)) as other:
            response = await other.post(
                CONFIRMATIONS, content=body, headers=_signed(registered, body)
            )
        assert_problem(response, 401, "callback-signature-invalid")
