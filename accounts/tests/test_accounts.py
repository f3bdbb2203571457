"""Accounts: opening one, reading its balances, listing them page by page."""

import uuid

import httpx

from accounts.tests.helpers import Bank
from kit.testing import assert_problem


class TestCreateAccount:
    async def test_valid(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/v1/accounts",
            json={
                "customer_id": "customer-7",
                "currency": "EUR",
                "max_transfer_amount_minor": 5000,
            },
        )
        assert response.status_code == 201, response.text
        account = response.json()
        assert account["customer_id"] == "customer-7"
        assert account["kind"] == "customer"
        assert account["status"] == "active"
        assert account["max_transfer_amount_minor"] == 5000
        assert account["balances"]["available_minor"] == 0
        fetched = await client.get(f"/v1/accounts/{account['id']}")
        assert fetched.json() == account

    async def test_customer_accounts_cannot_overdraw(self, bank: Bank) -> None:
        account = await bank.open_account()
        assert account["debits_must_not_exceed_credits"] is True
        assert account["credits_must_not_exceed_debits"] is False

    async def test_unknown_currency(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/accounts", json={"customer_id": "c", "currency": "XYZ"})
        assert_problem(response, 422, "invalid-request")
        assert (await client.get("/v1/accounts")).json()["items"] == []

    async def test_lower_case_currency(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/accounts", json={"customer_id": "c", "currency": "eur"})
        assert_problem(response, 422, "invalid-request")

    async def test_limit_must_be_a_positive_integer(self, client: httpx.AsyncClient) -> None:
        for limit in (0, -5, 10.5, "100"):
            response = await client.post(
                "/v1/accounts",
                json={"customer_id": "c", "currency": "EUR", "max_transfer_amount_minor": limit},
            )
            assert_problem(response, 422, "invalid-request")

    async def test_kind_and_flags_cannot_be_chosen(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/v1/accounts",
            json={"customer_id": "c", "currency": "EUR", "debits_must_not_exceed_credits": False},
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
