"""A hold that arrives late cannot outlive its refusal: voids of holds the ledger has not seen
leave tombstones, and a request's deadline bounds every wait and the commit.

The saga retries `place_hold` when its HTTP call times out, while the first attempt may still
wait inside accounts (for a connection, a lock) and commit later. If a later attempt is finally
refused, the saga voids the hold id anyway; whichever of the void and the late hold comes first,
no hold survives.
"""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from accounts.tests.helpers import Bank, raw_connection, released_together
from contracts.common import REQUEST_DEADLINE_HEADER
from kit.testing import assert_problem

LOCK_WAIT_SECONDS_MAX = 10.0


def deadline_in(seconds: float) -> dict[str, str]:
    instant = datetime.now(UTC) + timedelta(seconds=seconds)
    return {REQUEST_DEADLINE_HEADER: instant.isoformat(timespec="milliseconds")}


async def post_transfer(bank: Bank, body: dict[str, Any], **headers: str) -> httpx.Response:
    return await bank.client.post(
        "/v1/ledger/transfers", json=body, headers={**bank.operator, **headers}
    )


def hold_body(hold_id: str, alice: str, bob: str, amount_minor: int = 300) -> dict[str, Any]:
    return {
        "id": hold_id,
        "kind": "pending",
        "debit_account_id": alice,
        "credit_account_id": bob,
        "amount_minor": amount_minor,
        "currency": "EUR",
        "reference": f"transfer:{uuid.uuid4()}",
    }


def void_body(hold_id: str, alice: str, bob: str, amount_minor: int = 300) -> dict[str, Any]:
    """A void as the saga sends it: naming the hold's accounts, amount and currency."""
    return {
        "id": str(uuid.uuid4()),
        "kind": "void_pending",
        "pending_id": hold_id,
        "debit_account_id": alice,
        "credit_account_id": bob,
        "amount_minor": amount_minor,
        "currency": "EUR",
    }


async def assert_nothing_held(bank: Bank, alice: str, bob: str) -> None:
    alice_balances = await bank.balances(alice)
    assert alice_balances["debits_pending_minor"] == 0, alice_balances
    assert alice_balances["available_minor"] == 1000, alice_balances
    assert (await bank.balances(bob))["credits_pending_minor"] == 0
    await bank.assert_ledger_sound()


class TestVoidOfAnUnseenHold:
    async def test_leaves_a_tombstone_that_refuses_the_hold(
        self, bank: Bank, alice: str, bob: str
    ) -> None:
        hold_id = str(uuid.uuid4())
        void = void_body(hold_id, alice, bob)
        response = await post_transfer(bank, void)
        assert response.status_code == 201, response.text
        recorded = response.json()
        assert recorded["kind"] == "void_pending"
        assert recorded["pending_id"] == hold_id
        assert recorded["id"] == void["id"]

        late = await post_transfer(bank, hold_body(hold_id, alice, bob))
        body = assert_problem(late, 409, "pending-transfer-voided")
        assert body["void_id"] == void["id"]
        await assert_nothing_held(bank, alice, bob)

    async def test_replays_and_reads_back(self, bank: Bank, alice: str, bob: str) -> None:
        hold_id = str(uuid.uuid4())
        void = void_body(hold_id, alice, bob)
        first = (await post_transfer(bank, void)).json()
        again = await post_transfer(bank, void)
        assert again.status_code == 200, again.text
        assert again.json() == first
        fetched = await bank.client.get(f"/v1/ledger/transfers/{void['id']}")
        assert fetched.status_code == 200, fetched.text
        assert fetched.json() == first

    async def test_a_second_void_is_refused(self, bank: Bank, alice: str, bob: str) -> None:
        hold_id = str(uuid.uuid4())
        assert (await post_transfer(bank, void_body(hold_id, alice, bob))).status_code == 201
        other = await post_transfer(bank, void_body(hold_id, alice, bob))
        assert_problem(other, 409, "pending-transfer-already-voided")

    async def test_a_void_naming_nothing_records_nothing(
        self, bank: Bank, alice: str, bob: str
    ) -> None:
        """Without the hold's accounts the ledger cannot serialise with it: 404, as before."""
        hold_id = str(uuid.uuid4())
        assert_problem(await bank.void(hold_id), 404, "pending-transfer-not-found")
        assert (await post_transfer(bank, hold_body(hold_id, alice, bob))).status_code == 201

    async def test_a_void_naming_an_unknown_account_records_nothing(
        self, bank: Bank, alice: str, bob: str
    ) -> None:
        hold_id = str(uuid.uuid4())
        void = void_body(hold_id, alice, str(uuid.uuid4()))
        assert_problem(await post_transfer(bank, void), 404, "pending-transfer-not-found")
        assert (await post_transfer(bank, hold_body(hold_id, alice, bob))).status_code == 201

    async def test_a_void_after_the_hold_releases_it(
        self, bank: Bank, alice: str, bob: str
    ) -> None:
        hold_id = str(uuid.uuid4())
        assert (await post_transfer(bank, hold_body(hold_id, alice, bob))).status_code == 201
        assert (await bank.balances(alice))["debits_pending_minor"] == 300
        assert (await post_transfer(bank, void_body(hold_id, alice, bob))).status_code == 201
        await assert_nothing_held(bank, alice, bob)

    async def test_a_post_of_a_tombstoned_hold_is_refused(
        self, bank: Bank, alice: str, bob: str
    ) -> None:
        hold_id = str(uuid.uuid4())
        assert (await post_transfer(bank, void_body(hold_id, alice, bob))).status_code == 201
        assert_problem(await bank.post(hold_id), 409, "pending-transfer-already-voided")
        await assert_nothing_held(bank, alice, bob)

    async def test_a_linked_chain_that_fails_leaves_no_tombstone(
        self, bank: Bank, alice: str, bob: str
    ) -> None:
        hold_id = str(uuid.uuid4())
        void = {**void_body(hold_id, alice, bob), "linked": True}
        overdraw = {**hold_body(str(uuid.uuid4()), alice, bob, amount_minor=5000)}
        results = await bank.batch(void, overdraw)
        assert [result["status"] for result in results] == [424, 409]
        assert (await post_transfer(bank, hold_body(hold_id, alice, bob))).status_code == 201


class TestHoldAndVoidRacing:
    """Both orders of arrival, decided by PostgreSQL under the accounts' locks: no hold
    survives either way."""

    @pytest.mark.parametrize("attempt", range(4))
    async def test_no_hold_survives(
        self, bank: Bank, alice: str, bob: str, database_url: str, attempt: int
    ) -> None:
        hold_id = str(uuid.uuid4())
        hold, void = await released_together(
            database_url,
            "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE",
            (uuid.UUID(alice),),
            [
                post_transfer(bank, hold_body(hold_id, alice, bob)),
                post_transfer(bank, void_body(hold_id, alice, bob)),
            ],
            waiters=2,
        )
        assert void.status_code == 201, void.text
        assert hold.status_code in (201, 409), hold.text
        if hold.status_code == 409:
            assert_problem(hold, 409, "pending-transfer-voided")
        await assert_nothing_held(bank, alice, bob)


class TestRequestDeadline:
    async def test_passed_on_arrival(self, bank: Bank, alice: str, bob: str) -> None:
        hold_id = str(uuid.uuid4())
        late = await post_transfer(bank, hold_body(hold_id, alice, bob), **deadline_in(-1))
        body = assert_problem(late, 503, "deadline-exceeded")
        assert late.headers["retry-after"] == "1"
        assert "nothing was changed" in str(body["detail"])
        fetched = await bank.client.get(f"/v1/ledger/transfers/{hold_id}")
        assert_problem(fetched, 404, "ledger-transfer-not-found")

    @pytest.mark.parametrize("value", ["tomorrow", "2026-12-06T03:11:25", "9" * 41])
    async def test_malformed(self, bank: Bank, alice: str, bob: str, value: str) -> None:
        hold_id = str(uuid.uuid4())
        response = await post_transfer(
            bank, hold_body(hold_id, alice, bob), **{REQUEST_DEADLINE_HEADER: value}
        )
        assert_problem(response, 400, "invalid-deadline")
        await assert_nothing_held(bank, alice, bob)

    async def test_a_lock_wait_ends_at_the_deadline_and_nothing_commits(
        self, bank: Bank, alice: str, bob: str, database_url: str
    ) -> None:
        """The first attempt waits for a lock past its caller's deadline: it is refused, and
        releasing the lock afterwards commits nothing."""
        hold_id = str(uuid.uuid4())
        async with raw_connection(database_url) as locker, locker.transaction():
            await locker.execute(
                "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", uuid.UUID(alice)
            )
            response = await asyncio.wait_for(
                post_transfer(bank, hold_body(hold_id, alice, bob), **deadline_in(1.0)),
                LOCK_WAIT_SECONDS_MAX,
            )
        assert_problem(response, 503, "deadline-exceeded")
        fetched = await bank.client.get(f"/v1/ledger/transfers/{hold_id}")
        assert_problem(fetched, 404, "ledger-transfer-not-found")
        await assert_nothing_held(bank, alice, bob)

    async def test_in_time(self, bank: Bank, alice: str, bob: str) -> None:
        hold_id = str(uuid.uuid4())
        response = await post_transfer(bank, hold_body(hold_id, alice, bob), **deadline_in(10))
        assert response.status_code == 201, response.text
        validation = await bank.client.post(
            "/v1/ledger/validations",
            json={
                "transfer_id": str(uuid.uuid4()),
                "source_account_id": alice,
                "target_account_id": bob,
                "amount_minor": 1,
                "currency": "EUR",
            },
            headers={**bank.worker, **deadline_in(10)},
        )
        assert validation.status_code == 200, validation.text
