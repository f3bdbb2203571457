"""Accounts: opening one, reading its balances, listing them page by page."""

import uuid

import asyncpg
import httpx
import pytest

from accounts.tests.helpers import Bank, Clock, raw_connection
from kit.testing import TestIssuer, assert_problem


class TestCreateAccount:
    async def test_valid(self, client: httpx.AsyncClient, issuer: TestIssuer) -> None:
        customer = issuer.customer("customer-7")
        response = await client.post(
            "/v1/accounts",
            json={"currency": "EUR", "max_transfer_amount_minor": 5000},
            headers=customer,
        )
        assert response.status_code == 201, response.text
        account = response.json()
        assert account["customer_id"] == "customer-7"
        assert account["kind"] == "customer"
        assert account["status"] == "active"
        assert account["max_transfer_amount_minor"] == 5000
        assert account["balances"]["available_minor"] == 0
        fetched = await client.get(f"/v1/accounts/{account['id']}", headers=customer)
        assert fetched.json() == account

    async def test_customer_accounts_cannot_overdraw(self, bank: Bank) -> None:
        account = await bank.open_account()
        assert account["debits_must_not_exceed_credits"] is True
        assert account["credits_must_not_exceed_debits"] is False

    async def test_a_customer_cannot_name_the_owner(
        self, client: httpx.AsyncClient, issuer: TestIssuer
    ) -> None:
        """The token names the owner: a customer_id in the body is refused, even one's own."""
        for owner in ("someone-else", "customer-7"):
            response = await client.post(
                "/v1/accounts",
                json={"customer_id": owner, "currency": "EUR"},
                headers=issuer.customer("customer-7"),
            )
            assert_problem(response, 422, "owner-set-by-token")
        assert (await client.get("/v1/accounts")).json()["items"] == []

    async def test_operator_opens_for_a_registered_customer(
        self, client: httpx.AsyncClient, issuer: TestIssuer
    ) -> None:
        registered = await client.post(
            "/v1/customers", json={"email": "olga@example.com", "password": "a long passphrase"}
        )
        assert registered.status_code == 201, registered.text
        customer_id = registered.json()["id"]

        response = await client.post(
            "/v1/accounts", json={"customer_id": customer_id, "currency": "EUR"}
        )

        assert response.status_code == 201, response.text
        assert response.json()["customer_id"] == customer_id
        mine = await client.get("/v1/accounts", headers=issuer.customer(customer_id))
        assert [item["id"] for item in mine.json()["items"]] == [response.json()["id"]]

    async def test_operator_must_name_a_registered_customer(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post("/v1/accounts", json={"currency": "EUR"})
        assert_problem(response, 422, "customer-id-required")
        for stranger in (str(uuid.uuid4()), "not-a-uuid"):
            response = await client.post(
                "/v1/accounts", json={"customer_id": stranger, "currency": "EUR"}
            )
            assert_problem(response, 422, "unknown-customer")
        assert (await client.get("/v1/accounts")).json()["items"] == []

    async def test_unknown_currency(self, client: httpx.AsyncClient, issuer: TestIssuer) -> None:
        response = await client.post(
            "/v1/accounts", json={"currency": "XYZ"}, headers=issuer.customer("c")
        )
        assert_problem(response, 422, "invalid-request")
        assert (await client.get("/v1/accounts")).json()["items"] == []

    async def test_lower_case_currency(self, client: httpx.AsyncClient, issuer: TestIssuer) -> None:
        response = await client.post(
            "/v1/accounts", json={"currency": "eur"}, headers=issuer.customer("c")
        )
        assert_problem(response, 422, "invalid-request")

    async def test_limit_must_be_a_positive_integer(
        self, client: httpx.AsyncClient, issuer: TestIssuer
    ) -> None:
        for limit in (0, -5, 10.5, "100"):
            response = await client.post(
                "/v1/accounts",
                json={"currency": "EUR", "max_transfer_amount_minor": limit},
                headers=issuer.customer("c"),
            )
            assert_problem(response, 422, "invalid-request")

    async def test_kind_and_flags_cannot_be_chosen(
        self, client: httpx.AsyncClient, issuer: TestIssuer
    ) -> None:
        response = await client.post(
            "/v1/accounts",
            json={"currency": "EUR", "debits_must_not_exceed_credits": False},
            headers=issuer.customer("c"),
        )
        assert_problem(response, 422, "invalid-request")


class TestGetAccount:
    async def test_valid(self, bank: Bank) -> None:
        account = await bank.funded_account(1000)
        other = await bank.open_account()
        await bank.placed_hold(account["id"], other["id"], 300)
        assert (await bank.single_phase(account["id"], other["id"], 200)).status_code == 201

        assert await bank.balances(account["id"]) == {
            "posted_minor": 800,
            "pending_minor": -300,
            "available_minor": 500,
            "debits_pending_minor": 300,
            "debits_posted_minor": 200,
            "credits_pending_minor": 0,
            "credits_posted_minor": 1000,
        }
        assert await bank.balances(other["id"]) == {
            "posted_minor": 200,
            "pending_minor": 300,
            "available_minor": 200,
            "debits_pending_minor": 0,
            "debits_posted_minor": 0,
            "credits_pending_minor": 300,
            "credits_posted_minor": 200,
        }

    async def test_unknown(self, client: httpx.AsyncClient) -> None:
        response = await client.get(f"/v1/accounts/{uuid.uuid4()}")
        assert_problem(response, 404, "account-not-found")

    async def test_malformed_id(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get("/v1/accounts/42"), 422, "invalid-request")


class TestListAccounts:
    async def test_valid(self, bank: Bank) -> None:
        opened = [await bank.open_account(customer_id="alice") for _ in range(5)]
        await bank.open_account(customer_id="bob")

        seen: list[str] = []
        cursor = None
        for _ in range(10):  # bounded: 5 accounts at 2 per page take 3 pages
            params: dict[str, str | int] = {"customer_id": "alice", "limit": 2}
            if cursor is not None:
                params["cursor"] = cursor
            response = await bank.client.get("/v1/accounts", params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            assert len(page["items"]) <= 2
            seen.extend(item["id"] for item in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(account["id"] for account in opened)
        assert len(seen) == len(set(seen))

    async def test_order_is_stable(self, bank: Bank) -> None:
        for _ in range(3):
            await bank.open_account()
        first = (await bank.client.get("/v1/accounts")).json()["items"]
        second = (await bank.client.get("/v1/accounts")).json()["items"]
        assert [item["id"] for item in first] == [item["id"] for item in second]

    async def test_without_filter_lists_system_accounts_too(self, bank: Bank) -> None:
        await bank.funded_account(100)
        items = (await bank.client.get("/v1/accounts")).json()["items"]
        assert sorted(item["kind"] for item in items) == ["customer", "system"]

    async def test_limit_is_capped(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/v1/accounts", params={"limit": 500})).status_code == 200
        response = await client.get("/v1/accounts", params={"limit": 501})
        assert_problem(response, 422, "invalid-request")
        response = await client.get("/v1/accounts", params={"limit": 0})
        assert_problem(response, 422, "invalid-request")

    async def test_invalid_cursor(self, client: httpx.AsyncClient) -> None:
        for cursor in ("not-a-cursor", "bm90fGE=", "x" * 201):
            response = await client.get("/v1/accounts", params={"cursor": cursor})
            slug = "invalid-request" if len(cursor) > 200 else "invalid-cursor"
            assert_problem(response, 422, slug)


class TestBalanceRules:
    async def test_credits_must_not_exceed_debits(self, bank: Bank) -> None:
        """A loan-like account: credited only up to what it was debited."""
        loan = await bank.open_account(
            customer_id="alice", balance_rule="credits_must_not_exceed_debits"
        )
        assert loan["credits_must_not_exceed_debits"] is True
        assert loan["debits_must_not_exceed_credits"] is False
        current = await bank.open_account(customer_id="alice")
        # Debited first (the loan pays out), then repaid, never beyond what it lent.
        assert (await bank.single_phase(loan["id"], current["id"], 500)).status_code == 201
        assert (await bank.balances(loan["id"]))["posted_minor"] == -500
        body = assert_problem(
            await bank.single_phase(current["id"], loan["id"], 501), 409, "insufficient-funds"
        )
        assert body["available_minor"] == 500
        assert (await bank.single_phase(current["id"], loan["id"], 500)).status_code == 201
        assert (await bank.balances(loan["id"]))["posted_minor"] == 0
        await bank.assert_ledger_sound()

    async def test_overdraft_limit(self, bank: Bank) -> None:
        account = await bank.funded_account(100, overdraft_limit_minor=50)
        assert account["overdraft_limit_minor"] == 50
        other = await bank.open_account(customer_id="bob")
        assert (await bank.balances(account["id"]))["available_minor"] == 150
        body = assert_problem(
            await bank.single_phase(account["id"], other["id"], 151), 409, "insufficient-funds"
        )
        assert body["available_minor"] == 150
        assert (await bank.hold(account["id"], other["id"], 120)).status_code == 201
        assert (await bank.single_phase(account["id"], other["id"], 30)).status_code == 201
        balances = await bank.balances(account["id"])
        assert (balances["posted_minor"], balances["available_minor"]) == (70, 0)
        assert_problem(
            await bank.single_phase(account["id"], other["id"], 1), 409, "insufficient-funds"
        )
        await bank.assert_ledger_sound()

    async def test_overdraft_needs_the_debit_rule(
        self, client: httpx.AsyncClient, issuer: TestIssuer
    ) -> None:
        response = await client.post(
            "/v1/accounts",
            json={
                "currency": "EUR",
                "balance_rule": "credits_must_not_exceed_debits",
                "overdraft_limit_minor": 10,
            },
            headers=issuer.customer("c"),
        )
        assert_problem(response, 422, "invalid-request")

    async def test_unknown_rule(self, client: httpx.AsyncClient, issuer: TestIssuer) -> None:
        response = await client.post(
            "/v1/accounts",
            json={"currency": "EUR", "balance_rule": "none"},
            headers=issuer.customer("c"),
        )
        assert_problem(response, 422, "invalid-request")


class TestFreezeAccount:
    async def test_valid(self, bank: Bank) -> None:
        alice = await bank.funded_account(1000)
        bob = await bank.open_account(customer_id="bob")
        response = await bank.status_action(alice["id"], "freeze")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "frozen"
        assert response.json()["balances"]["available_minor"] == 1000
        assert (await bank.account(alice["id"]))["status"] == "frozen"
        for blocked in (
            bank.single_phase(alice["id"], bob["id"], 1),
            bank.hold(alice["id"], bob["id"], 1),
            bank.single_phase(bob["id"], alice["id"], 1),
        ):
            assert_problem(await blocked, 409, "account-not-active")
        assert_problem(await bank.deposit(alice["id"], 1), 409, "account-not-active")

    async def test_open_holds_still_resolve(self, bank: Bank) -> None:
        alice = await bank.funded_account(1000)
        bob = await bank.open_account(customer_id="bob")
        hold = await bank.placed_hold(alice["id"], bob["id"], 300)
        await bank.status_action(alice["id"], "freeze")
        assert (await bank.post(hold)).status_code == 201
        assert (await bank.balances(bob["id"]))["posted_minor"] == 300

    async def test_repeat_is_harmless(self, bank: Bank) -> None:
        account = await bank.open_account()
        first = await bank.status_action(account["id"], "freeze")
        second = await bank.status_action(account["id"], "freeze")
        assert (first.status_code, second.status_code) == (200, 200)
        assert second.json() == first.json()

    async def test_unfreeze(self, bank: Bank) -> None:
        alice = await bank.funded_account(1000)
        bob = await bank.open_account(customer_id="bob")
        await bank.status_action(alice["id"], "freeze")
        response = await bank.status_action(alice["id"], "unfreeze")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "active"
        assert (await bank.single_phase(alice["id"], bob["id"], 1)).status_code == 201
        assert (await bank.status_action(alice["id"], "unfreeze")).status_code == 200

    async def test_unknown(self, client: httpx.AsyncClient) -> None:
        for action in ("freeze", "unfreeze", "close"):
            response = await client.post(f"/v1/accounts/{uuid.uuid4()}/{action}")
            assert_problem(response, 404, "account-not-found")

    async def test_system_account_is_immutable(self, bank: Bank) -> None:
        deposit = await bank.deposit((await bank.open_account())["id"], 100)
        system_id = deposit.json()["debit_account_id"]
        for action in ("freeze", "unfreeze", "close"):
            assert_problem(
                await bank.status_action(system_id, action), 409, "system-account-immutable"
            )
        assert (await bank.account(system_id))["status"] == "active"


class TestCloseAccount:
    async def test_valid(self, bank: Bank) -> None:
        account = await bank.funded_account(1000)
        assert (await bank.withdraw(account["id"], 1000)).status_code == 201
        response = await bank.status_action(account["id"], "close")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "closed"
        assert_problem(await bank.deposit(account["id"], 1), 409, "account-not-active")
        # Closing again changes nothing; nothing reopens it.
        assert (await bank.status_action(account["id"], "close")).status_code == 200
        for action in ("freeze", "unfreeze"):
            assert_problem(await bank.status_action(account["id"], action), 409, "account-closed")
        assert (await bank.account(account["id"]))["status"] == "closed"

    async def test_frozen_account_may_close(self, bank: Bank) -> None:
        account = await bank.open_account()
        await bank.status_action(account["id"], "freeze")
        assert (await bank.status_action(account["id"], "close")).json()["status"] == "closed"

    async def test_not_empty(self, bank: Bank) -> None:
        account = await bank.funded_account(1000)
        body = assert_problem(
            await bank.status_action(account["id"], "close"), 409, "account-not-empty"
        )
        assert body["posted_minor"] == 1000
        assert (await bank.account(account["id"]))["status"] == "active"

    async def test_open_holds_keep_it_open(self, bank: Bank) -> None:
        """Money on its way in or out must land somewhere: both sides of a hold count."""
        alice = await bank.funded_account(1000)
        bob = await bank.open_account(customer_id="bob")
        hold = await bank.placed_hold(alice["id"], bob["id"], 1000)
        body = assert_problem(
            await bank.status_action(alice["id"], "close"), 409, "account-not-empty"
        )
        assert body["debits_pending_minor"] == 1000
        body = assert_problem(
            await bank.status_action(bob["id"], "close"), 409, "account-not-empty"
        )
        assert body["credits_pending_minor"] == 1000
        await bank.void(hold)
        await bank.withdraw(alice["id"], 1000)
        assert (await bank.status_action(alice["id"], "close")).status_code == 200
        assert (await bank.status_action(bob["id"], "close")).status_code == 200

    async def test_an_expired_hold_does_not_keep_it_open(self, bank: Bank, clock: Clock) -> None:
        alice = await bank.funded_account(1000)
        bob = await bank.open_account(customer_id="bob")
        await bank.placed_hold(alice["id"], bob["id"], 400, timeout_seconds=5)
        clock.advance(5)
        assert (await bank.status_action(bob["id"], "close")).status_code == 200
        await bank.assert_ledger_sound()


class TestUpdateLimits:
    async def test_valid(self, bank: Bank) -> None:
        account = await bank.open_account(max_transfer_amount_minor=100)
        response = await bank.limits(
            account["id"], daily_outflow_limit_minor=500, overdraft_limit_minor=50
        )
        assert response.status_code == 200, response.text
        updated = response.json()
        # A limit left out stays as it was.
        assert updated["max_transfer_amount_minor"] == 100
        assert updated["daily_outflow_limit_minor"] == 500
        assert updated["overdraft_limit_minor"] == 50
        assert updated["balances"]["available_minor"] == 50
        assert await bank.account(account["id"]) == updated

    async def test_null_removes_a_limit(self, bank: Bank) -> None:
        account = await bank.open_account(max_transfer_amount_minor=100)
        response = await bank.limits(account["id"], max_transfer_amount_minor=None)
        assert response.json()["max_transfer_amount_minor"] is None

    async def test_new_limit_applies_to_the_next_transfer(self, bank: Bank) -> None:
        alice = await bank.funded_account(1000)
        bob = await bank.open_account(customer_id="bob")
        await bank.limits(alice["id"], max_transfer_amount_minor=10)
        assert_problem(
            await bank.single_phase(alice["id"], bob["id"], 11), 422, "transfer-limit-exceeded"
        )

    async def test_overdraft_not_allowed(self, bank: Bank) -> None:
        loan = await bank.open_account(balance_rule="credits_must_not_exceed_debits")
        response = await bank.limits(loan["id"], overdraft_limit_minor=10)
        assert_problem(response, 422, "overdraft-not-allowed")

    async def test_overdraft_in_use(self, bank: Bank) -> None:
        alice = await bank.funded_account(100, overdraft_limit_minor=100)
        bob = await bank.open_account(customer_id="bob")
        await bank.hold(alice["id"], bob["id"], 150)
        body = assert_problem(
            await bank.limits(alice["id"], overdraft_limit_minor=49), 409, "overdraft-in-use"
        )
        assert body["overdraft_used_minor"] == 50
        assert_problem(
            await bank.limits(alice["id"], overdraft_limit_minor=None), 409, "overdraft-in-use"
        )
        assert (await bank.limits(alice["id"], overdraft_limit_minor=50)).status_code == 200

    async def test_malformed(self, bank: Bank) -> None:
        account = await bank.open_account()
        for body in (
            {"max_transfer_amount_minor": 0},
            {"overdraft_limit_minor": 1.5},
            {"other": 1},
        ):
            response = await bank.client.patch(f"/v1/accounts/{account['id']}/limits", json=body)
            assert_problem(response, 422, "invalid-request")

    async def test_closed_or_system(self, bank: Bank) -> None:
        account = await bank.open_account()
        deposit = await bank.deposit(account["id"], 100)
        await bank.withdraw(account["id"], 100)
        await bank.status_action(account["id"], "close")
        assert_problem(
            await bank.limits(account["id"], max_transfer_amount_minor=5), 409, "account-closed"
        )
        system_id = deposit.json()["debit_account_id"]
        response = await bank.limits(system_id, max_transfer_amount_minor=5)
        assert_problem(response, 409, "system-account-immutable")

    async def test_unknown(self, bank: Bank) -> None:
        response = await bank.limits(str(uuid.uuid4()), max_transfer_amount_minor=5)
        assert_problem(response, 404, "account-not-found")


class TestStatement:
    async def test_valid(self, bank: Bank) -> None:
        alice = await bank.funded_account(1000)
        bob = await bank.open_account(customer_id="bob")
        hold = await bank.placed_hold(alice["id"], bob["id"], 300, reference="rent")
        await bank.post(hold, amount_minor=200)
        await bank.single_phase(bob["id"], alice["id"], 50)

        entries = await bank.statement(alice["id"])
        assert [
            (
                entry["transfer_kind"],
                entry["total"],
                entry["amount_minor"],
                entry["posted_balance_after_minor"],
                entry["pending_balance_after_minor"],
            )
            for entry in entries
        ] == [
            ("single_phase", "credits_posted", 1000, 1000, 0),
            ("pending", "debits_pending", 300, 1000, -300),
            ("post_pending", "debits_pending", -300, 1000, 0),
            ("post_pending", "debits_posted", 200, 800, 0),
            ("single_phase", "credits_posted", 50, 850, 0),
        ]
        assert entries[1]["transfer_id"] == hold
        assert entries[1]["reference"] == "rent"
        balances = await bank.balances(alice["id"])
        assert entries[-1]["posted_balance_after_minor"] == balances["posted_minor"]
        assert [entry["id"] for entry in entries] == sorted(entry["id"] for entry in entries)

    async def test_pages_are_stable_and_complete(self, bank: Bank) -> None:
        alice = await bank.funded_account(1000)
        bob = await bank.open_account(customer_id="bob")
        for _ in range(6):
            await bank.single_phase(alice["id"], bob["id"], 10)
        everything = await bank.statement(alice["id"])
        assert len(everything) == 7

        seen: list[dict[str, object]] = []
        cursor = None
        for _ in range(10):  # bounded: 7 entries at 3 per page take 3 pages
            params: dict[str, str | int] = {"limit": 3}
            if cursor is not None:
                params["cursor"] = cursor
            page = (await bank.entries(alice["id"], **params)).json()
            assert len(page["items"]) <= 3
            seen.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == everything
        assert everything[-1]["posted_balance_after_minor"] == 940

    async def test_empty(self, bank: Bank) -> None:
        account = await bank.open_account()
        page = (await bank.entries(account["id"])).json()
        assert page == {"items": [], "next_cursor": None}

    async def test_limit_is_capped(self, bank: Bank) -> None:
        account = await bank.open_account()
        assert (await bank.entries(account["id"], limit=500)).status_code == 200
        for limit in (0, 501):
            assert_problem(await bank.entries(account["id"], limit=limit), 422, "invalid-request")

    async def test_invalid_cursor(self, bank: Bank) -> None:
        account = await bank.open_account()
        for cursor in ("not-a-cursor", "ZW50cnk6eA==", "bm90fGE="):
            response = await bank.entries(account["id"], cursor=cursor)
            assert_problem(response, 422, "invalid-cursor")

    async def test_cursor_of_the_old_format(self, bank: Bank) -> None:
        # `entry:1`, as entry cursors were before kit.pagination: cursors are opaque and
        # short-lived, so one of the old shape is malformed, not silently reinterpreted.
        account = await bank.open_account()
        response = await bank.entries(account["id"], cursor="ZW50cnk6MQ==")
        assert_problem(response, 422, "invalid-cursor")

    async def test_unknown(self, bank: Bank) -> None:
        assert_problem(await bank.entries(str(uuid.uuid4())), 404, "account-not-found")


class TestOwnerNeverChanges:
    """Other services remember a confirmed owner (transactions' front door): the database
    itself refuses to give an account another owner, whatever code or operator asks."""

    async def test_changing_the_owner_is_refused(self, bank: Bank, database_url: str) -> None:
        account = await bank.open_account(customer_id="customer-1")
        async with raw_connection(database_url) as connection:
            with pytest.raises(asyncpg.RaiseError, match="owner of an account never changes"):
                await connection.execute(
                    "UPDATE accounts SET customer_id = 'customer-2' WHERE id = $1",
                    uuid.UUID(account["id"]),
                )
            owner = await connection.fetchval(
                "SELECT customer_id FROM accounts WHERE id = $1", uuid.UUID(account["id"])
            )
        assert owner == "customer-1"

    async def test_other_columns_still_change(self, bank: Bank, database_url: str) -> None:
        account = await bank.open_account(customer_id="customer-1")
        async with raw_connection(database_url) as connection:
            # Setting the owner to itself changes nothing, so it is allowed too.
            await connection.execute(
                "UPDATE accounts SET status = 'frozen', customer_id = customer_id WHERE id = $1",
                uuid.UUID(account["id"]),
            )
