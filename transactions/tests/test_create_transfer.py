"""POST /v1/transfers: idempotent creation that starts the transfer saga."""

import asyncio
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from temporalio.client import Client, WorkflowExecutionStatus

from contracts.transfers import WORKFLOW_NAME, TransferCreate, TransferWorkflowInput, workflow_id
from kit.resources import resources_of
from kit.testing import assert_problem
from sagabank.localstack.postgres import free_port
from transactions import repository, service
from transactions.changes import (
    IDEMPOTENCY_KEY_SETTLED_CHANNEL,
    idempotency_key_payload,
)
from transactions.config import Settings
from transactions.resources import TransactionsResources
from transactions.tests.support import (
    ALICE,
    BOB,
    FakeAccounts,
    build_app,
    client_of,
    count_rows,
    customer,
    customer_caller,
    eventually,
    key_header,
    report,
    transfer_body,
    workflow_count,
    workflow_handle,
)
from transactions.workflow_client import (
    AMOUNT_MINOR_KEY,
    CURRENCY_KEY,
    SOURCE_ACCOUNT_KEY,
    STATUS_KEY,
    TARGET_ACCOUNT_KEY,
)

CALLER_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


async def _hold_claim(app: FastAPI, key: str, body: dict[str, Any]) -> uuid.UUID:
    """Claim `key` exactly as a first request does while it creates the transfer."""
    async with app.state.database.sessions() as session, session.begin():
        claimed = await repository.claim_idempotency_key(
            session,
            caller=customer_caller(),
            key=key,
            request_hash=service.request_hash(TransferCreate.model_validate(body)),
            transfer_id=uuid.uuid4(),
            ttl=service.IDEMPOTENCY_KEY_TTL,
            lease=service.IDEMPOTENCY_LEASE,
        )
    assert claimed is not None
    return claimed


async def _until_waiting(app: FastAPI, key: str) -> None:
    """Wait (bounded) until a duplicate request waits on `key`."""
    changes = resources_of(app, TransactionsResources).changes
    payload = idempotency_key_payload(customer_caller(), key)
    await eventually(
        lambda: changes.waiting(IDEMPOTENCY_KEY_SETTLED_CHANNEL, payload) > 0,
        "a request waits on the key",
    )


def _source_query(body: dict[str, Any]) -> str:
    return f'SourceAccountId = "{body["source_account_id"]}"'


async def _transfers_of(client: httpx.AsyncClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = await client.get("/v1/transfers", params={"account_id": body["source_account_id"]})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


class TestCreateTransfer:
    async def test_valid(
        self, client: httpx.AsyncClient, temporal: Client, settings: Settings
    ) -> None:
        body = transfer_body()
        response = await client.post("/v1/transfers", json=body, headers=key_header())

        assert response.status_code == 202, response.text
        created = response.json()
        assert response.headers["location"] == f"/v1/transfers/{created['id']}"
        assert "idempotency-replayed" not in response.headers
        assert created["status"] == "pending"
        assert created["workflow_id"] == workflow_id(uuid.UUID(created["id"]))
        for field in ("source_account_id", "target_account_id", "amount_minor", "currency"):
            assert created[field] == body[field]
        assert created["description"] == body["description"]
        assert created["metadata"] == body["metadata"]
        assert created["steps"] == []
        assert created["fraud"] is None
        fetched = await client.get(response.headers["location"])
        assert fetched.json() == created

    async def test_starts_the_saga(
        self, client: httpx.AsyncClient, temporal: Client, settings: Settings
    ) -> None:
        body = transfer_body()
        created = (await client.post("/v1/transfers", json=body, headers=key_header())).json()

        handle = workflow_handle(temporal, created["id"])
        description = await handle.describe()
        assert description.status == WorkflowExecutionStatus.RUNNING
        assert description.workflow_type == WORKFLOW_NAME
        assert description.task_queue == settings.task_queue
        attributes = description.typed_search_attributes
        assert attributes[STATUS_KEY] == "pending"
        assert attributes[SOURCE_ACCOUNT_KEY] == body["source_account_id"]
        assert attributes[TARGET_ACCOUNT_KEY] == body["target_account_id"]
        assert attributes[AMOUNT_MINOR_KEY] == body["amount_minor"]
        assert attributes[CURRENCY_KEY] == "EUR"
        assert await description.memo_value("description") == body["description"]

        history = await handle.fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes
        (arguments,) = await temporal.data_converter.decode(
            list(started.input.payloads), [TransferWorkflowInput]
        )
        requested_at = datetime.fromisoformat(created["created_at"])
        assert arguments == TransferWorkflowInput(
            transfer_id=created["id"],
            source_account_id=body["source_account_id"],
            target_account_id=body["target_account_id"],
            amount_minor=body["amount_minor"],
            currency="EUR",
            description=body["description"],
            review_timeout_seconds=settings.review_timeout_seconds,
            source_customer_id=ALICE,
            # The hold outlives the review by the grace; the saga starts in time or not at all.
            hold_timeout_seconds=settings.review_timeout_seconds + settings.hold_grace_seconds,
            start_deadline=requested_at + timedelta(seconds=settings.start_deadline_seconds),
        )

    async def test_idempotency_key_missing(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        response = await client.post("/v1/transfers", json=transfer_body())
        assert_problem(response, 400, "idempotency-key-missing")
        assert await count_rows(app, "transfers") == 0
        assert await count_rows(app, "idempotency_keys") == 0

    @pytest.mark.parametrize("key", ["", "k" * 256, "tab\tinside"])
    async def test_idempotency_key_malformed(
        self, client: httpx.AsyncClient, app: FastAPI, key: str
    ) -> None:
        response = await client.post(
            "/v1/transfers", json=transfer_body(), headers={"Idempotency-Key": key}
        )
        assert_problem(response, 422, "invalid-request")
        assert await count_rows(app, "transfers") == 0

    async def test_idempotency_key_of_255_printable_characters(
        self, client: httpx.AsyncClient
    ) -> None:
        key = "K ~" * 85
        response = await client.post("/v1/transfers", json=transfer_body(), headers=key_header(key))
        assert response.status_code == 202, response.text

    async def test_same_account(
        self, client: httpx.AsyncClient, app: FastAPI, temporal: Client
    ) -> None:
        account = str(uuid.uuid4())
        body = transfer_body(source_account_id=account, target_account_id=account)
        headers = key_header()
        assert_problem(
            await client.post("/v1/transfers", json=body, headers=headers), 422, "same-account"
        )
        assert await count_rows(app, "transfers") == 0
        # The key was not consumed: a corrected request with it goes through.
        corrected = transfer_body(source_account_id=account)
        response = await client.post("/v1/transfers", json=corrected, headers=headers)
        assert response.status_code == 202, response.text
        assert "idempotency-replayed" not in response.headers
        assert await workflow_count(temporal, _source_query(body), expected=1) == 1

    async def test_same_key_same_body_replays(
        self, client: httpx.AsyncClient, app: FastAPI, temporal: Client
    ) -> None:
        body = transfer_body()
        headers = key_header()
        first = await client.post("/v1/transfers", json=body, headers=headers)
        # The same body spelt differently: other key order, spacing, explicit defaults.
        respelt = json.dumps(dict(reversed(list(body.items()))), indent=2)
        second = await client.post(
            "/v1/transfers",
            content=respelt,
            headers={**headers, "Content-Type": "application/json"},
        )

        assert second.status_code == first.status_code == 202
        assert second.headers["idempotency-replayed"] == "true"
        assert second.headers["location"] == first.headers["location"]
        assert second.json() == first.json()
        assert len(await _transfers_of(client, body)) == 1
        assert await workflow_count(temporal, _source_query(body), expected=1) == 1

    async def test_replay_is_the_stored_answer(self, client: httpx.AsyncClient) -> None:
        body = transfer_body()
        headers = key_header()
        first = (await client.post("/v1/transfers", json=body, headers=headers)).json()
        reported = await report(
            client, first["id"], step="validate", outcome="succeeded", status="pending", version=1
        )
        assert reported.status_code == 200, reported.text
        replayed = await client.post("/v1/transfers", json=body, headers=headers)
        assert replayed.json() == first
        assert replayed.json()["steps"] == []

    async def test_same_key_other_body(self, client: httpx.AsyncClient) -> None:
        body = transfer_body()
        headers = key_header()
        first = (await client.post("/v1/transfers", json=body, headers=headers)).json()

        response = await client.post(
            "/v1/transfers", json={**body, "amount_minor": 999_999}, headers=headers
        )
        assert_problem(response, 422, "idempotency-key-reused")
        transfers = await _transfers_of(client, body)
        assert [transfer["id"] for transfer in transfers] == [first["id"]]
        assert transfers[0]["amount_minor"] == body["amount_minor"]

    async def test_keys_are_distinct_requests(self, client: httpx.AsyncClient) -> None:
        body = transfer_body()
        first = await client.post("/v1/transfers", json=body, headers=key_header())
        second = await client.post("/v1/transfers", json=body, headers=key_header())
        assert first.status_code == second.status_code == 202
        assert first.json()["id"] != second.json()["id"]
        assert len(await _transfers_of(client, body)) == 2

    async def test_same_key_while_in_flight(
        self, client: httpx.AsyncClient, settings: Settings, temporal: Client, app: FastAPI
    ) -> None:
        body = transfer_body()
        headers = key_header()
        await _hold_claim(app, headers["Idempotency-Key"], body)
        impatient = settings.model_copy(update={"idempotency_in_flight_wait_seconds": 0.3})

        async with client_of(build_app(impatient, temporal_client=temporal)) as other:
            response = await other.post("/v1/transfers", json=body, headers=headers)

        # The first request is still running after the duplicate's bounded wait.
        assert_problem(response, 409, "idempotency-key-in-flight")
        assert int(response.headers["retry-after"]) > 0
        assert await count_rows(app, "transfers") == 0

    async def test_duplicate_waits_for_the_first_and_replays_it(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        body = transfer_body()
        headers = key_header()
        key = headers["Idempotency-Key"]
        transfer_id = await _hold_claim(app, key, body)
        duplicate = asyncio.create_task(client.post("/v1/transfers", json=body, headers=headers))
        await _until_waiting(app, key)

        # The first request finishes: its answer is stored and the key completed.
        stored = {"id": str(transfer_id), "note": "the first request's answer"}
        async with app.state.database.sessions() as session, session.begin():
            assert await repository.complete_idempotency_key(
                session,
                caller=customer_caller(),
                key=key,
                transfer_id=transfer_id,
                response_status=202,
                response_body=stored,
            )

        response = await duplicate
        assert response.status_code == 202, response.text
        assert response.headers["idempotency-replayed"] == "true"
        assert response.json() == stored
        assert await count_rows(app, "transfers") == 0

    async def test_the_temporal_ui_tells_the_story(
        self, client: httpx.AsyncClient, temporal: Client
    ) -> None:
        """A static summary in words, money from minor units; details give the trace id."""
        body = transfer_body(amount_minor=2550)
        response = await client.post(
            "/v1/transfers",
            json=body,
            headers={**key_header(), "traceparent": f"00-{CALLER_TRACE_ID}-00f067aa0ba902b7-01"},
        )
        assert response.status_code == 202, response.text

        description = await workflow_handle(temporal, response.json()["id"]).describe()
        assert await description.static_summary() == (
            f"Transfer 25.50 EUR from {body['source_account_id']} to {body['target_account_id']}"
        )
        assert await description.static_details() == f"Trace: {CALLER_TRACE_ID}"

    async def test_the_details_link_to_the_trace(
        self, settings: Settings, temporal: Client
    ) -> None:
        linked = settings.model_copy(
            update={"trace_url_template": "http://localhost:16686/trace/{trace_id}"}
        )
        async with client_of(build_app(linked, temporal_client=temporal)) as client:
            response = await client.post(
                "/v1/transfers",
                json=transfer_body(amount_minor=7, currency="JPY"),
                headers={
                    **key_header(),
                    "traceparent": f"00-{CALLER_TRACE_ID}-00f067aa0ba902b7-01",
                },
            )
        assert response.status_code == 202, response.text
        description = await workflow_handle(temporal, response.json()["id"]).describe()
        summary = await description.static_summary()
        assert summary is not None
        assert summary.startswith("Transfer 7 JPY from ")
        assert await description.static_details() == (
            f"Trace: [{CALLER_TRACE_ID}](http://localhost:16686/trace/{CALLER_TRACE_ID})"
        )

    async def test_duplicate_resumes_a_claim_released_while_it_waits(
        self, client: httpx.AsyncClient, app: FastAPI, temporal: Client
    ) -> None:
        body = transfer_body()
        headers = key_header()
        key = headers["Idempotency-Key"]
        transfer_id = await _hold_claim(app, key, body)
        duplicate = asyncio.create_task(client.post("/v1/transfers", json=body, headers=headers))
        await _until_waiting(app, key)

        # The first request failed and let go of its claim.
        async with app.state.database.sessions() as session, session.begin():
            await repository.release_idempotency_key(
                session, caller=customer_caller(), key=key, transfer_id=transfer_id
            )

        response = await duplicate
        assert response.status_code == 202, response.text
        assert "idempotency-replayed" not in response.headers
        assert response.json()["id"] == str(transfer_id)
        description = await workflow_handle(temporal, str(transfer_id)).describe()
        assert description.status == WorkflowExecutionStatus.RUNNING

    async def test_claim_of_a_dead_request_is_resumed(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        body = transfer_body()
        headers = key_header()
        claimed_id = uuid.uuid4()
        # A first request claimed the key and died: its lease has run out.
        async with app.state.database.sessions() as session, session.begin():
            await repository.claim_idempotency_key(
                session,
                caller=customer_caller(),
                key=headers["Idempotency-Key"],
                request_hash=service.request_hash(TransferCreate.model_validate(body)),
                transfer_id=claimed_id,
                ttl=service.IDEMPOTENCY_KEY_TTL,
                lease=timedelta(0),
            )

        response = await client.post("/v1/transfers", json=body, headers=headers)
        assert response.status_code == 202, response.text
        assert response.json()["id"] == str(claimed_id)
        assert "idempotency-replayed" not in response.headers

    async def test_expired_key_is_a_new_request(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        body = transfer_body()
        headers = key_header()
        first = (await client.post("/v1/transfers", json=body, headers=headers)).json()
        async with app.state.database.engine.begin() as connection:
            await connection.exec_driver_sql(
                "UPDATE idempotency_keys SET expires_at = now() - interval '1 second'"
            )

        second = await client.post("/v1/transfers", json=body, headers=headers)
        assert second.status_code == 202, second.text
        assert "idempotency-replayed" not in second.headers
        assert second.json()["id"] != first["id"]
        assert len(await _transfers_of(client, body)) == 2

    async def test_failure_releases_the_key(
        self, client: httpx.AsyncClient, app: FastAPI, settings: Settings, temporal: Client
    ) -> None:
        body = transfer_body()
        headers = key_header()
        unreachable = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
        async with client_of(build_app(unreachable)) as cut_off:
            failed = await cut_off.post("/v1/transfers", json=body, headers=headers)
        assert_problem(failed, 503, "workflow-service-unavailable")
        assert int(failed.headers["retry-after"]) > 0

        assert_problem(
            await client.post("/v1/transfers", json={**body, "amount_minor": 1}, headers=headers),
            422,
            "idempotency-key-reused",
        )
        retried = await client.post("/v1/transfers", json=body, headers=headers)
        assert retried.status_code == 202, retried.text
        assert "idempotency-replayed" not in retried.headers
        transfers = await _transfers_of(client, body)
        assert [transfer["id"] for transfer in transfers] == [retried.json()["id"]]
        assert await workflow_count(temporal, _source_query(body), expected=1) == 1
        description = await workflow_handle(temporal, retried.json()["id"]).describe()
        assert description.status == WorkflowExecutionStatus.RUNNING

    async def test_ten_identical_requests_at_once(
        self, client: httpx.AsyncClient, app: FastAPI, temporal: Client
    ) -> None:
        body = transfer_body()
        headers = key_header()

        responses = await asyncio.gather(
            *(client.post("/v1/transfers", json=body, headers=headers) for _ in range(10))
        )

        # One transfer and ten equal answers: the duplicates waited for the first.
        assert [response.status_code for response in responses] == [202] * 10
        first = responses[0].json()
        assert all(response.json() == first for response in responses)
        assert all(
            response.headers["location"] == f"/v1/transfers/{first['id']}" for response in responses
        )
        fresh = [r for r in responses if "idempotency-replayed" not in r.headers]
        assert len(fresh) == 1
        assert await count_rows(app, "transfers") == 1
        assert len(await _transfers_of(client, body)) == 1
        assert await workflow_count(temporal, _source_query(body), expected=1) == 1

    async def test_keys_are_kept_at_least_a_day(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        await client.post("/v1/transfers", json=transfer_body(), headers=key_header())
        async with app.state.database.engine.connect() as connection:
            kept = await connection.exec_driver_sql(
                "SELECT expires_at - created_at FROM idempotency_keys"
            )
            assert kept.scalar_one() >= timedelta(hours=24)

    def test_keys_cannot_be_configured_shorter_than_a_day(self, settings: Settings) -> None:
        with pytest.raises(ValidationError):
            Settings.model_validate({**settings.model_dump(), "idempotency_key_ttl_seconds": 3600})

    async def test_keys_are_scoped_to_the_caller(
        self, app: FastAPI, client: httpx.AsyncClient, accounts: FakeAccounts
    ) -> None:
        # Alice and Bob each send a transfer from their own account with the same key.
        bobs = transfer_body(source_account_id=accounts.own(str(uuid.uuid4()), BOB))
        alices = transfer_body()
        headers = key_header("shared-key")

        alice = await client.post("/v1/transfers", json=alices, headers=headers)
        bob = await client.post("/v1/transfers", json=bobs, headers={**headers, **customer(BOB)})
        alice_again = await client.post("/v1/transfers", json=alices, headers=headers)

        assert alice.status_code == bob.status_code == alice_again.status_code == 202
        assert alice.json()["id"] != bob.json()["id"]
        assert "idempotency-replayed" not in alice.headers
        assert "idempotency-replayed" not in bob.headers
        assert alice_again.headers["idempotency-replayed"] == "true"
        assert alice_again.json()["id"] == alice.json()["id"]
        assert await count_rows(app, "transfers") == 2


class TestCreateTransferValidation:
    """Malformed bodies answer 422 and leave no trace: no row, no key, no workflow."""

    @pytest.mark.parametrize(
        "overrides",
        [
            pytest.param({"amount_minor": 12.5}, id="float-amount"),
            pytest.param({"amount_minor": 1250.0}, id="float-amount-integral"),
            pytest.param({"amount_minor": "1250"}, id="string-amount"),
            pytest.param({"amount_minor": 0}, id="zero-amount"),
            pytest.param({"amount_minor": -5}, id="negative-amount"),
            pytest.param({"amount_minor": 10**16}, id="amount-too-large"),
            pytest.param({"currency": "XXX"}, id="unknown-currency"),
            pytest.param({"currency": "eur"}, id="lower-case-currency"),
            pytest.param({"status": "completed"}, id="unknown-field-status"),
            pytest.param({"fraud_score": 0}, id="unknown-field-fraud-score"),
            pytest.param({"description": "x" * 141}, id="description-too-long"),
            pytest.param({"source_account_id": "not-a-uuid"}, id="malformed-account"),
            pytest.param({"metadata": {f"k{n}": "v" for n in range(21)}}, id="metadata-too-big"),
        ],
    )
    async def test_malformed(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        temporal: Client,
        overrides: dict[str, Any],
    ) -> None:
        body = transfer_body(**overrides)
        headers = key_header()

        problem = assert_problem(
            await client.post("/v1/transfers", json=body, headers=headers), 422, "invalid-request"
        )

        assert problem["errors"]
        assert await count_rows(app, "transfers") == 0
        assert await count_rows(app, "idempotency_keys") == 0
        if overrides.get("source_account_id") != "not-a-uuid":
            # A valid transfer from the same account afterwards is the only workflow:
            # once it is visible, a workflow started by the bad request would be too.
            valid = transfer_body(source_account_id=body["source_account_id"])
            accepted = await client.post("/v1/transfers", json=valid, headers=headers)
            assert accepted.status_code == 202, accepted.text
            assert await workflow_count(temporal, _source_query(body), expected=1) == 1

    async def test_missing_field(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        body = transfer_body()
        del body["currency"]
        response = await client.post("/v1/transfers", json=body, headers=key_header())
        assert_problem(response, 422, "invalid-request")
        assert await count_rows(app, "transfers") == 0
