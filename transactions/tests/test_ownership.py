"""Ownership and money rates: a transfer starts only from the caller's own account (the
accounts service says so before anything is created), a customer sees only the transfers
they created, and money-moving requests are counted per caller."""

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from temporalio.client import Client

from contracts.auth import PrincipalKind, Scope
from kit.testing import assert_problem
from transactions.config import Settings
from transactions.tests.support import (
    ACCOUNTS_URL,
    ALICE,
    BOB,
    ISSUER,
    FakeAccounts,
    build_app,
    client_of,
    create,
    customer,
    fingerprint,
    key_header,
    operator,
    transfer_body,
    workflow_count,
)


def _source_query(account_id: str) -> str:
    return f'SourceAccountId = "{account_id}"'


def _bobs_account(accounts: FakeAccounts) -> str:
    return accounts.own(str(uuid.uuid4()), BOB)


async def _post(
    client: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    return await client.post("/v1/transfers", json=body, headers=headers or key_header())


class TestSourceAccountOwnership:
    async def test_valid_forwards_the_callers_token(
        self, client: httpx.AsyncClient, accounts: FakeAccounts
    ) -> None:
        body = transfer_body()
        response = await _post(client, body, {**key_header(), "X-Request-ID": "req-42"})

        assert response.status_code == 202, response.text
        (asked,) = accounts.requests
        assert asked.method == "GET"
        assert str(asked.url) == f"{ACCOUNTS_URL}/v1/accounts/{body['source_account_id']}"
        # The accounts service judges the caller itself, from the caller's own token.
        assert asked.headers["authorization"] == client.headers["authorization"]
        assert asked.headers["x-request-id"] == "req-42"

    async def test_owner_is_recorded(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        created = await create(client)
        async with app.state.database.engine.connect() as connection:
            owner = await connection.execute(
                text("SELECT customer_id FROM transfers WHERE id = :id"), {"id": created["id"]}
            )
            assert owner.scalar_one() == ALICE

    async def test_foreign_account(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        accounts: FakeAccounts,
        temporal: Client,
    ) -> None:
        bobs = _bobs_account(accounts)
        before = await fingerprint(app)

        response = await _post(client, transfer_body(source_account_id=bobs))

        assert_problem(response, 404, "account-not-found")
        assert await fingerprint(app) == before
        # Nothing started: once Bob's own transfer from that account is visible in
        # Temporal, a workflow started by Alice's request would be visible too.
        own_headers = {**key_header(), **customer(BOB)}
        own = await _post(client, transfer_body(source_account_id=bobs), own_headers)
        assert own.status_code == 202, own.text
        assert await workflow_count(temporal, _source_query(bobs), expected=1) == 1

    async def test_missing_account_consumes_nothing(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        accounts: FakeAccounts,
        temporal: Client,
    ) -> None:
        account = str(uuid.uuid4())
        accounts.missing.add(account)
        body, headers = transfer_body(source_account_id=account), key_header()
        before = await fingerprint(app)

        assert_problem(await _post(client, body, headers), 404, "account-not-found")

        assert await fingerprint(app) == before
        # The key was not spent: once the account exists, the same key goes through.
        accounts.missing.discard(account)
        retried = await _post(client, body, headers)
        assert retried.status_code == 202, retried.text
        assert "idempotency-replayed" not in retried.headers
        assert await workflow_count(temporal, _source_query(account), expected=1) == 1

    async def test_foreign_and_missing_look_alike(
        self, client: httpx.AsyncClient, accounts: FakeAccounts
    ) -> None:
        missing = str(uuid.uuid4())
        accounts.missing.add(missing)
        answers = [
            (await _post(client, transfer_body(source_account_id=account))).json()
            for account in (_bobs_account(accounts), missing)
        ]
        shapes = [
            {name: value for name, value in answer.items() if name in ("type", "title", "status")}
            for answer in answers
        ]
        assert shapes[0] == shapes[1]
        assert set(answers[0]) == set(answers[1])

    @pytest.mark.parametrize("failure", ["down", "error"])
    async def test_accounts_unavailable_releases_the_key(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        accounts: FakeAccounts,
        temporal: Client,
        failure: str,
    ) -> None:
        accounts.failure = "down" if failure == "down" else "error"
        body, headers = transfer_body(), key_header()
        before = await fingerprint(app)

        response = await _post(client, body, headers)

        assert_problem(response, 503, "accounts-unavailable")
        assert int(response.headers["retry-after"]) > 0
        assert await fingerprint(app) == before
        # The key is free again: a retry (even a corrected one) with it is a new request.
        accounts.failure = None
        retried = await _post(client, {**body, "amount_minor": 1}, headers)
        assert retried.status_code == 202, retried.text
        assert "idempotency-replayed" not in retried.headers
        query = _source_query(body["source_account_id"])
        assert await workflow_count(temporal, query, expected=1) == 1

    async def test_accounts_not_configured(self, settings: Settings, temporal: Client) -> None:
        accounts = FakeAccounts()
        unset = settings.model_copy(update={"accounts_url": None})
        app = build_app(unset, temporal_client=temporal, accounts=accounts)
        async with client_of(app) as client:
            before = await fingerprint(app)
            response = await _post(client, transfer_body())
            assert_problem(response, 503, "accounts-unavailable")
            assert await fingerprint(app) == before
        assert accounts.requests == []

    async def test_token_that_cannot_read_accounts(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        # A customer may ask for a narrower token; without accounts:read the ownership of
        # the source account cannot be shown, so nothing moves.
        narrow = ISSUER.headers(ALICE, PrincipalKind.customer, {Scope.transfers_write})
        before = await fingerprint(app)
        response = await _post(client, transfer_body(), {**key_header(), **narrow})
        assert_problem(response, 403, "insufficient-scope")
        assert await fingerprint(app) == before

    async def test_batch_checks_each_item(
        self, app: FastAPI, client: httpx.AsyncClient, accounts: FakeAccounts
    ) -> None:
        missing = str(uuid.uuid4())
        accounts.missing.add(missing)
        items = [
            {**transfer_body(), "idempotency_key": "own"},
            {**transfer_body(source_account_id=_bobs_account(accounts)), "idempotency_key": "b"},
            {**transfer_body(source_account_id=missing), "idempotency_key": "missing"},
        ]
        response = await client.post("/v1/transfers/batch", json={"items": items})
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert [result["status"] for result in results] == [202, 404, 404]
        assert {result["problem"]["type"] for result in results[1:]} == {
            "urn:sagabank:problem:account-not-found"
        }
        listed = (await client.get("/v1/transfers")).json()["items"]
        assert [transfer["id"] for transfer in listed] == [results[0]["transfer"]["id"]]


class TestConfirmedOwnershipIsRemembered:
    """An account's owner never changes (the accounts database refuses it), so a confirmed
    (account, customer) pair is not asked again; a refusal is asked every time."""

    async def test_a_repeat_payer_is_not_asked_about_again(
        self, client: httpx.AsyncClient, accounts: FakeAccounts
    ) -> None:
        body = transfer_body()
        for _ in range(2):
            assert (await _post(client, body)).status_code == 202

        assert len(accounts.requests) == 1

    async def test_a_foreign_account_is_refused_on_every_attempt(
        self, app: FastAPI, client: httpx.AsyncClient, accounts: FakeAccounts
    ) -> None:
        bobs = _bobs_account(accounts)
        # Bob's own transfer confirms his ownership: that must not open the account to Alice.
        own_headers = {**key_header(), **customer(BOB)}
        assert (await _post(client, transfer_body(source_account_id=bobs), own_headers)).is_success
        before = await fingerprint(app)

        for _ in range(2):
            response = await _post(client, transfer_body(source_account_id=bobs))
            assert_problem(response, 404, "account-not-found")

        assert await fingerprint(app) == before
        assert len(accounts.requests) == 3

    async def test_a_token_without_accounts_read_is_refused_on_a_confirmed_account(
        self, app: FastAPI, client: httpx.AsyncClient, accounts: FakeAccounts
    ) -> None:
        body = transfer_body()
        assert (await _post(client, body)).status_code == 202
        narrow = ISSUER.headers(ALICE, PrincipalKind.customer, {Scope.transfers_write})
        before = await fingerprint(app)

        response = await _post(client, body, {**key_header(), **narrow})

        assert_problem(response, 403, "insufficient-scope")
        assert await fingerprint(app) == before


class TestTransferVisibility:
    async def test_customers_list_their_own_operators_all(
        self, client: httpx.AsyncClient, accounts: FakeAccounts
    ) -> None:
        alices = [await create(client) for _ in range(2)]
        bobs_body = transfer_body(source_account_id=_bobs_account(accounts))
        bobs = (await _post(client, bobs_body, {**key_header(), **customer(BOB)})).json()

        def ids(response: httpx.Response) -> list[str]:
            assert response.status_code == 200, response.text
            return [transfer["id"] for transfer in response.json()["items"]]

        assert ids(await client.get("/v1/transfers")) == [t["id"] for t in reversed(alices)]
        assert ids(await client.get("/v1/transfers", headers=customer(BOB))) == [bobs["id"]]
        everyone = ids(await client.get("/v1/transfers", headers=operator()))
        assert everyone == [bobs["id"], *(t["id"] for t in reversed(alices))]

    async def test_filters_stay_within_the_customers_own(
        self, client: httpx.AsyncClient, accounts: FakeAccounts
    ) -> None:
        # Bob pays into Alice's account: filtering by that account does not show it to her.
        alices_account = str(uuid.uuid4())
        bobs_body = transfer_body(
            source_account_id=_bobs_account(accounts), target_account_id=alices_account
        )
        assert (await _post(client, bobs_body, {**key_header(), **customer(BOB)})).is_success
        page = await client.get("/v1/transfers", params={"account_id": alices_account})
        assert page.json()["items"] == []

    async def test_operators_read_any_transfer(self, client: httpx.AsyncClient) -> None:
        created = await create(client)
        response = await client.get(f"/v1/transfers/{created['id']}", headers=operator())
        assert response.status_code == 200, response.text
        assert response.json() == created

    async def test_foreign_transfer_looks_missing(self, client: httpx.AsyncClient) -> None:
        created = await create(client)
        foreign = await client.get(f"/v1/transfers/{created['id']}", headers=customer(BOB))
        missing = await client.get(f"/v1/transfers/{uuid.uuid4()}", headers=customer(BOB))
        for response in (foreign, missing):
            assert_problem(response, 404, "transfer-not-found")
        assert set(foreign.json()) == set(missing.json())


class TestMoneyRate:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"rate_limit_money": "3/minute"})

    async def test_single_requests(
        self, app: FastAPI, client: httpx.AsyncClient, accounts: FakeAccounts
    ) -> None:
        for _ in range(3):
            assert (await _post(client, transfer_body())).status_code == 202
        before = await fingerprint(app)

        refused = await _post(client, transfer_body())

        assert_problem(refused, 429, "too-many-requests")
        assert 0 < int(refused.headers["retry-after"]) <= 60
        assert await fingerprint(app) == before
        # Counted per caller: Bob still has his own rate.
        bobs = transfer_body(source_account_id=_bobs_account(accounts))
        assert (await _post(client, bobs, {**key_header(), **customer(BOB)})).status_code == 202

    async def test_cancel_counts_too(self, client: httpx.AsyncClient) -> None:
        created = [await create(client) for _ in range(3)]
        response = await client.post(f"/v1/transfers/{created[0]['id']}/cancel")
        assert_problem(response, 429, "too-many-requests")

    async def test_batch_items_count_one_each(self, client: httpx.AsyncClient) -> None:
        items = [{**transfer_body(), "idempotency_key": f"k-{n}"} for n in range(5)]
        response = await client.post("/v1/transfers/batch", json={"items": items})
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert sorted(result["status"] for result in results) == [202, 202, 202, 429, 429]
        refused = [result for result in results if result["status"] == 429]
        for result in refused:
            assert result["problem"]["type"] == "urn:sagabank:problem:too-many-requests"
            assert result["problem"]["retry_after_seconds"] > 0
            assert result["transfer"] is None
        assert_problem(await _post(client, transfer_body()), 429, "too-many-requests")
