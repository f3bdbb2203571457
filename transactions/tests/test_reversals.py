"""POST/GET /v1/transfers/{id}/reversals and GET /v1/reversals/{id}: who may reverse what,
how much, once per key; concurrent reversals never exceed the transfer.

No worker polls the test's task queue: a reversal's saga stays at its first task, and the
tests report its steps as the worker would.
"""

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from temporalio.client import Client

from contracts.auth import PrincipalKind, Scope
from contracts.reversals import ORIGINAL_TRANSFER_ID_ATTRIBUTE, ReversalWorkflowInput
from kit.testing import assert_problem
from sagabank.localstack.postgres import free_port
from transactions.config import Settings
from transactions.tests.support import (
    BOB,
    ISSUER,
    FakeAccounts,
    build_app,
    client_of,
    count_rows,
    create,
    customer,
    fingerprint,
    operator,
    report,
    workflow_count,
)
from transactions.tests.test_reconciler import reconcile

CAROL = "c4a1e0b2-7d3f-4e8a-9b6c-5f2e1d0c3b4a"


async def completed_transfer(
    client: httpx.AsyncClient, accounts: FakeAccounts, **overrides: Any
) -> dict[str, Any]:
    """Alice's transfer to Bob's account, reported completed by its saga."""
    target_account_id = accounts.own(str(uuid.uuid4()), BOB)
    transfer = await create(client, target_account_id=target_account_id, **overrides)
    response = await report(
        client, transfer["id"], step="post", outcome="succeeded", status="completed", version=5
    )
    assert response.status_code == 200, response.text
    return transfer


async def reverse(
    client: httpx.AsyncClient,
    transfer_id: str,
    body: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
    key: str | None = None,
) -> httpx.Response:
    return await client.post(
        f"/v1/transfers/{transfer_id}/reversals",
        json={"reason": "goods returned"} if body is None else body,
        headers={**(headers or customer(BOB)), "Idempotency-Key": key or f"key-{uuid.uuid4()}"},
    )


class TestCreateReversal:
    async def test_anonymous(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            f"/v1/transfers/{uuid.uuid4()}/reversals",
            json={"reason": "x"},
            headers={"Authorization": "", "Idempotency-Key": "k"},
        )
        assert_problem(response, 401, "unauthorized")

    async def test_missing_scope(self, client: httpx.AsyncClient) -> None:
        reader = ISSUER.headers(BOB, PrincipalKind.customer, {Scope.transfers_read})
        response = await reverse(client, str(uuid.uuid4()), headers=reader)
        assert_problem(response, 403, "insufficient-scope")

    async def test_foreign_transfer_answers_as_a_missing_one(
        self, app: FastAPI, client: httpx.AsyncClient, accounts: FakeAccounts
    ) -> None:
        transfer = await completed_transfer(client, accounts)
        before = await fingerprint(app)

        response = await reverse(client, transfer["id"], headers=customer(CAROL))

        assert_problem(response, 404, "transfer-not-found")
        assert_problem(await reverse(client, str(uuid.uuid4())), 404, "transfer-not-found")
        assert await fingerprint(app) == before

    async def test_missing_idempotency_key_changes_nothing(
        self, app: FastAPI, client: httpx.AsyncClient, accounts: FakeAccounts
    ) -> None:
        transfer = await completed_transfer(client, accounts)
        before = await fingerprint(app)
        response = await client.post(
            f"/v1/transfers/{transfer['id']}/reversals",
            json={"reason": "goods returned"},
            headers=customer(BOB),
        )
        assert_problem(response, 400, "idempotency-key-missing")
        assert await fingerprint(app) == before

    @pytest.mark.parametrize(
        "body",
        [{}, {"reason": ""}, {"reason": "x", "amount_minor": 0}, {"reason": "x", "extra": 1}],
    )
    async def test_malformed_body_changes_nothing(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        accounts: FakeAccounts,
        body: dict[str, Any],
    ) -> None:
        transfer = await completed_transfer(client, accounts)
        before = await fingerprint(app)
        assert_problem(await reverse(client, transfer["id"], body), 422, "invalid-request")
        assert await fingerprint(app) == before

    async def test_only_a_completed_transfer_can_be_reversed(
        self, app: FastAPI, client: httpx.AsyncClient, accounts: FakeAccounts
    ) -> None:
        target_account_id = accounts.own(str(uuid.uuid4()), BOB)
        pending = await create(client, target_account_id=target_account_id)
        before = await fingerprint(app)

        response = await reverse(client, pending["id"])

        assert_problem(response, 409, "transfer-not-reversible")
        assert await fingerprint(app) == before

    async def test_valid_full_reversal_by_the_payee(
        self, client: httpx.AsyncClient, accounts: FakeAccounts, temporal: Client
    ) -> None:
        transfer = await completed_transfer(client, accounts, amount_minor=1250)

        response = await reverse(client, transfer["id"])

        assert response.status_code == 202, response.text
        reversal = response.json()
        assert response.headers["location"] == f"/v1/reversals/{reversal['id']}"
        assert reversal["original_transfer_id"] == transfer["id"]
        assert reversal["status"] == "pending"
        assert reversal["amount_minor"] == 1250
        # Payee back to payer.
        assert reversal["source_account_id"] == transfer["target_account_id"]
        assert reversal["target_account_id"] == transfer["source_account_id"]
        assert reversal["workflow_id"] == f"reversal-{reversal['id']}"
        query = f"{ORIGINAL_TRANSFER_ID_ATTRIBUTE} = '{transfer['id']}'"
        assert await workflow_count(temporal, query, expected=1) == 1
        # The original shows it, to its owner (Alice).
        shown = (await client.get(f"/v1/transfers/{transfer['id']}")).json()
        assert shown["reversed_minor"] == 1250
        assert shown["reversal_ids"] == [reversal["id"]]

    async def test_replayed_with_the_same_key(
        self, app: FastAPI, client: httpx.AsyncClient, accounts: FakeAccounts
    ) -> None:
        transfer = await completed_transfer(client, accounts)
        first = await reverse(client, transfer["id"], key="refund-1")
        again = await reverse(client, transfer["id"], key="refund-1")

        assert first.status_code == again.status_code == 202
        assert again.json() == first.json()
        assert again.headers["idempotency-replayed"] == "true"
        assert await count_rows(app, "transfers") == 2
        other_body = await reverse(client, transfer["id"], {"reason": "other"}, key="refund-1")
        assert_problem(other_body, 422, "idempotency-key-reused")

    async def test_operator_with_transfers_reverse(
        self, client: httpx.AsyncClient, accounts: FakeAccounts
    ) -> None:
        transfer = await completed_transfer(client, accounts)
        response = await reverse(client, transfer["id"], {"reason": "dispute"}, headers=operator())
        assert response.status_code == 202, response.text

    async def test_operator_without_transfers_reverse(
        self, client: httpx.AsyncClient, accounts: FakeAccounts
    ) -> None:
        transfer = await completed_transfer(client, accounts)
        reviewer = ISSUER.headers(
            "operator-2", PrincipalKind.operator, {Scope.transfers_read, Scope.reviews_write}
        )
        assert_problem(
            await reverse(client, transfer["id"], headers=reviewer), 403, "insufficient-scope"
        )


class TestAmounts:
    async def test_partials_add_up_to_the_transfer_then_refused(
        self, app: FastAPI, client: httpx.AsyncClient, accounts: FakeAccounts
    ) -> None:
        transfer = await completed_transfer(client, accounts, amount_minor=1000)

        first = await reverse(client, transfer["id"], {"reason": "part", "amount_minor": 600})
        assert first.status_code == 202, first.text
        too_much = await reverse(client, transfer["id"], {"reason": "part", "amount_minor": 401})
        assert_problem(too_much, 409, "reversal-exceeds-transfer")
        rest = await reverse(client, transfer["id"])
        assert rest.status_code == 202, rest.text
        assert rest.json()["amount_minor"] == 400
        before = await fingerprint(app)
        assert_problem(await reverse(client, transfer["id"]), 409, "reversal-exceeds-transfer")
        assert await fingerprint(app) == before

        listed = (await client.get(f"/v1/transfers/{transfer['id']}/reversals")).json()
        assert [item["amount_minor"] for item in listed["items"]] == [600, 400]
        shown = (await client.get(f"/v1/transfers/{transfer['id']}")).json()
        assert shown["reversed_minor"] == 1000
        page = (await client.get("/v1/transfers")).json()["items"]
        (in_list,) = [item for item in page if item["id"] == transfer["id"]]
        assert (in_list["reversed_minor"], in_list["reversal_ids"]) == (1000, shown["reversal_ids"])

    async def test_a_failed_reversal_frees_its_amount(
        self, client: httpx.AsyncClient, accounts: FakeAccounts
    ) -> None:
        transfer = await completed_transfer(client, accounts, amount_minor=1000)
        failed = (await reverse(client, transfer["id"])).json()
        response = await report(
            client,
            failed["id"],
            step="hold",
            outcome="failed",
            status="rejected",
            version=2,
            failure_reason="insufficient-funds: not enough",
        )
        assert response.status_code == 200, response.text

        again = await reverse(client, transfer["id"])

        assert again.status_code == 202, again.text
        assert again.json()["amount_minor"] == 1000
        shown = (await client.get(f"/v1/transfers/{transfer['id']}")).json()
        assert shown["reversed_minor"] == 1000
        assert len(shown["reversal_ids"]) == 2

    async def test_concurrent_reversals_never_exceed_the_transfer(
        self, app: FastAPI, client: httpx.AsyncClient, accounts: FakeAccounts
    ) -> None:
        transfer = await completed_transfer(client, accounts, amount_minor=1000)
        body = {"reason": "part", "amount_minor": 700}

        answers = await asyncio.gather(
            reverse(client, transfer["id"], body), reverse(client, transfer["id"], body)
        )

        assert sorted(answer.status_code for answer in answers) == [202, 409]
        refused = next(answer for answer in answers if answer.status_code == 409)
        assert_problem(refused, 409, "reversal-exceeds-transfer")
        shown = (await client.get(f"/v1/transfers/{transfer['id']}")).json()
        assert shown["reversed_minor"] == 700


class TestReadReversals:
    async def test_get_one_by_payee_payer_and_operator_not_others(
        self, client: httpx.AsyncClient, accounts: FakeAccounts
    ) -> None:
        transfer = await completed_transfer(client, accounts)
        reversal = (await reverse(client, transfer["id"])).json()
        path = f"/v1/reversals/{reversal['id']}"

        for headers in (customer(BOB), customer(), operator()):
            response = await client.get(path, headers=headers)
            assert response.status_code == 200, response.text
            assert response.json()["original_transfer_id"] == transfer["id"]
        assert_problem(await client.get(path, headers=customer(CAROL)), 404, "reversal-not-found")
        # A transfer is not a reversal.
        not_one = await client.get(f"/v1/reversals/{transfer['id']}")
        assert_problem(not_one, 404, "reversal-not-found")

    async def test_list_for_others_is_404(
        self, client: httpx.AsyncClient, accounts: FakeAccounts
    ) -> None:
        transfer = await completed_transfer(client, accounts)
        await reverse(client, transfer["id"])
        path = f"/v1/transfers/{transfer['id']}/reversals"
        assert len((await client.get(path, headers=customer(BOB))).json()["items"]) == 1
        assert_problem(await client.get(path, headers=customer(CAROL)), 404, "transfer-not-found")

    async def test_steps_of_a_reversal_are_audited_naming_both_transfers(
        self, client: httpx.AsyncClient, accounts: FakeAccounts
    ) -> None:
        transfer = await completed_transfer(client, accounts)
        reversal = (await reverse(client, transfer["id"])).json()
        await report(
            client, reversal["id"], step="hold", outcome="succeeded", status="pending", version=2
        )

        response = await client.get(
            "/v1/admin/audit-events", params={"transfer_id": reversal["id"]}, headers=operator()
        )

        assert response.status_code == 200, response.text
        events = {event["action"]: event for event in response.json()["items"]}
        assert set(events) >= {"transfer.reversal.requested", "transfer.reversal.hold"}
        for event in events.values():
            assert event["after"]["original_transfer_id"] == transfer["id"]
        on_the_original = await client.get(
            "/v1/admin/audit-events",
            params={"transfer_id": transfer["id"], "action": "transfer.reversal.admitted"},
            headers=operator(),
        )
        (admitted,) = on_the_original.json()["items"]
        assert admitted["after"]["reversal_id"] == reversal["id"]
        assert admitted["after"]["reversed_minor"] == transfer["amount_minor"]


class TestReconciledReversal:
    async def test_a_reversal_whose_start_failed_is_started_as_a_reversal(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        accounts: FakeAccounts,
        settings: Settings,
        temporal: Client,
    ) -> None:
        transfer = await completed_transfer(client, accounts, amount_minor=1000)
        unreachable = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
        async with client_of(build_app(unreachable, accounts=accounts)) as cut_off:
            failed = await reverse(cut_off, transfer["id"])
            assert_problem(failed, 503, "workflow-service-unavailable")
        (reversal_id,) = (await client.get(f"/v1/transfers/{transfer['id']}")).json()[
            "reversal_ids"
        ]

        assert await reconcile(app) == 1

        handle = temporal.get_workflow_handle(f"reversal-{reversal_id}")
        history = await handle.fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes
        assert started.workflow_type.name == "ReversalWorkflow"
        (arguments,) = await temporal.data_converter.decode(
            list(started.input.payloads), [ReversalWorkflowInput]
        )
        assert str(arguments.original_transfer_id) == transfer["id"]
        assert arguments.source_account_id == uuid.UUID(transfer["target_account_id"])
        assert arguments.amount_minor == 1000
        assert arguments.source_customer_id == BOB


class TestCancelReversal:
    async def test_a_reversal_cannot_be_cancelled_and_says_why(
        self, client: httpx.AsyncClient, accounts: FakeAccounts
    ) -> None:
        transfer = await completed_transfer(client, accounts)
        reversal = (await reverse(client, transfer["id"])).json()

        response = await client.post(
            f"/v1/transfers/{reversal['id']}/cancel", json={}, headers=customer(BOB)
        )

        body = assert_problem(response, 409, "transfer-not-cancellable")
        assert body["detail"] == "a reversal has no cancel: it ends by itself"
