"""Deposits and withdrawals: money crossing the bank's edge, idempotent on Idempotency-Key."""

import uuid

from accounts.tests.helpers import Bank
from kit.testing import assert_problem


class TestDeposit:
    async def test_valid(self, bank: Bank) -> None:
        account = await bank.open_account()
        response = await bank.deposit(account["id"], 1250, key="salary-2026-11", reference="salary")
        assert response.status_code == 201, response.text
        transfer = response.json()
        assert transfer["kind"] == "single_phase"
        assert transfer["credit_account_id"] == account["id"]
        assert transfer["amount_minor"] == 1250
        assert transfer["reference"] == "salary"
        assert (await bank.balances(account["id"]))["available_minor"] == 1250

        system = await bank.account(transfer["debit_account_id"])
        assert system["kind"] == "system"
        assert system["customer_id"] is None
        assert system["currency"] == "EUR"
        assert system["balances"]["posted_minor"] == -1250
        await bank.assert_ledger_sound()

    async def test_replay(self, bank: Bank) -> None:
        account = await bank.open_account()
        first = await bank.deposit(account["id"], 1250, key="key-1")
        second = await bank.deposit(account["id"], 1250, key="key-1")
        assert first.status_code == 201
        assert second.status_code == 200
        assert second.json() == first.json()
        assert (await bank.balances(account["id"]))["posted_minor"] == 1250

    async def test_same_key_other_amount(self, bank: Bank) -> None:
        account = await bank.open_account()
        await bank.deposit(account["id"], 1250, key="key-1")
        body = assert_problem(
            await bank.deposit(account["id"], 1300, key="key-1"), 409, "ledger-transfer-exists"
        )
        assert body["field"] == "amount_minor"
        assert (await bank.balances(account["id"]))["posted_minor"] == 1250

    async def test_same_key_other_account_is_another_deposit(self, bank: Bank) -> None:
        first, second = await bank.open_account(), await bank.open_account()
        assert (await bank.deposit(first["id"], 100, key="key-1")).status_code == 201
        assert (await bank.deposit(second["id"], 100, key="key-1")).status_code == 201

    async def test_one_system_account_per_currency(self, bank: Bank) -> None:
        euro, pound = await bank.open_account(), await bank.open_account(currency="GBP")
        euro_deposits = [(await bank.deposit(euro["id"], 100)).json() for _ in range(2)]
        pound_deposit = (await bank.deposit(pound["id"], 100, currency="GBP")).json()
        assert euro_deposits[0]["debit_account_id"] == euro_deposits[1]["debit_account_id"]
        assert pound_deposit["debit_account_id"] != euro_deposits[0]["debit_account_id"]

    async def test_idempotency_key_missing(self, bank: Bank) -> None:
        account = await bank.open_account()
        response = await bank.client.post(
            f"/v1/accounts/{account['id']}/deposits",
            json={"amount_minor": 100, "currency": "EUR"},
        )
        assert_problem(response, 400, "idempotency-key-missing")
        assert (await bank.balances(account["id"]))["posted_minor"] == 0

    async def test_idempotency_key_empty(self, bank: Bank) -> None:
        # An empty header is a malformed key, as the public transfers endpoint answers it.
        account = await bank.open_account()
        response = await bank.client.post(
            f"/v1/accounts/{account['id']}/deposits",
            json={"amount_minor": 100, "currency": "EUR"},
            headers={"Idempotency-Key": ""},
        )
        assert_problem(response, 422, "invalid-request")
        assert (await bank.balances(account["id"]))["posted_minor"] == 0

    async def test_idempotency_key_too_long(self, bank: Bank) -> None:
        account = await bank.open_account()
        assert (await bank.deposit(account["id"], 100, key="k" * 255)).status_code == 201
        response = await bank.deposit(account["id"], 100, key="k" * 256)
        assert_problem(response, 422, "invalid-request")
        assert (await bank.balances(account["id"]))["posted_minor"] == 100

    async def test_currency_mismatch(self, bank: Bank) -> None:
        account = await bank.open_account()
        response = await bank.deposit(account["id"], 100, currency="USD")
        assert_problem(response, 422, "currency-mismatch")
        assert (await bank.balances(account["id"]))["posted_minor"] == 0

    async def test_unknown_account(self, bank: Bank) -> None:
        response = await bank.deposit(str(uuid.uuid4()), 100)
        assert_problem(response, 404, "account-not-found")
        assert (await bank.client.get("/v1/accounts")).json()["items"] == []

    async def test_amount_must_be_a_positive_integer(self, bank: Bank) -> None:
        account = await bank.open_account()
        for amount in (0, -1, 12.5, "100", 10**15 + 1):
            response = await bank.client.post(
                f"/v1/accounts/{account['id']}/deposits",
                json={"amount_minor": amount, "currency": "EUR"},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
            assert_problem(response, 422, "invalid-request")


class TestWithdrawal:
    async def test_valid(self, bank: Bank) -> None:
        account = await bank.funded_account(1000)
        response = await bank.withdraw(account["id"], 400, key="atm-1")
        assert response.status_code == 201, response.text
        transfer = response.json()
        assert transfer["debit_account_id"] == account["id"]
        assert (await bank.balances(account["id"]))["posted_minor"] == 600
        await bank.assert_ledger_sound()

    async def test_replay(self, bank: Bank) -> None:
        account = await bank.funded_account(1000)
        first = await bank.withdraw(account["id"], 400, key="atm-1")
        second = await bank.withdraw(account["id"], 400, key="atm-1")
        assert (first.status_code, second.status_code) == (201, 200)
        assert second.json() == first.json()
        assert (await bank.balances(account["id"]))["posted_minor"] == 600

    async def test_replay_after_balance_is_spent(self, bank: Bank) -> None:
        account = await bank.funded_account(400)
        first = await bank.withdraw(account["id"], 400, key="atm-1")
        second = await bank.withdraw(account["id"], 400, key="atm-1")
        assert second.status_code == 200
        assert second.json() == first.json()

    async def test_same_key_as_a_deposit_is_another_movement(self, bank: Bank) -> None:
        account = await bank.open_account()
        assert (await bank.deposit(account["id"], 500, key="key-1")).status_code == 201
        assert (await bank.withdraw(account["id"], 500, key="key-1")).status_code == 201
        assert (await bank.balances(account["id"]))["posted_minor"] == 0

    async def test_insufficient_funds(self, bank: Bank) -> None:
        account = await bank.funded_account(1000)
        body = assert_problem(await bank.withdraw(account["id"], 1001), 409, "insufficient-funds")
        assert body["available_minor"] == 1000
        assert (await bank.balances(account["id"]))["posted_minor"] == 1000

    async def test_holds_count(self, bank: Bank) -> None:
        account = await bank.funded_account(1000)
        await bank.placed_hold(account["id"], (await bank.open_account())["id"], 700)
        body = assert_problem(await bank.withdraw(account["id"], 301), 409, "insufficient-funds")
        assert body["available_minor"] == 300

    async def test_transfer_limit(self, bank: Bank) -> None:
        account = await bank.funded_account(1000, max_transfer_amount_minor=300)
        response = await bank.withdraw(account["id"], 301)
        assert_problem(response, 422, "transfer-limit-exceeded")

    async def test_same_key_other_reference(self, bank: Bank) -> None:
        account = await bank.funded_account(1000)
        await bank.withdraw(account["id"], 100, key="atm-1", reference="cash")
        body = assert_problem(
            await bank.withdraw(account["id"], 100, key="atm-1", reference="card"),
            409,
            "ledger-transfer-exists",
        )
        assert body["field"] == "reference"
