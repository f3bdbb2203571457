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

from contracts.audit import AUDIT_EVENTS_PATH
from contracts.transfers import SIGNAL_REVIEW_DECISION, ReviewDecision
from kit.testing import assert_problem
from transactions.config import Settings
from transactions.tests.support import (
    build_app,
    client_of,
    create,
    fingerprint,
    operator,
    report,
    signals,
    workflow_handle,
)

CONFIRMATIONS = "/v1/callbacks/confirmations"
CLIENTS = "/v1/admin/callback-clients"


# The account the tests' transfers come from unless a test says otherwise: the clients
# they register may decide transfers out of it.
SOURCE_ACCOUNT = str(uuid.uuid4())


async def _register(
    client: httpx.AsyncClient,
    name: str | None = None,
    *,
    account_ids: list[str] | None = None,
    reference_prefix: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name or f"rail-{uuid.uuid4().hex[:8]}",
        "account_ids": [SOURCE_ACCOUNT] if account_ids is None else account_ids,
    }
    if reference_prefix is not None:
        body["reference_prefix"] = reference_prefix
    response = await client.post(CLIENTS, headers=operator(), json=body)
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


async def _in_review(client: httpx.AsyncClient, **overrides: Any) -> str:
    transfer = await create(client, **{"source_account_id": SOURCE_ACCOUNT, **overrides})
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
        other_account = str(uuid.uuid4())
        response = await client.post(
            CLIENTS,
            headers=operator(),
            json={
                "name": "rail-x",
                "description": "Payment rail X",
                "account_ids": [SOURCE_ACCOUNT, other_account, SOURCE_ACCOUNT],
                "reference_prefix": "RX-",
            },
        )
        assert response.status_code == 201, response.text
        registered = response.json()
        assert registered["name"] == "rail-x"
        assert registered["description"] == "Payment rail X"
        # What it may decide, each account once, in the order given.
        assert registered["account_ids"] == [SOURCE_ACCOUNT, other_account]
        assert registered["reference_prefix"] == "RX-"
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
        again = {"name": "rail-x", "account_ids": [str(uuid.uuid4())]}
        response = await client.post(CLIENTS, headers=operator(), json=again)
        assert_problem(response, 409, "callback-client-exists")

    @pytest.mark.parametrize(
        "body",
        [
            {"name": ""},
            {"name": "Rail X"},
            {"name": "r" * 49},
            {"name": "rail-x", "secret": "whsec_mine", "account_ids": [SOURCE_ACCOUNT]},
            {},
            # A client bound to nothing could decide nothing: registering one is an error.
            {"name": "rail-x"},
            {"name": "rail-x", "account_ids": []},
            {"name": "rail-x", "reference_prefix": "RX-"},
            {"name": "rail-x", "account_ids": ["not-a-uuid"]},
            {"name": "rail-x", "account_ids": [str(uuid.uuid4()) for _ in range(101)]},
            {"name": "rail-x", "account_ids": [SOURCE_ACCOUNT], "reference_prefix": ""},
            {"name": "rail-x", "account_ids": [SOURCE_ACCOUNT], "reference_prefix": "R X"},
            {"name": "rail-x", "account_ids": [SOURCE_ACCOUNT], "reference_prefix": "R" * 65},
        ],
    )
    async def test_malformed(self, client: httpx.AsyncClient, body: dict[str, Any]) -> None:
        assert_problem(
            await client.post(CLIENTS, headers=operator(), json=body), 422, "invalid-request"
        )

    async def test_without_a_secrets_key(self, settings: Settings, temporal: Client) -> None:
        unkeyed = settings.model_copy(update={"callback_secrets_key": None})
        async with client_of(build_app(unkeyed, temporal_client=temporal)) as client:
            response = await client.post(
                CLIENTS,
                headers=operator(),
                json={"name": "rail-x", "account_ids": [SOURCE_ACCOUNT]},
            )
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
        transfer = await create(client, source_account_id=SOURCE_ACCOUNT)
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


def _as_unknown(problem: dict[str, Any]) -> dict[str, Any]:
    """A problem without what differs between any two answers (trace id, instance)."""
    return {name: problem[name] for name in ("type", "title", "status", "detail")}


class TestCallbackBinding:
    """A client decides only transfers out of the accounts it registered with (and, if it
    registered a reference prefix, only those whose `reference` metadata starts with it);
    any other transfer answers exactly as an unknown one."""

    async def test_within_its_accounts(self, client: httpx.AsyncClient, temporal: Client) -> None:
        registered = await _register(client, account_ids=[str(uuid.uuid4()), SOURCE_ACCOUNT])
        transfer_id = await _in_review(client)
        body = _confirmation(transfer_id)
        response = await client.post(CONFIRMATIONS, content=body, headers=_signed(registered, body))
        assert response.status_code == 200, response.text
        assert len(await signals(temporal, transfer_id, ReviewDecision)) == 1

    @pytest.mark.parametrize("status", ["in_review", "pending"])
    async def test_transfer_from_another_account(
        self, client: httpx.AsyncClient, app: FastAPI, temporal: Client, status: str
    ) -> None:
        account_a, account_b = str(uuid.uuid4()), str(uuid.uuid4())
        registered = await _register(client, account_ids=[account_a])
        if status == "in_review":
            transfer_id = await _in_review(client, source_account_id=account_b)
        else:
            transfer_id = (await create(client, source_account_id=account_b))["id"]
        unknown_id = str(uuid.uuid4())
        unknown_body = _confirmation(unknown_id)
        unknown = await client.post(
            CONFIRMATIONS, content=unknown_body, headers=_signed(registered, unknown_body)
        )
        before = await fingerprint(app)

        body = _confirmation(transfer_id)
        response = await client.post(CONFIRMATIONS, content=body, headers=_signed(registered, body))

        problem = assert_problem(response, 404, "transfer-not-found")
        expected = _as_unknown(assert_problem(unknown, 404, "transfer-not-found"))
        expected["detail"] = expected["detail"].replace(unknown_id, transfer_id)
        assert _as_unknown(problem) == expected
        await _nothing_happened(app, temporal, transfer_id)
        assert await fingerprint(app) == before

    async def test_transfer_into_its_account(
        self, client: httpx.AsyncClient, app: FastAPI, temporal: Client
    ) -> None:
        # Approving releases the source's money: the payee's side has no say over it.
        account_a = str(uuid.uuid4())
        registered = await _register(client, account_ids=[account_a])
        transfer_id = await _in_review(client, target_account_id=account_a)
        body = _confirmation(transfer_id)
        response = await client.post(CONFIRMATIONS, content=body, headers=_signed(registered, body))
        assert_problem(response, 404, "transfer-not-found")
        await _nothing_happened(app, temporal, transfer_id)

    @pytest.mark.parametrize(
        ("metadata", "decides"),
        [
            pytest.param({"reference": "RX-1042"}, True, id="prefixed"),
            pytest.param({"reference": "RY-1042"}, False, id="other-prefix"),
            pytest.param({"reference": "rx-1042"}, False, id="case-differs"),
            pytest.param({"invoice": "RX-1042"}, False, id="no-reference"),
        ],
    )
    async def test_reference_prefix(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        temporal: Client,
        metadata: dict[str, str],
        decides: bool,
    ) -> None:
        registered = await _register(client, reference_prefix="RX-")
        transfer_id = await _in_review(client, metadata=metadata)
        body = _confirmation(transfer_id)
        response = await client.post(CONFIRMATIONS, content=body, headers=_signed(registered, body))
        if decides:
            assert response.status_code == 200, response.text
            assert len(await signals(temporal, transfer_id, ReviewDecision)) == 1
        else:
            assert_problem(response, 404, "transfer-not-found")
            await _nothing_happened(app, temporal, transfer_id)

    async def test_prefix_does_not_widen_the_accounts(
        self, client: httpx.AsyncClient, app: FastAPI, temporal: Client
    ) -> None:
        registered = await _register(client, reference_prefix="RX-")
        transfer_id = await _in_review(
            client, source_account_id=str(uuid.uuid4()), metadata={"reference": "RX-1"}
        )
        body = _confirmation(transfer_id)
        response = await client.post(CONFIRMATIONS, content=body, headers=_signed(registered, body))
        assert_problem(response, 404, "transfer-not-found")
        await _nothing_happened(app, temporal, transfer_id)

    async def test_client_registered_before_bindings_decides_nothing(
        self, client: httpx.AsyncClient, app: FastAPI, temporal: Client
    ) -> None:
        registered = await _register(client)
        # A row as migration 0005 leaves a client registered before it: bound to nothing.
        async with app.state.database.engine.begin() as connection:
            await connection.execute(
                text(
                    "UPDATE callback_clients SET account_ids = DEFAULT, reference_prefix = DEFAULT"
                )
            )
        transfer_id = await _in_review(client)
        body = _confirmation(transfer_id)
        response = await client.post(CONFIRMATIONS, content=body, headers=_signed(registered, body))
        assert_problem(response, 404, "transfer-not-found")
        await _nothing_happened(app, temporal, transfer_id)

    async def test_registration_audits_the_binding(self, client: httpx.AsyncClient) -> None:
        registered = await _register(client, "rail-x", reference_prefix="RX-")
        response = await client.get(
            AUDIT_EVENTS_PATH,
            params={"action": "callback_client.registered"},
            headers=operator(),
        )
        assert response.status_code == 200, response.text
        (event,) = response.json()["items"]
        assert event["subject_id"] == registered["id"]
        assert event["after"] == {
            "name": "rail-x",
            "account_ids": [SOURCE_ACCOUNT],
            "reference_prefix": "RX-",
        }
