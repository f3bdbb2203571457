"""The sweeper: voids holds past their deadline, in bounded batches, once each."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

import httpx
import pytest
from fastapi import FastAPI

from accounts.config import Settings
from accounts.ledger import service, sweeper
from accounts.ledger.rules import expiry_void_id
from accounts.resources import AccountsResources
from accounts.tests.helpers import Bank, Clock, accounts_app, raw_connection
from kit.resources import resources_of
from kit.testing import TestIssuer, app_client

_WAIT_SECONDS_MAX = 10.0


@pytest.fixture
def sweeping(settings: Settings) -> Settings:
    """Settings whose background sweeper runs every 50 ms, two holds per batch."""
    return settings.model_copy(
        update={
            "hold_sweep_enabled": True,
            "hold_sweep_interval_seconds": 0.05,
            "hold_sweep_batch_size": 2,
        }
    )


@pytest.fixture
async def sweeping_bank(
    sweeping: Settings, clock: Clock, issuer: TestIssuer
) -> AsyncIterator[Bank]:
    """A service whose background sweeper runs every 50 ms, two holds per batch."""
    app = accounts_app(sweeping, clock=clock, token_verifier=issuer.verifier)
    async with app_client(app) as client:
        client.headers.update(issuer.operator())
        yield Bank(client, issuer)


async def place_holds(
    bank: Bank, count: int, *, timeout_seconds: int
) -> tuple[str, str, list[str]]:
    alice = (await bank.funded_account(1000, customer_id="alice"))["id"]
    bob = (await bank.open_account(customer_id="bob"))["id"]
    holds = [
        await bank.placed_hold(alice, bob, 100, timeout_seconds=timeout_seconds)
        for _ in range(count)
    ]
    return alice, bob, holds


async def journal_release(client: httpx.AsyncClient, hold_id: str) -> httpx.Response:
    return await client.get(f"/v1/ledger/transfers/{expiry_void_id(uuid.UUID(hold_id))}")


class TestBackgroundSweeper:
    async def test_voids_expired_holds(self, sweeping_bank: Bank, clock: Clock) -> None:
        bank = sweeping_bank
        alice, bob, holds = await place_holds(bank, 5, timeout_seconds=30)
        fresh = await bank.placed_hold(alice, bob, 100, timeout_seconds=3600)
        clock.advance(30)

        deadline = asyncio.get_running_loop().time() + _WAIT_SECONDS_MAX
        while (await bank.invariants())["expired_holds_unswept_count"] > 0:
            assert asyncio.get_running_loop().time() < deadline, "the sweeper fell behind"
            await asyncio.sleep(0.05)

        for hold_id in holds:
            release = await journal_release(bank.client, hold_id)
            assert release.status_code == 200, release.text
            assert (release.json()["kind"], release.json()["amount_minor"]) == ("void_pending", 100)
        assert (await journal_release(bank.client, fresh)).status_code == 404
        balances = await bank.balances(alice)
        assert (balances["debits_pending_minor"], balances["available_minor"]) == (100, 900)
        entries = await bank.statement(alice)
        assert entries[-1]["pending_balance_after_minor"] == -100
        await bank.assert_ledger_sound()


class InstanceClock:
    """One instance's view of the shared clock, counting how often that instance reads it."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.reads = 0

    def __call__(self) -> datetime:
        self.reads += 1
        return self.clock()


async def wait_until(condition: Callable[[], Awaitable[bool]], *, failure: str) -> None:
    deadline = asyncio.get_running_loop().time() + _WAIT_SECONDS_MAX
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, failure
        await asyncio.sleep(0.02)


class TestTwoInstances:
    async def test_only_one_instance_sweeps(
        self, sweeping: Settings, database_url: str, clock: Clock, issuer: TestIssuer
    ) -> None:
        """Two replicas on one database: one sweeps (its sweeper reads its clock each
        round), the other stands by and never reads its clock."""
        clocks = [InstanceClock(clock), InstanceClock(clock)]
        apps = [
            accounts_app(sweeping, clock=each, token_verifier=issuer.verifier) for each in clocks
        ]
        async with app_client(apps[0]) as client, app_client(apps[1]):
            client.headers.update(issuer.operator())
            bank = Bank(client, issuer)
            alice, _, holds = await place_holds(bank, 5, timeout_seconds=30)
            clock.advance(30)
            # From here on no request reads a clock: every read is a sweep round.
            for each in clocks:
                each.reads = 0

            async def unswept_holds() -> int:
                async with raw_connection(database_url) as connection:
                    count: int = await connection.fetchval(
                        "SELECT count(*) FROM ledger_expiring_holds"
                    )
                    return count

            async def all_swept() -> bool:
                return await unswept_holds() == 0

            await wait_until(all_swept, failure="the sweeper fell behind")
            reads_before = max(each.reads for each in clocks)

            async def ten_more_rounds() -> bool:
                return max(each.reads for each in clocks) >= reads_before + 10

            await wait_until(ten_more_rounds, failure="the sweeper stopped")
            reads = [each.reads for each in clocks]
            assert min(reads) == 0, f"both instances swept: clock reads {reads}"
            leaders = [app.state.hold_sweeper.is_leader for app in apps]
            assert leaders.count(True) == 1, leaders
            for hold_id in holds:
                assert (await journal_release(client, hold_id)).status_code == 200
            assert (await bank.balances(alice))["debits_pending_minor"] == 0
            await bank.assert_ledger_sound()


class TestSweep:
    async def test_rounds_are_bounded_batches(self, bank: Bank, app: FastAPI, clock: Clock) -> None:
        _, _, holds = await place_holds(bank, 5, timeout_seconds=1)
        clock.advance(1)
        database = resources_of(app, AccountsResources).ledger

        assert await service.sweep_expired_holds(database, now=clock.now, batch_size=2) == 2
        assert await sweeper.sweep_once(database, clock=clock, batch_size=2) == 3
        assert await sweeper.sweep_once(database, clock=clock, batch_size=2) == 0
        for hold_id in holds:
            assert (await journal_release(bank.client, hold_id)).status_code == 200
        await bank.assert_ledger_sound()

    async def test_holds_before_their_deadline_stay(
        self, bank: Bank, app: FastAPI, clock: Clock
    ) -> None:
        _, _, holds = await place_holds(bank, 2, timeout_seconds=10)
        clock.advance(9.999)
        database = resources_of(app, AccountsResources).ledger
        assert await service.sweep_expired_holds(database, now=clock.now, batch_size=10) == 0
        assert (await bank.post(holds[0])).status_code == 201

    async def test_racing_sweeps_void_each_hold_once(
        self, bank: Bank, app: FastAPI, clock: Clock
    ) -> None:
        """Two sweepers (two service instances) pick the same holds: the second waits on
        the first's locks, then finds them released and writes nothing twice."""
        alice, _, _ = await place_holds(bank, 6, timeout_seconds=1)
        clock.advance(1)
        database = resources_of(app, AccountsResources).ledger
        counts = await asyncio.gather(
            *(service.sweep_expired_holds(database, now=clock.now, batch_size=10) for _ in range(3))
        )
        assert sum(counts) == 6
        assert (await bank.balances(alice))["debits_pending_minor"] == 0
        entries = await bank.statement(alice)
        releases = [entry for entry in entries if entry["transfer_kind"] == "void_pending"]
        assert len(releases) == 6
        await bank.assert_ledger_sound()

    async def test_a_post_in_time_beats_the_sweeper(
        self, bank: Bank, app: FastAPI, clock: Clock
    ) -> None:
        _, bob, holds = await place_holds(bank, 1, timeout_seconds=5)
        assert (await bank.post(holds[0])).status_code == 201
        clock.advance(5)
        database = resources_of(app, AccountsResources).ledger
        assert await service.sweep_expired_holds(database, now=clock.now, batch_size=10) == 0
        assert (await bank.balances(bob))["posted_minor"] == 100
