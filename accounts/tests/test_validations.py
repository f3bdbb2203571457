"""POST /v1/ledger/validations: may this transfer go ahead? Reads only; funds are the hold's."""

import uuid
from typing import Any

import pytest

from accounts.tests.helpers import Bank, set_status
from kit.testing import assert_problem


def validation(source: str, target: str, amount_minor: int = 100, **changes: Any) -> dict[str, Any]:
    return {
        "transfer_id": str(uuid.uuid4()),
        "source_account_id": source,
        "target_account_id": target,
        "amount_minor": amount_minor,
        "currency": "EUR",
        **changes,
    }


class TestValidateTransfer:
    async def test_valid(self, bank: Bank) -> None:
        source = await bank.funded_account(1000)
        target = await bank.open_account(customer_id="bob")
        body = validation(source["id"], target["id"])
        response = await bank.validate(body)
        assert response.status_code == 200, response.text
        # The owners of both sides, so the saga can tell both customers.
        assert response.json() == {
            "transfer_id": body["transfer_id"],
            "valid": True,
            "source_customer_id": "customer-1",
            "target_customer_id": "bob",
        }

    async def test_funds_are_not_checked(self, bank: Bank) -> None:
        """The hold checks funds under a lock; a check here could be stale by then."""
        source, target = await bank.open_account(), await bank.open_account()
        body = validation(source["id"], target["id"], amount_minor=10**9)
        response = await bank.validate(body)
        assert response.status_code == 200, response.text

    async def test_changes_nothing(self, bank: Bank) -> None:
        source, target = await bank.funded_account(1000), await bank.open_account()
        await bank.validate(validation(source["id"], target["id"]))
        assert (await bank.balances(source["id"]))["available_minor"] == 1000
        assert (await bank.balances(target["id"]))["credits_pending_minor"] == 0

    @pytest.mark.parametrize("side", ["source_account_id", "target_account_id"])
    async def test_account_not_found(self, bank: Bank, side: str) -> None:
        source, target = await bank.open_account(), await bank.open_account()
        missing = str(uuid.uuid4())
        body = validation(source["id"], target["id"]) | {side: missing}
        response = await bank.validate(body)
        assert assert_problem(response, 404, "account-not-found")["account_id"] == missing

    # The source side matters to the transfers front door: it checks only ownership (and
    # remembers it), so a frozen or closed source account is refused here, by the saga.
    @pytest.mark.parametrize("side", ["source", "target"])
    @pytest.mark.parametrize("status", ["frozen", "closed"])
    async def test_account_not_active(
        self, bank: Bank, database_url: str, status: str, side: str
    ) -> None:
        accounts = {"source": await bank.funded_account(1000), "target": await bank.open_account()}
        await set_status(database_url, accounts[side]["id"], status)
        response = await bank.validate(
            validation(accounts["source"]["id"], accounts["target"]["id"])
        )
        problem = assert_problem(response, 409, "account-not-active")
        assert problem["account_id"] == accounts[side]["id"]

    async def test_currency_mismatch(self, bank: Bank) -> None:
        source = await bank.funded_account(1000)
        target = await bank.open_account(currency="GBP")
        response = await bank.validate(validation(source["id"], target["id"]))
        assert_problem(response, 422, "currency-mismatch")
        other = await bank.open_account()
        response = await bank.validate(
            validation(source["id"], other["id"], currency="USD"),
        )
        assert_problem(response, 422, "currency-mismatch")

    async def test_same_account(self, bank: Bank) -> None:
        source = await bank.funded_account(1000)
        response = await bank.validate(validation(source["id"], source["id"]))
        assert_problem(response, 422, "same-account")

    async def test_transfer_limit_exceeded(self, bank: Bank) -> None:
        source = await bank.funded_account(1000, max_transfer_amount_minor=500)
        target = await bank.open_account()
        within = validation(source["id"], target["id"], amount_minor=500)
        assert (await bank.validate(within)).status_code == 200
        beyond = validation(source["id"], target["id"], amount_minor=501)
        response = await bank.validate(beyond)
        assert_problem(response, 422, "transfer-limit-exceeded")

    async def test_malformed(self, bank: Bank) -> None:
        source, target = await bank.open_account(), await bank.open_account()
        for changes in ({"amount_minor": 0}, {"currency": "EURO"}, {"transfer_id": "t-1"}):
            body = validation(source["id"], target["id"], **changes)
            response = await bank.validate(body)
            assert_problem(response, 422, "invalid-request")


class TestValidateDailyOutflow:
    async def test_what_was_sent_today_counts(self, bank: Bank) -> None:
        source = await bank.funded_account(1000, daily_outflow_limit_minor=300)
        target = await bank.open_account(customer_id="bob")
        await bank.placed_hold(source["id"], target["id"], 200)
        over = validation(source["id"], target["id"], amount_minor=101)
        response = await bank.validate(over)
        assert_problem(response, 409, "daily-outflow-limit-exceeded")
        within = validation(source["id"], target["id"], amount_minor=100)
        assert (await bank.validate(within)).status_code == 200
