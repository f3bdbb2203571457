"""Least privilege in tokens (issue 15): each service its own audience, a token carries the
audiences its scopes need; the saga's worker writes to the ledger only the holds, posts and
voids of customer transfers; every ledger write is audited with its actor."""

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from jose import jwt

from accounts.config import BootstrapClient, Settings
from accounts.tests.helpers import Bank, Clock, accounts_app
from contracts.auth import OPERATOR_SCOPES, WORKER_SCOPES
from kit.testing import app_client, assert_problem

TOKEN = "/v1/oauth/token"
PASSWORD = "correct horse battery staple"
ACCOUNTS = "sagabank:accounts"
TRANSACTIONS = "sagabank:transactions"
FRAUD = "sagabank:fraud"
NOTIFICATIONS = "sagabank:notifications"
EVERY_SERVICE = [ACCOUNTS, FRAUD, NOTIFICATIONS, TRANSACTIONS]


def client(client_id: str, kind: str, scopes: list[str]) -> BootstrapClient:
    return BootstrapClient.model_validate(
        {
            "client_id": client_id,
            "client_secret": f"{client_id}-secret-for-tests",
            "kind": kind,
            "scopes": scopes,
        }
    )


CLIENTS = [
    client("operator", "operator", sorted(OPERATOR_SCOPES)),
    client("sagabank-worker", "service", sorted(WORKER_SCOPES)),
    client("fraud-only", "service", ["fraud:score"]),
]


@pytest.fixture
async def http(settings: Settings, clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    """The service as it runs: it verifies the tokens it issues with its own keys."""
    app = accounts_app(settings.model_copy(update={"bootstrap_clients": CLIENTS}), clock=clock)
    async with app_client(app) as http:
        yield http


async def issued(http: httpx.AsyncClient, **form: str) -> dict[str, Any]:
    response = await http.post(TOKEN, data=form)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def service_token(http: httpx.AsyncClient, client_id: str, **form: str) -> str:
    body = await issued(
        http,
        grant_type="client_credentials",
        client_id=client_id,
        client_secret=f"{client_id}-secret-for-tests",
        **form,
    )
    token: str = body["access_token"]
    return token


def audiences(token: str) -> Any:
    return jwt.get_unverified_claims(token)["aud"]


class TestAudiences:
    async def test_a_token_names_exactly_the_services_its_scopes_need(
        self, http: httpx.AsyncClient
    ) -> None:
        email = "ada@example.com"
        registered = await http.post("/v1/customers", json={"email": email, "password": PASSWORD})
        assert registered.status_code == 201, registered.text
        login = {"grant_type": "password", "username": email, "password": PASSWORD}

        customer = await issued(http, **login)
        assert audiences(customer["access_token"]) == [ACCOUNTS, NOTIFICATIONS, TRANSACTIONS]
        reader = await issued(http, **login, scope="transfers:read")
        assert audiences(reader["access_token"]) == [TRANSACTIONS]
        # A refresh narrowed to one scope names only that scope's service.
        refreshed = await issued(
            http,
            grant_type="refresh_token",
            refresh_token=customer["refresh_token"],
            scope="accounts:read",
        )
        assert audiences(refreshed["access_token"]) == [ACCOUNTS]

        assert audiences(await service_token(http, "sagabank-worker")) == EVERY_SERVICE
        assert audiences(await service_token(http, "operator")) == EVERY_SERVICE
        assert audiences(await service_token(http, "fraud-only")) == [FRAUD]
        narrowed = await service_token(http, "sagabank-worker", scope="fraud:score")
        assert audiences(narrowed) == [FRAUD]

    async def test_a_token_minted_for_fraud_alone_is_refused_by_accounts(
        self, http: httpx.AsyncClient
    ) -> None:
        for token in (
            await service_token(http, "fraud-only"),
            await service_token(http, "sagabank-worker", scope="fraud:score"),
        ):
            response = await http.get(
                f"/v1/ledger/transfers/{uuid.uuid4()}",
                headers={"Authorization": f"Bearer {token}"},
            )
            assert_problem(response, 401, "unauthorized")

    async def test_a_token_for_accounts_is_accepted(self, http: httpx.AsyncClient) -> None:
        token = await service_token(http, "sagabank-worker", scope="ledger:write")
        response = await http.get(
            f"/v1/ledger/transfers/{uuid.uuid4()}", headers={"Authorization": f"Bearer {token}"}
        )
        assert_problem(response, 404, "ledger-transfer-not-found")


def reference() -> str:
    return f"transfer:{uuid.uuid4()}"


async def as_worker(bank: Bank, kind: str, **fields: Any) -> httpx.Response:
    body = {"id": str(uuid.uuid4()), "kind": kind, **fields}
    return await bank.client.post("/v1/ledger/transfers", json=body, headers=bank.worker)


class TestTheWorkersLedgerWrites:
    """The worker's client (ledger:write) may hold, post and void for a customer transfer
    (a `transfer:<id>` reference); every other ledger write needs accounts:admin."""

    @pytest.mark.parametrize(
        ("kind", "fields"),
        [
            ("single_phase", {"reference": reference()}),
            ("single_phase", {}),
            ("pending", {}),
            ("pending", {"reference": "rent"}),
            ("pending", {"reference": "transfer:not-a-uuid"}),
        ],
        ids=["single-phase", "single-phase-no-reference", "hold-no-reference", "hold-other", "bad"],
    )
    async def test_refused_beyond_the_sagas_holds(
        self, bank: Bank, alice: str, bob: str, kind: str, fields: dict[str, Any]
    ) -> None:
        terms: dict[str, Any] = {"debit_account_id": alice, "credit_account_id": bob}
        terms["currency"] = "EUR"
        if kind == "pending":
            terms["timeout_seconds"] = 60
        response = await as_worker(bank, kind, **terms, amount_minor=100, **fields)
        assert_problem(response, 403, "insufficient-scope")
        assert (await bank.balances(alice))["available_minor"] == 1000

    async def test_refused_a_post_or_void_without_a_transfer_reference(
        self, bank: Bank, alice: str, bob: str
    ) -> None:
        hold_id = await bank.placed_hold(alice, bob, 100, timeout_seconds=60)
        for kind in ("post_pending", "void_pending"):
            response = await as_worker(bank, kind, pending_id=hold_id)
            assert_problem(response, 403, "insufficient-scope")
        assert (await bank.balances(alice))["debits_pending_minor"] == 100

    async def test_refused_a_batch_with_a_single_phase_transfer(
        self, bank: Bank, alice: str, bob: str
    ) -> None:
        events = [
            {
                "id": str(uuid.uuid4()),
                "kind": kind,
                "debit_account_id": alice,
                "credit_account_id": bob,
                "amount_minor": 100,
                "currency": "EUR",
                "reference": reference(),
            }
            for kind in ("pending", "single_phase")
        ]
        response = await bank.client.post(
            "/v1/ledger/transfers/batch", json={"transfers": events}, headers=bank.worker
        )
        assert_problem(response, 403, "insufficient-scope")
        assert (await bank.balances(alice))["available_minor"] == 1000

    async def test_holds_posts_and_voids_a_customer_transfer(
        self, bank: Bank, alice: str, bob: str
    ) -> None:
        terms = {"debit_account_id": alice, "credit_account_id": bob, "currency": "EUR"}
        posted_ref, voided_ref = reference(), reference()
        holds = []
        for ref in (posted_ref, voided_ref):
            hold = await as_worker(
                bank, "pending", **terms, amount_minor=100, timeout_seconds=60, reference=ref
            )
            assert hold.status_code == 201, hold.text
            holds.append(hold.json()["id"])
        post = await as_worker(bank, "post_pending", pending_id=holds[0], reference=posted_ref)
        assert post.status_code == 201, post.text
        void = await as_worker(bank, "void_pending", pending_id=holds[1], reference=voided_ref)
        assert void.status_code == 201, void.text
        assert (await bank.balances(bob))["credits_posted_minor"] == 100


class TestLedgerWritesAreAudited:
    async def test_each_ledger_write_names_its_actor(
        self, bank: Bank, app: FastAPI, alice: str, bob: str
    ) -> None:
        transfer_id = uuid.uuid4()
        hold = await as_worker(
            bank,
            "pending",
            debit_account_id=alice,
            credit_account_id=bob,
            amount_minor=100,
            currency="EUR",
            timeout_seconds=60,
            reference=f"transfer:{transfer_id}",
        )
        assert hold.status_code == 201, hold.text
        # An operator's single-phase transfer, twice: a replay writes no second event.
        single = {
            "id": str(uuid.uuid4()),
            "kind": "single_phase",
            "debit_account_id": alice,
            "credit_account_id": bob,
            "amount_minor": 50,
            "currency": "EUR",
        }
        for status in (201, 200):
            response = await bank.client.post("/v1/ledger/transfers", json=single)
            assert response.status_code == status, response.text

        response = await bank.client.get(
            "/v1/admin/audit-events", params={"action": "ledger_transfer.created", "limit": 100}
        )
        assert response.status_code == 200, response.text
        by_subject = {event["subject_id"]: event for event in response.json()["items"]}
        assert set(by_subject) == {hold.json()["id"], single["id"]}
        held = by_subject[hold.json()["id"]]
        assert (held["actor_id"], held["actor_type"]) == ("worker", "service")
        assert held["transfer_id"] == str(transfer_id)
        assert held["account_ids"] == [alice, bob]
        assert held["after"]["kind"] == "pending"
        assert held["after"]["amount_minor"] == 100
        moved = by_subject[single["id"]]
        assert (moved["actor_id"], moved["actor_type"]) == ("operator-1", "operator")
        assert moved["after"]["kind"] == "single_phase"
