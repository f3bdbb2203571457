"""POST /v1/ledger/transfers, one class per kind, and GET /v1/ledger/transfers/{id}."""

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from accounts.ledger.rules import expiry_void_id
from accounts.tests.helpers import Bank, Clock, set_status
from contracts.accounts import PENDING_TIMEOUT_SECONDS_MAX
from kit.testing import assert_problem


async def assert_unchanged(bank: Bank, alice: str, bob: str) -> None:
    """Alice still holds her 1000 and nothing is held or moved."""
    assert (await bank.balances(alice))["available_minor"] == 1000
    assert (await bank.balances(alice))["debits_pending_minor"] == 0
    assert (await bank.balances(bob))["credits_posted_minor"] == 0
    assert (await bank.balances(bob))["credits_pending_minor"] == 0
    await bank.assert_ledger_sound()


class TestSinglePhaseTransfer:
    async def test_valid(self, bank: Bank, alice: str, bob: str, clock: Clock) -> None:
        transfer_id = str(uuid.uuid4())
        response = await bank.single_phase(alice, bob, 250, id=transfer_id, reference="rent")
        assert response.status_code == 201, response.text
        transfer = response.json()
        assert transfer == {
            "id": transfer_id,
            "kind": "single_phase",
            "debit_account_id": alice,
            "credit_account_id": bob,
            "amount_minor": 250,
            "currency": "EUR",
            "pending_id": None,
            "timeout_seconds": None,
            "expires_at": None,
            "reference": "rent",
            "created_at": transfer["created_at"],
        }
        assert datetime.fromisoformat(transfer["created_at"]) == clock.now
        assert (await bank.balances(alice))["posted_minor"] == 750
        assert (await bank.balances(bob))["posted_minor"] == 250
        await bank.assert_ledger_sound()

    async def test_insufficient_funds(self, bank: Bank, alice: str, bob: str) -> None:
        body = assert_problem(await bank.single_phase(alice, bob, 1001), 409, "insufficient-funds")
        assert body["available_minor"] == 1000
        assert body["account_id"] == alice
        await assert_unchanged(bank, alice, bob)

    async def test_same_account(self, bank: Bank, alice: str, bob: str) -> None:
        assert_problem(await bank.single_phase(alice, alice, 1), 422, "same-account")
        await assert_unchanged(bank, alice, bob)

    async def test_account_not_found(self, bank: Bank, alice: str, bob: str) -> None:
        missing = str(uuid.uuid4())
        body = assert_problem(await bank.single_phase(alice, missing, 1), 404, "account-not-found")
        assert body["account_id"] == missing
        body = assert_problem(await bank.single_phase(missing, bob, 1), 404, "account-not-found")
        assert body["account_id"] == missing
        await assert_unchanged(bank, alice, bob)

    @pytest.mark.parametrize("status", ["frozen", "closed"])
    async def test_account_not_active(
        self, bank: Bank, alice: str, bob: str, database_url: str, status: str
    ) -> None:
        await set_status(database_url, bob, status)
        body = assert_problem(await bank.single_phase(alice, bob, 1), 409, "account-not-active")
        assert body["account_status"] == status
        await set_status(database_url, bob, "active")
        await set_status(database_url, alice, status)
        assert_problem(await bank.single_phase(alice, bob, 1), 409, "account-not-active")
        await set_status(database_url, alice, "active")
        await assert_unchanged(bank, alice, bob)

    async def test_currency_mismatch(self, bank: Bank, alice: str, bob: str) -> None:
        body = assert_problem(
            await bank.single_phase(alice, bob, 1, currency="USD"), 422, "currency-mismatch"
        )
        assert body["account_currency"] == "EUR"
        pounds: str = (await bank.open_account(currency="GBP"))["id"]
        assert_problem(await bank.single_phase(alice, pounds, 1), 422, "currency-mismatch")
        await assert_unchanged(bank, alice, bob)

    async def test_transfer_limit_exceeded(self, bank: Bank, bob: str) -> None:
        capped: str = (await bank.funded_account(1000, max_transfer_amount_minor=100))["id"]
        body = assert_problem(
            await bank.single_phase(capped, bob, 101), 422, "transfer-limit-exceeded"
        )
        assert body["max_transfer_amount_minor"] == 100
        assert (await bank.single_phase(capped, bob, 100)).status_code == 201

    @pytest.mark.parametrize(
        ("fields", "field"),
        [
            ({"amount_minor": None}, "amount_minor"),
            ({"currency": None}, "currency"),
            ({"credit_account_id": None}, "credit_account_id"),
            ({"timeout_seconds": 30}, "timeout_seconds"),
            ({"pending_id": "00000000-0000-4000-8000-000000000000"}, "pending_id"),
        ],
    )
    async def test_wrong_shape(
        self, bank: Bank, alice: str, bob: str, fields: dict[str, Any], field: str
    ) -> None:
        body = {
            "id": str(uuid.uuid4()),
            "kind": "single_phase",
            "debit_account_id": alice,
            "credit_account_id": bob,
            "amount_minor": 1,
            "currency": "EUR",
            **fields,
        }
        response = await bank.client.post("/v1/ledger/transfers", json=body, headers=bank.operator)
        problem = assert_problem(response, 422, "invalid-ledger-transfer")
        assert problem["field"] == field
        await assert_unchanged(bank, alice, bob)

    @pytest.mark.parametrize("amount", [0, -5, 2.5, "10", 10**15 + 1])
    async def test_malformed_amount(self, bank: Bank, alice: str, bob: str, amount: object) -> None:
        assert_problem(await bank.single_phase(alice, bob, amount), 422, "invalid-request")  # type: ignore[arg-type]

    async def test_unknown_field(self, bank: Bank, alice: str, bob: str) -> None:
        response = await bank.single_phase(alice, bob, 1, overdraft=True)
        assert_problem(response, 422, "invalid-request")


class TestLedgerTransferIdempotency:
    async def test_replay_returns_the_original(self, bank: Bank, alice: str, bob: str) -> None:
        transfer_id = str(uuid.uuid4())
        first = await bank.single_phase(alice, bob, 250, id=transfer_id)
        second = await bank.single_phase(alice, bob, 250, id=transfer_id)
        assert (first.status_code, second.status_code) == (201, 200)
        assert second.json() == first.json()
        assert (await bank.balances(alice))["posted_minor"] == 750

    async def test_replay_is_not_checked_again(
        self, bank: Bank, alice: str, bob: str, database_url: str
    ) -> None:
        """A retry after the money is spent or the account frozen still gets the original."""
        transfer_id = str(uuid.uuid4())
        first = await bank.single_phase(alice, bob, 1000, id=transfer_id)
        await set_status(database_url, alice, "frozen")
        second = await bank.single_phase(alice, bob, 1000, id=transfer_id)
        assert second.status_code == 200
        assert second.json() == first.json()

    @pytest.mark.parametrize(
        ("changes", "field"),
        [
            ({"amount_minor": 251}, "amount_minor"),
            ({"reference": "other"}, "reference"),
            ({"reference": None}, "reference"),
            ({"currency": "USD"}, "currency"),
        ],
    )
    async def test_same_id_other_fields(
        self, bank: Bank, alice: str, bob: str, changes: dict[str, Any], field: str
    ) -> None:
        transfer_id = str(uuid.uuid4())
        fields: dict[str, Any] = {"id": transfer_id, "reference": "rent"}
        await bank.single_phase(alice, bob, 250, **fields)
        fields |= {"amount_minor": 250, "currency": "EUR"} | changes
        body = {
            "kind": "single_phase",
            "debit_account_id": alice,
            "credit_account_id": bob,
            **fields,
        }
        response = await bank.client.post("/v1/ledger/transfers", json=body, headers=bank.operator)
        problem = assert_problem(response, 409, "ledger-transfer-exists")
        assert problem["field"] == field
        assert (await bank.balances(alice))["posted_minor"] == 750

    async def test_same_id_other_account(self, bank: Bank, alice: str, bob: str) -> None:
        carol: str = (await bank.open_account(customer_id="carol"))["id"]
        transfer_id = str(uuid.uuid4())
        await bank.single_phase(alice, bob, 250, id=transfer_id)
        response = await bank.single_phase(alice, carol, 250, id=transfer_id)
        assert assert_problem(response, 409, "ledger-transfer-exists")["field"] == (
            "credit_account_id"
        )
        assert (await bank.balances(carol))["posted_minor"] == 0

    async def test_same_id_other_kind(self, bank: Bank, alice: str, bob: str) -> None:
        transfer_id = str(uuid.uuid4())
        await bank.single_phase(alice, bob, 250, id=transfer_id)
        response = await bank.hold(alice, bob, 250, id=transfer_id)
        assert assert_problem(response, 409, "ledger-transfer-exists")["field"] == "kind"
        assert (await bank.balances(alice))["debits_pending_minor"] == 0


class TestPendingTransfer:
    async def test_valid(self, bank: Bank, alice: str, bob: str, clock: Clock) -> None:
        response = await bank.hold(alice, bob, 300, timeout_seconds=60)
        assert response.status_code == 201, response.text
        hold = response.json()
        assert hold["kind"] == "pending"
        assert hold["timeout_seconds"] == 60
        assert datetime.fromisoformat(hold["expires_at"]) == clock.now + timedelta(seconds=60)
        alice_balances = await bank.balances(alice)
        assert alice_balances["debits_pending_minor"] == 300
        assert alice_balances["posted_minor"] == 1000
        assert alice_balances["available_minor"] == 700
        assert (await bank.balances(bob))["credits_pending_minor"] == 300
        await bank.assert_ledger_sound()

    async def test_without_timeout_never_expires(self, bank: Bank, alice: str, bob: str) -> None:
        hold = (await bank.hold(alice, bob, 300)).json()
        assert hold["expires_at"] is None
        assert hold["timeout_seconds"] is None

    async def test_holds_count_against_the_balance(self, bank: Bank, alice: str, bob: str) -> None:
        await bank.placed_hold(alice, bob, 600)
        body = assert_problem(await bank.hold(alice, bob, 401), 409, "insufficient-funds")
        assert body["available_minor"] == 400
        assert (await bank.hold(alice, bob, 400)).status_code == 201

    async def test_frozen_account_takes_no_hold(
        self, bank: Bank, alice: str, bob: str, database_url: str
    ) -> None:
        await set_status(database_url, alice, "frozen")
        assert_problem(await bank.hold(alice, bob, 1), 409, "account-not-active")

    async def test_timeout_is_bounded(self, bank: Bank, alice: str, bob: str) -> None:
        # The longest: a 30-day review and a day's grace (contracts.accounts).
        assert PENDING_TIMEOUT_SECONDS_MAX == 31 * 24 * 3600
        for timeout_seconds in (0, PENDING_TIMEOUT_SECONDS_MAX + 1):
            response = await bank.hold(alice, bob, 1, timeout_seconds=timeout_seconds)
            assert_problem(response, 422, "invalid-request")


class TestPostPendingTransfer:
    async def test_valid(self, bank: Bank, alice: str, bob: str) -> None:
        hold_id = await bank.placed_hold(alice, bob, 300, reference="order-1")
        response = await bank.post(hold_id)
        assert response.status_code == 201, response.text
        post = response.json()
        assert post["kind"] == "post_pending"
        assert post["pending_id"] == hold_id
        assert post["amount_minor"] == 300
        assert (post["debit_account_id"], post["credit_account_id"]) == (alice, bob)
        assert post["currency"] == "EUR"
        alice_balances = await bank.balances(alice)
        assert alice_balances["debits_pending_minor"] == 0
        assert alice_balances["posted_minor"] == 700
        bob_balances = await bank.balances(bob)
        assert bob_balances["credits_pending_minor"] == 0
        assert bob_balances["posted_minor"] == 300
        await bank.assert_ledger_sound()

    async def test_partial_post(self, bank: Bank, alice: str, bob: str) -> None:
        hold_id = await bank.placed_hold(alice, bob, 300)
        response = await bank.post(hold_id, amount_minor=120)
        assert response.status_code == 201, response.text
        assert response.json()["amount_minor"] == 120
        alice_balances = await bank.balances(alice)
        assert alice_balances["debits_pending_minor"] == 0
        assert alice_balances["available_minor"] == 880
        assert (await bank.balances(bob))["posted_minor"] == 120
        await bank.assert_ledger_sound()

    async def test_post_amount_exceeds_pending(self, bank: Bank, alice: str, bob: str) -> None:
        hold_id = await bank.placed_hold(alice, bob, 300)
        body = assert_problem(
            await bank.post(hold_id, amount_minor=301), 409, "post-amount-exceeds-pending"
        )
        assert body["pending_amount_minor"] == 300
        assert (await bank.balances(alice))["debits_pending_minor"] == 300

    async def test_post_twice(self, bank: Bank, alice: str, bob: str) -> None:
        hold_id = await bank.placed_hold(alice, bob, 300)
        assert (await bank.post(hold_id)).status_code == 201
        assert_problem(await bank.post(hold_id), 409, "pending-transfer-already-posted")
        assert (await bank.balances(bob))["posted_minor"] == 300

    async def test_post_after_void(self, bank: Bank, alice: str, bob: str) -> None:
        hold_id = await bank.placed_hold(alice, bob, 300)
        assert (await bank.void(hold_id)).status_code == 201
        assert_problem(await bank.post(hold_id), 409, "pending-transfer-already-voided")
        await assert_unchanged(bank, alice, bob)

    async def test_expired(self, bank: Bank, alice: str, bob: str, clock: Clock) -> None:
        hold_id = await bank.placed_hold(alice, bob, 300, timeout_seconds=1)
        clock.advance(1)
        body = assert_problem(await bank.post(hold_id), 409, "pending-transfer-expired")
        assert datetime.fromisoformat(str(body["expires_at"])) == clock.now
        # Expired, the hold no longer counts, and nothing was posted.
        await assert_unchanged(bank, alice, bob)

    async def test_in_time(self, bank: Bank, alice: str, bob: str, clock: Clock) -> None:
        hold_id = await bank.placed_hold(alice, bob, 300, timeout_seconds=1)
        clock.advance(0.999)
        assert (await bank.post(hold_id)).status_code == 201

    async def test_allowed_on_a_frozen_account(
        self, bank: Bank, alice: str, bob: str, database_url: str
    ) -> None:
        hold_id = await bank.placed_hold(alice, bob, 300)
        await set_status(database_url, alice, "frozen")
        assert (await bank.post(hold_id)).status_code == 201
        assert (await bank.balances(bob))["posted_minor"] == 300

    async def test_pending_transfer_not_found(self, bank: Bank, alice: str, bob: str) -> None:
        body = assert_problem(await bank.post(str(uuid.uuid4())), 404, "pending-transfer-not-found")
        assert body["pending_id"]
        single: str = (await bank.single_phase(alice, bob, 10)).json()["id"]
        assert_problem(await bank.post(single), 404, "pending-transfer-not-found")
        hold_id = await bank.placed_hold(alice, bob, 10)
        post_id: str = (await bank.post(hold_id)).json()["id"]
        assert_problem(await bank.post(post_id), 404, "pending-transfer-not-found")

    async def test_repeated_fields_must_match_the_hold(
        self, bank: Bank, alice: str, bob: str
    ) -> None:
        hold_id = await bank.placed_hold(alice, bob, 300)
        body = assert_problem(
            await bank.post(hold_id, debit_account_id=bob), 422, "invalid-ledger-transfer"
        )
        assert body["field"] == "debit_account_id"
        matching = await bank.post(
            hold_id, debit_account_id=alice, credit_account_id=bob, currency="EUR"
        )
        assert matching.status_code == 201

    async def test_wrong_shape(self, bank: Bank, alice: str, bob: str) -> None:
        hold_id = await bank.placed_hold(alice, bob, 300)
        body = assert_problem(await bank.transfer("post_pending"), 422, "invalid-ledger-transfer")
        assert body["field"] == "pending_id"
        response = await bank.post(hold_id, timeout_seconds=5)
        assert_problem(response, 422, "invalid-ledger-transfer")

    async def test_replay(self, bank: Bank, alice: str, bob: str) -> None:
        hold_id = await bank.placed_hold(alice, bob, 300)
        post_id = str(uuid.uuid4())
        first = await bank.post(hold_id, id=post_id)
        again = await bank.post(hold_id, id=post_id)
        explicit = await bank.post(hold_id, id=post_id, amount_minor=300)
        assert (first.status_code, again.status_code, explicit.status_code) == (201, 200, 200)
        assert again.json() == first.json() == explicit.json()
        conflict = await bank.post(hold_id, id=post_id, amount_minor=200)
        assert assert_problem(conflict, 409, "ledger-transfer-exists")["field"] == "amount_minor"
        assert (await bank.balances(bob))["posted_minor"] == 300


class TestVoidPendingTransfer:
    async def test_valid(self, bank: Bank, alice: str, bob: str) -> None:
        hold_id = await bank.placed_hold(alice, bob, 300)
        response = await bank.void(hold_id)
        assert response.status_code == 201, response.text
        void = response.json()
        assert void["kind"] == "void_pending"
        assert void["pending_id"] == hold_id
        assert void["amount_minor"] == 300
        await assert_unchanged(bank, alice, bob)

    async def test_void_twice(self, bank: Bank, alice: str, bob: str) -> None:
        hold_id = await bank.placed_hold(alice, bob, 300)
        await bank.void(hold_id)
        assert_problem(await bank.void(hold_id), 409, "pending-transfer-already-voided")

    async def test_void_after_post(self, bank: Bank, alice: str, bob: str) -> None:
        hold_id = await bank.placed_hold(alice, bob, 300)
        await bank.post(hold_id, amount_minor=100)
        assert_problem(await bank.void(hold_id), 409, "pending-transfer-already-posted")
        assert (await bank.balances(alice))["posted_minor"] == 900

    async def test_void_after_expiry(self, bank: Bank, alice: str, bob: str, clock: Clock) -> None:
        """The expiry released the hold already; the void is told so, whether or not the
        sweeper has written the release yet."""
        hold_id = await bank.placed_hold(alice, bob, 300, timeout_seconds=1)
        clock.advance(3600)
        assert_problem(await bank.void(hold_id), 409, "pending-transfer-expired")
        await assert_unchanged(bank, alice, bob)

    @pytest.mark.parametrize("status", ["frozen", "closed"])
    async def test_allowed_on_any_status(
        self, bank: Bank, alice: str, bob: str, database_url: str, status: str
    ) -> None:
        hold_id = await bank.placed_hold(alice, bob, 300)
        await set_status(database_url, alice, status)
        assert (await bank.void(hold_id)).status_code == 201
        assert (await bank.balances(alice))["debits_pending_minor"] == 0

    async def test_void_names_the_whole_amount(self, bank: Bank, alice: str, bob: str) -> None:
        hold_id = await bank.placed_hold(alice, bob, 300)
        body = assert_problem(
            await bank.void(hold_id, amount_minor=100), 422, "invalid-ledger-transfer"
        )
        assert body["field"] == "amount_minor"
        assert (await bank.void(hold_id, amount_minor=300)).status_code == 201

    async def test_pending_transfer_not_found(self, bank: Bank) -> None:
        assert_problem(await bank.void(str(uuid.uuid4())), 404, "pending-transfer-not-found")


class TestGetLedgerTransfer:
    async def test_valid(self, bank: Bank, alice: str, bob: str) -> None:
        created = (await bank.hold(alice, bob, 300, timeout_seconds=60)).json()
        response = await bank.client.get(f"/v1/ledger/transfers/{created['id']}")
        assert response.status_code == 200
        assert response.json() == created

    async def test_unknown(self, client: httpx.AsyncClient) -> None:
        response = await client.get(f"/v1/ledger/transfers/{uuid.uuid4()}")
        assert_problem(response, 404, "ledger-transfer-not-found")


class TestDailyOutflowLimit:
    """Checked at hold and single-phase time, pessimistically: an open hold counts in full."""

    @pytest.fixture
    async def capped(self, bank: Bank) -> str:
        account_id: str = (
            await bank.funded_account(10_000, customer_id="carol", daily_outflow_limit_minor=500)
        )["id"]
        return account_id

    async def test_single_phase_and_holds_count(self, bank: Bank, capped: str, bob: str) -> None:
        assert (await bank.single_phase(capped, bob, 200)).status_code == 201
        assert (await bank.hold(capped, bob, 250)).status_code == 201
        body = assert_problem(
            await bank.single_phase(capped, bob, 51), 409, "daily-outflow-limit-exceeded"
        )
        assert body["daily_outflow_limit_minor"] == 500
        assert body["outflow_today_minor"] == 450
        assert_problem(await bank.hold(capped, bob, 51), 409, "daily-outflow-limit-exceeded")
        assert_problem(await bank.withdraw(capped, 51), 409, "daily-outflow-limit-exceeded")
        assert (await bank.single_phase(capped, bob, 50)).status_code == 201
        assert (await bank.balances(capped))["posted_minor"] == 9_750

    async def test_a_void_gives_the_hold_back(self, bank: Bank, capped: str, bob: str) -> None:
        hold = await bank.placed_hold(capped, bob, 500)
        assert_problem(await bank.single_phase(capped, bob, 1), 409, "daily-outflow-limit-exceeded")
        await bank.void(hold)
        assert (await bank.single_phase(capped, bob, 500)).status_code == 201

    async def test_a_partial_post_gives_the_rest_back(
        self, bank: Bank, capped: str, bob: str
    ) -> None:
        hold = await bank.placed_hold(capped, bob, 500)
        await bank.post(hold, amount_minor=300)
        assert (await bank.single_phase(capped, bob, 200)).status_code == 201
        assert_problem(await bank.single_phase(capped, bob, 1), 409, "daily-outflow-limit-exceeded")

    async def test_an_expired_hold_counts_no_more(
        self, bank: Bank, capped: str, bob: str, clock: Clock
    ) -> None:
        await bank.placed_hold(capped, bob, 500, timeout_seconds=10)
        clock.advance(10)
        assert (await bank.single_phase(capped, bob, 500)).status_code == 201

    async def test_the_next_utc_day_starts_afresh(
        self, bank: Bank, capped: str, bob: str, clock: Clock
    ) -> None:
        clock.now = clock.now.replace(hour=23, minute=59, second=0)
        assert (await bank.single_phase(capped, bob, 500)).status_code == 201
        assert_problem(await bank.single_phase(capped, bob, 1), 409, "daily-outflow-limit-exceeded")
        clock.advance(60)
        assert (await bank.single_phase(capped, bob, 500)).status_code == 201

    async def test_incoming_money_is_not_capped(self, bank: Bank, capped: str, bob: str) -> None:
        assert (await bank.single_phase(bob, capped, 1)).status_code == 409  # bob is empty
        assert (await bank.deposit(capped, 5_000)).status_code == 201

    async def test_a_lowered_limit_counts_what_was_sent_today(
        self, bank: Bank, alice: str, bob: str
    ) -> None:
        assert (await bank.single_phase(alice, bob, 300)).status_code == 201
        await bank.limits(alice, daily_outflow_limit_minor=350)
        assert_problem(await bank.single_phase(alice, bob, 51), 409, "daily-outflow-limit-exceeded")
        assert (await bank.single_phase(alice, bob, 50)).status_code == 201


class TestExpiredHolds:
    """An expired hold no longer counts against the balance and cannot be posted, wherever
    balances are read or written, before and after the sweeper voids it."""

    async def test_no_longer_counts_in_balances(
        self, bank: Bank, alice: str, bob: str, clock: Clock
    ) -> None:
        await bank.placed_hold(alice, bob, 300, timeout_seconds=60)
        assert (await bank.balances(alice))["available_minor"] == 700
        clock.advance(60)
        await assert_unchanged(bank, alice, bob)
        listed = (await bank.client.get("/v1/accounts", params={"customer_id": "alice"})).json()
        assert listed["items"][0]["balances"]["available_minor"] == 1000
        report = await bank.invariants()
        assert report["expired_holds_unswept_count"] == 1

    async def test_its_money_may_be_spent(
        self, bank: Bank, alice: str, bob: str, clock: Clock
    ) -> None:
        hold_id = await bank.placed_hold(alice, bob, 1000, timeout_seconds=1)
        clock.advance(1)
        assert (await bank.single_phase(alice, bob, 1000)).status_code == 201
        # The transfer released the hold on its way: the journal says so.
        release = await bank.client.get(
            f"/v1/ledger/transfers/{expiry_void_id(uuid.UUID(hold_id))}"
        )
        assert release.status_code == 200, release.text
        assert release.json()["kind"] == "void_pending"
        assert release.json()["pending_id"] == hold_id
        assert release.json()["reference"] == "hold expired"
        assert (await bank.balances(bob))["posted_minor"] == 1000
        report = await bank.invariants()
        assert report["ok"], report
        assert report["expired_holds_unswept_count"] == 0

    async def test_cannot_be_posted_or_voided_after_its_release(
        self, bank: Bank, alice: str, bob: str, clock: Clock
    ) -> None:
        hold_id = await bank.placed_hold(alice, bob, 300, timeout_seconds=1)
        clock.advance(1)
        await bank.single_phase(alice, bob, 10)  # releases the expired hold
        assert_problem(await bank.post(hold_id), 409, "pending-transfer-expired")
        assert_problem(await bank.void(hold_id), 409, "pending-transfer-expired")
        assert (await bank.balances(bob))["posted_minor"] == 10

    async def test_a_hold_posted_in_time_stays_posted(
        self, bank: Bank, alice: str, bob: str, clock: Clock
    ) -> None:
        hold_id = await bank.placed_hold(alice, bob, 300, timeout_seconds=1)
        assert (await bank.post(hold_id)).status_code == 201
        clock.advance(10)
        assert_problem(await bank.void(hold_id), 409, "pending-transfer-already-posted")
        assert (await bank.balances(bob))["posted_minor"] == 300
        assert (await bank.invariants())["expired_holds_unswept_count"] == 0
