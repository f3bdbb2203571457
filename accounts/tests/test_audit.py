"""The accounts service's audit trail: every privileged change writes one event, in the
same transaction, with who did it and what changed; a refused change writes none."""

import json
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from accounts.config import BootstrapClient, Settings
from accounts.ledger import service
from accounts.ledger.rules import expiry_void_id
from accounts.resources import AccountsResources
from accounts.tests.helpers import Bank, Clock, accounts_app, raw_connection
from contracts.auth import OPERATOR_SCOPES, WORKER_SCOPES
from kit.resources import resources_of
from kit.testing import TestIssuer, app_client, assert_problem

AUDIT = "/v1/admin/audit-events"


async def events(client: httpx.AsyncClient, **filters: str) -> list[dict[str, Any]]:
    """Every audit event matching `filters`, oldest first (as an operator reads them)."""
    response = await client.get(AUDIT, params={"limit": 500, **filters})
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["next_cursor"] is None, "more events than one page"
    items: list[dict[str, Any]] = page["items"]
    return items


async def actions(client: httpx.AsyncClient) -> list[str]:
    return [event["action"] for event in await events(client)]


class TestHoldExpiry:
    """A hold past its deadline is released by the ledger itself (the sweeper, or a
    transfer on its accounts): an audited step, once per hold, naming the customer transfer
    of a saga's hold."""

    async def test_the_sweeper_audits_each_release_once(
        self, bank: Bank, client: httpx.AsyncClient, app: FastAPI, clock: Clock
    ) -> None:
        alice = await bank.funded_account(1000)
        bob = await bank.open_account(customer_id="bob")
        transfer_id = str(uuid.uuid4())
        hold_id = await bank.placed_hold(
            alice["id"], bob["id"], 300, timeout_seconds=60, reference=f"transfer:{transfer_id}"
        )
        clock.advance(60)
        database = resources_of(app, AccountsResources).ledger
        assert await service.sweep_expired_holds(database, now=clock.now, batch_size=10) == 1
        assert await service.sweep_expired_holds(database, now=clock.now, batch_size=10) == 0

        (event,) = await events(client, action="ledger.hold_expired")
        assert event["actor_type"] == "system"
        assert event["actor_id"] == "system:ledger-hold-expiry"
        assert event["transfer_id"] == transfer_id
        assert event["subject_id"] == hold_id
        assert event["account_ids"] == [alice["id"], bob["id"]]
        assert event["outcome"] == "released"
        assert event["after"]["amount_minor"] == 300
        assert event["after"]["void_id"] == str(expiry_void_id(uuid.UUID(hold_id)))
        # Found from the customer transfer, as `sagabank audit --transfer` asks, after the
        # hold's own creation.
        found = await events(client, transfer_id=transfer_id)
        assert [each["action"] for each in found] == ["ledger_transfer.created", event["action"]]
        assert found[-1]["id"] == event["id"]

    async def test_a_release_on_the_way_is_audited_too(
        self, bank: Bank, client: httpx.AsyncClient, clock: Clock
    ) -> None:
        alice = await bank.funded_account(1000)
        bob = await bank.open_account(customer_id="bob")
        hold_id = await bank.placed_hold(alice["id"], bob["id"], 300, timeout_seconds=60)
        clock.advance(60)
        # A transfer on Alice's account releases her expired hold in its own transaction.
        assert (await bank.single_phase(alice["id"], bob["id"], 1)).status_code == 201

        (event,) = await events(client, action="ledger.hold_expired")
        assert event["subject_id"] == hold_id
        assert event["transfer_id"] is None


class TestAccountEvents:
    async def test_opened_by_a_customer(self, bank: Bank, client: httpx.AsyncClient) -> None:
        account = await bank.open_account(customer_id="customer-1", max_transfer_amount_minor=50)

        (event,) = await events(client, action="account.created")

        assert event["service"] == "accounts"
        assert (event["actor_id"], event["actor_type"]) == ("customer-1", "customer")
        assert (event["subject_type"], event["subject_id"]) == ("account", account["id"])
        assert event["account_ids"] == [account["id"]]
        assert event["outcome"] == "succeeded"
        assert event["before"] is None
        assert event["after"] == {
            "customer_id": "customer-1",
            "currency": "EUR",
            "balance_rule": "debits_must_not_exceed_credits",
            "max_transfer_amount_minor": 50,
            "daily_outflow_limit_minor": None,
            "overdraft_limit_minor": None,
        }

    async def test_opened_by_an_operator(self, client: httpx.AsyncClient) -> None:
        registered = await client.post(
            "/v1/customers", json={"email": "ola@example.com", "password": "a long passphrase"}
        )
        customer_id = registered.json()["id"]
        await client.post("/v1/accounts", json={"customer_id": customer_id, "currency": "EUR"})

        (event,) = await events(client, action="account.created")

        assert (event["actor_id"], event["actor_type"]) == ("operator-1", "operator")
        assert event["after"]["customer_id"] == customer_id

    async def test_the_request_id_is_recorded(self, bank: Bank, client: httpx.AsyncClient) -> None:
        account = await bank.open_account()
        await client.post(
            f"/v1/accounts/{account['id']}/freeze", headers={"X-Request-ID": "req-freeze-1"}
        )
        (event,) = await events(client, action="account.frozen")
        assert event["request_id"] == "req-freeze-1"

    @pytest.mark.parametrize(
        ("actions_taken", "action", "before", "after"),
        [
            (["freeze"], "account.frozen", "active", "frozen"),
            (["freeze", "unfreeze"], "account.unfrozen", "frozen", "active"),
            (["close"], "account.closed", "active", "closed"),
        ],
        ids=["freeze", "unfreeze", "close"],
    )
    async def test_status_changes(
        self,
        bank: Bank,
        client: httpx.AsyncClient,
        actions_taken: list[str],
        action: str,
        before: str,
        after: str,
    ) -> None:
        account = await bank.open_account()
        for taken in actions_taken:
            assert (await bank.status_action(account["id"], taken)).status_code == 200
        (event,) = await events(client, action=action)
        assert (event["actor_id"], event["actor_type"]) == ("operator-1", "operator")
        assert event["subject_id"] == account["id"]
        assert (event["before"], event["after"]) == ({"status": before}, {"status": after})

    async def test_a_status_it_already_has_records_nothing(
        self, bank: Bank, client: httpx.AsyncClient
    ) -> None:
        account = await bank.open_account()
        await bank.status_action(account["id"], "freeze")
        await bank.status_action(account["id"], "freeze")
        await bank.status_action(account["id"], "unfreeze")
        await bank.status_action(account["id"], "unfreeze")
        assert await actions(client) == [
            "signing_key.activated",
            "account.created",
            "account.frozen",
            "account.unfrozen",
        ]

    async def test_limits_changed(self, bank: Bank, client: httpx.AsyncClient) -> None:
        account = await bank.open_account(max_transfer_amount_minor=100)
        await bank.limits(
            account["id"], daily_outflow_limit_minor=500, max_transfer_amount_minor=None
        )
        await bank.limits(account["id"], daily_outflow_limit_minor=500)  # no change: no event

        (event,) = await events(client, action="account.limits_changed")

        assert event["before"] == {
            "max_transfer_amount_minor": 100,
            "daily_outflow_limit_minor": None,
            "overdraft_limit_minor": None,
        }
        assert event["after"] == {
            "max_transfer_amount_minor": None,
            "daily_outflow_limit_minor": 500,
            "overdraft_limit_minor": None,
        }


class TestMoneyEvents:
    async def test_deposit_and_withdrawal(self, bank: Bank, client: httpx.AsyncClient) -> None:
        account = await bank.open_account()
        deposit = (await bank.deposit(account["id"], 700, reference="salary")).json()
        withdrawal = (await bank.withdraw(account["id"], 200)).json()
        system_id = deposit["debit_account_id"]

        (deposited,) = await events(client, action="deposit.created")
        (withdrawn,) = await events(client, action="withdrawal.created")

        assert (deposited["actor_id"], deposited["actor_type"]) == ("operator-1", "operator")
        assert deposited["account_ids"] == [account["id"], system_id]
        assert deposited["after"] == {
            "ledger_transfer_id": deposit["id"],
            "amount_minor": 700,
            "currency": "EUR",
            "reference": "salary",
        }
        assert withdrawn["after"]["ledger_transfer_id"] == withdrawal["id"]
        assert withdrawn["after"]["amount_minor"] == 200
        # Found by account, as an auditor asks.
        by_account = await events(client, account_id=account["id"])
        assert [event["action"] for event in by_account] == [
            "account.created",
            "deposit.created",
            "withdrawal.created",
        ]

    async def test_a_retried_deposit_is_recorded_once(
        self, bank: Bank, client: httpx.AsyncClient
    ) -> None:
        account = await bank.open_account()
        first = await bank.deposit(account["id"], 300, key="payroll-2026-11")
        again = await bank.deposit(account["id"], 300, key="payroll-2026-11")
        assert (first.status_code, again.status_code) == (201, 200)
        assert len(await events(client, action="deposit.created")) == 1

    async def test_every_ledger_posting_is_audited_once(
        self, bank: Bank, client: httpx.AsyncClient
    ) -> None:
        """Every ledger write names who made it (issue 15), single or batched; a replay
        writes no second event (test_least_privilege checks the events' fields)."""
        alice = await bank.funded_account(1000)
        bob = await bank.open_account(customer_id="bob")
        hold = await bank.placed_hold(alice["id"], bob["id"], 100)
        post_id = str(uuid.uuid4())
        assert (await bank.post(hold, id=post_id)).status_code == 201
        await bank.batch(
            {
                "kind": "single_phase",
                "debit_account_id": alice["id"],
                "credit_account_id": bob["id"],
                "amount_minor": 1,
                "currency": "EUR",
            }
        )
        replayed = await bank.post(hold, id=post_id)
        assert replayed.status_code == 200, replayed.text
        assert await actions(client) == [
            "signing_key.activated",
            "account.created",
            "deposit.created",
            "account.created",
            "ledger_transfer.created",
            "ledger_transfer.created",
            "ledger_transfer.created",
        ]


class TestRefusedChangesWriteNothing:
    async def test_refused(self, bank: Bank, client: httpx.AsyncClient) -> None:
        account = await bank.funded_account(100, overdraft_limit_minor=100)
        other = await bank.open_account(customer_id="bob")
        await bank.single_phase(account["id"], other["id"], 150)
        recorded = await actions(client)

        assert_problem(await bank.withdraw(account["id"], 10**6), 409, "insufficient-funds")
        assert_problem(await bank.status_action(account["id"], "close"), 409, "account-not-empty")
        assert_problem(
            await bank.limits(account["id"], overdraft_limit_minor=10), 409, "overdraft-in-use"
        )
        assert_problem(
            await bank.status_action(str(uuid.uuid4()), "freeze"), 404, "account-not-found"
        )
        await bank.status_action(other["id"], "freeze")
        assert_problem(await bank.deposit(other["id"], 5), 409, "account-not-active")
        response = await client.post(
            "/v1/accounts", json={"customer_id": str(uuid.uuid4()), "currency": "EUR"}
        )
        assert_problem(response, 422, "unknown-customer")
        body = {"email": "dup@example.com", "password": "a long passphrase"}
        assert (await client.post("/v1/customers", json=body)).status_code == 201
        assert_problem(await client.post("/v1/customers", json=body), 409, "customer-exists")

        assert await actions(client) == [*recorded, "account.frozen", "customer.registered"]


class TestCustomerRegistered:
    async def test_valid(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/v1/customers",
            json={"email": "Nia@Example.com", "password": "a long passphrase"},
        )
        customer_id = response.json()["id"]
        (event,) = await events(client, action="customer.registered")
        assert (event["actor_id"], event["actor_type"]) == (customer_id, "customer")
        assert event["after"] == {"email": "nia@example.com", "display_name": None}
        assert "a long passphrase" not in json.dumps(event)


class TestStartupEvents:
    async def test_clients_and_the_signing_key(
        self, settings: Settings, clock: Clock, issuer: TestIssuer
    ) -> None:
        operator = BootstrapClient.model_validate(
            {
                "client_id": "operator",
                "client_secret": "operator-secret-for-audit",
                "kind": "operator",
                "scopes": sorted(OPERATOR_SCOPES),
            }
        )
        worker = BootstrapClient.model_validate(
            {
                "client_id": "sagabank-worker",
                "client_secret": "worker-secret-for-audit",
                "kind": "service",
                "scopes": sorted(WORKER_SCOPES),
            }
        )
        changed_operator = BootstrapClient.model_validate(
            {**operator.model_dump(), "client_secret": "operator-secret-rotated"}
        )
        for clients in ([operator, worker], [operator, worker], [changed_operator]):
            configured = settings.model_copy(update={"bootstrap_clients": clients})
            app = accounts_app(configured, clock=clock, token_verifier=issuer.verifier)
            async with app_client(app) as client:
                client.headers.update(issuer.operator())
                recorded = await events(client)

        assert [(event["action"], event["subject_id"]) for event in recorded] == [
            ("signing_key.activated", recorded[0]["subject_id"]),
            ("client.registered", "operator"),
            ("client.registered", "sagabank-worker"),
            # The second start changed nothing and recorded nothing.
            ("client.secret_changed", "operator"),
            ("client.disabled", "sagabank-worker"),
        ]
        assert {event["actor_type"] for event in recorded} == {"system"}
        assert recorded[1]["after"] == {"kind": "operator", "scopes": sorted(OPERATOR_SCOPES)}
        assert "operator-secret" not in json.dumps(recorded)


class TestAuditEndpoints:
    @pytest.mark.parametrize("suffix", ["", "/verify", "/export"])
    async def test_customer(
        self, client: httpx.AsyncClient, issuer: TestIssuer, suffix: str
    ) -> None:
        response = await client.get(f"{AUDIT}{suffix}", headers=issuer.customer("customer-1"))
        assert_problem(response, 403, "insufficient-scope")

    async def test_verify_and_export(self, bank: Bank, client: httpx.AsyncClient) -> None:
        account = await bank.funded_account(100)
        await bank.status_action(account["id"], "freeze")
        verification = (await client.get(f"{AUDIT}/verify")).json()
        assert verification["ok"] is True
        assert verification["events_checked"] == len(await events(client))
        export = await client.get(f"{AUDIT}/export")
        lines = [json.loads(line) for line in export.text.splitlines()]
        assert [line["action"] for line in lines] == await actions(client)

    async def test_a_rewritten_event_is_named(
        self, bank: Bank, client: httpx.AsyncClient, database_url: str
    ) -> None:
        account = await bank.funded_account(100)
        await bank.status_action(account["id"], "freeze")
        (deposit,) = await events(client, action="deposit.created")
        async with raw_connection(database_url) as connection:
            # As a superuser, past the append-only trigger.
            await connection.execute("SET session_replication_role = replica")
            await connection.execute(
                "UPDATE audit_events SET after = jsonb_set(after, '{amount_minor}', '1')"
                " WHERE id = $1",
                uuid.UUID(deposit["id"]),
            )
        verification = (await client.get(f"{AUDIT}/verify")).json()
        assert verification["ok"] is False
        assert verification["first_broken_event_id"] == deposit["id"]

    async def test_the_trigger_refuses_changes(self, bank: Bank, database_url: str) -> None:
        await bank.open_account()
        async with raw_connection(database_url) as connection:
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await connection.execute("DELETE FROM audit_events")
