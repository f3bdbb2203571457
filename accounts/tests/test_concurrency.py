"""Concurrent requests over a real database: no overdraft, no double resolution, no lost
replay. Each test holds a row lock from outside to make the requests pile up, checks in
pg_stat_activity that they really wait side by side, then lets them go at once."""

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable
from dataclasses import replace

import httpx
from fastapi import FastAPI

from accounts.resources import AccountsResources
from accounts.tests.helpers import (
    Bank,
    held,
    released_together,
    single_phase_event,
    wait_for_lock_waiters,
)
from kit.resources import install_resources, resources_of
from kit.testing import assert_problem


def statuses(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(response.status_code for response in responses)


class TestConcurrentMovements:
    async def test_fifty_holds_and_transfers_never_overdraw(
        self, bank: Bank, app: FastAPI, database_url: str
    ) -> None:
        alice = (await bank.funded_account(1000))["id"]
        bob = (await bank.open_account(customer_id="bob"))["id"]
        requests = [
            bank.hold(alice, bob, 30) if number % 2 else bank.single_phase(alice, bob, 30)
            for number in range(50)
        ]
        pool_size = app.state.database.engine.pool.size()

        responses = await released_together(
            database_url,
            "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE",
            (uuid.UUID(alice),),
            requests,
            waiters=pool_size,
        )

        # 1000 // 30: 33 fit, whichever kind each was; every other one is refused.
        assert statuses(responses) == {201: 33, 409: 17}, [r.text for r in responses]
        for response in responses:
            if response.status_code == 409:
                assert_problem(response, 409, "insufficient-funds")
        balances = await bank.balances(alice)
        assert balances["debits_pending_minor"] + balances["debits_posted_minor"] == 990
        assert balances["available_minor"] == 10
        report = await bank.invariants()
        assert report["ok"], report

    async def test_identical_requests_create_one_transfer(
        self, bank: Bank, database_url: str
    ) -> None:
        alice = (await bank.funded_account(1000))["id"]
        bob = (await bank.open_account(customer_id="bob"))["id"]
        transfer_id = str(uuid.uuid4())
        requests = [bank.hold(alice, bob, 400, id=transfer_id) for _ in range(12)]

        responses = await released_together(
            database_url,
            "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE",
            (uuid.UUID(alice),),
            requests,
            waiters=len(requests),
        )

        assert statuses(responses) == {201: 1, 200: 11}
        assert len({response.text for response in responses}) == 1
        assert (await bank.balances(alice))["debits_pending_minor"] == 400
        await bank.assert_ledger_sound()

    async def test_post_and_void_race_one_wins(self, bank: Bank, database_url: str) -> None:
        alice = (await bank.funded_account(1000))["id"]
        bob = (await bank.open_account(customer_id="bob"))["id"]
        hold_id = await bank.placed_hold(alice, bob, 300)
        requests = [bank.post(hold_id), bank.void(hold_id), bank.post(hold_id)]

        responses = await released_together(
            database_url,
            "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE",
            (uuid.UUID(alice),),
            requests,
            waiters=len(requests),
        )

        assert statuses(responses) == {201: 1, 409: 2}
        winner = next(response for response in responses if response.status_code == 201)
        slug = {"post_pending": "posted", "void_pending": "voided"}[winner.json()["kind"]]
        for response in responses:
            if response.status_code == 409:
                assert_problem(response, 409, f"pending-transfer-already-{slug}")
        assert (await bank.balances(alice))["debits_pending_minor"] == 0
        await bank.assert_ledger_sound()


class TestSameIdInsertRace:
    """Same id, other accounts: the requests share no lock and meet at the insert."""

    async def test_loser_answers_with_a_conflict(self, bank: Bank, database_url: str) -> None:
        alice = (await bank.funded_account(1000))["id"]
        bob = (await bank.open_account(customer_id="bob"))["id"]
        carol = (await bank.funded_account(1000, customer_id="carol"))["id"]
        dave = (await bank.open_account(customer_id="dave"))["id"]
        transfer_id = uuid.uuid4()

        async with held(
            database_url,
            "INSERT INTO ledger_transfers (id, kind, debit_account_id, credit_account_id,"
            " amount_minor, currency) VALUES ($1, 'single_phase', $2, $3, 100, 'EUR')",
            transfer_id,
            uuid.UUID(carol),
            uuid.UUID(dave),
        ) as transaction:
            answer = asyncio.ensure_future(bank.single_phase(alice, bob, 100, id=str(transfer_id)))
            try:
                await wait_for_lock_waiters(database_url, 1)
            finally:
                await transaction.end(commit=True)
            response = await answer

        body = assert_problem(response, 409, "ledger-transfer-exists")
        assert body["field"] == "debit_account_id"
        assert (await bank.balances(alice))["available_minor"] == 1000

    async def test_insert_goes_ahead_when_the_other_rolls_back(
        self, bank: Bank, database_url: str
    ) -> None:
        alice = (await bank.funded_account(1000))["id"]
        bob = (await bank.open_account(customer_id="bob"))["id"]
        carol = (await bank.open_account(customer_id="carol"))["id"]
        dave = (await bank.open_account(customer_id="dave"))["id"]
        transfer_id = uuid.uuid4()

        responses = await released_together(
            database_url,
            "INSERT INTO ledger_transfers (id, kind, debit_account_id, credit_account_id,"
            " amount_minor, currency) VALUES ($1, 'single_phase', $2, $3, 100, 'EUR')",
            (transfer_id, uuid.UUID(carol), uuid.UUID(dave)),
            [bank.single_phase(alice, bob, 100, id=str(transfer_id))],
            waiters=1,
        )

        assert responses[0].status_code == 201, responses[0].text
        assert (await bank.balances(alice))["available_minor"] == 900
        await bank.assert_ledger_sound()


class TestDeadlockRetry:
    """Locks taken in id order in one statement keep the service's own transactions from
    deadlocking; a transaction from elsewhere can still close a cycle with one of them.
    PostgreSQL then aborts the service's (its deadlock check fires first here), and the
    service runs it again."""

    @staticmethod
    async def deadlock(
        database_url: str,
        low: str,
        high: str,
        request: Awaitable[httpx.Response],
    ) -> httpx.Response:
        async with held(
            database_url, "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", uuid.UUID(high)
        ) as transaction:
            # The service's transactions detect the cycle (after 1 s), not this one.
            await transaction.connection.execute("SET LOCAL deadlock_timeout = '30s'")
            answer = asyncio.ensure_future(request)
            try:
                # The service locked `low` and waits for `high`; closing the cycle:
                await wait_for_lock_waiters(database_url, 1)
                await transaction.connection.execute(
                    "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", uuid.UUID(low)
                )
                # Granted: the service's transaction was the victim and let `low` go.
            finally:
                await transaction.end(commit=False)
            return await answer

    @staticmethod
    async def pair(bank: Bank) -> tuple[str, str]:
        first = (await bank.funded_account(1000))["id"]
        second = (await bank.funded_account(1000, customer_id="bob"))["id"]
        low, high = sorted((first, second), key=uuid.UUID)
        return low, high

    async def test_single_transfer_is_retried(self, bank: Bank, database_url: str) -> None:
        low, high = await self.pair(bank)
        response = await self.deadlock(database_url, low, high, bank.single_phase(low, high, 100))
        assert response.status_code == 201, response.text
        assert (await bank.balances(high))["posted_minor"] == 1100
        await bank.assert_ledger_sound()

    async def test_batch_is_retried(self, bank: Bank, database_url: str) -> None:
        low, high = await self.pair(bank)
        events = [single_phase_event(low, high, 10), single_phase_event(high, low, 20)]
        body = {"transfers": [{"id": str(uuid.uuid4()), **event} for event in events]}
        request = bank.client.post("/v1/ledger/transfers/batch", json=body, headers=bank.operator)
        response = await self.deadlock(database_url, low, high, request)
        assert response.status_code == 200, response.text
        assert [result["status"] for result in response.json()["results"]] == [201, 201]
        assert (await bank.balances(low))["posted_minor"] == 1010
        await bank.assert_ledger_sound()

    async def test_retries_are_bounded(self, bank: Bank, app: FastAPI, database_url: str) -> None:
        low, high = await self.pair(bank)
        installed = resources_of(app, AccountsResources)
        install_resources(app, replace(installed, ledger=replace(installed.ledger, attempts_max=1)))
        response = await self.deadlock(database_url, low, high, bank.single_phase(low, high, 100))
        assert_problem(response, 503, "ledger-busy")
        assert response.headers["retry-after"] == "1"
        assert (await bank.balances(high))["posted_minor"] == 1000
        await bank.assert_ledger_sound()
