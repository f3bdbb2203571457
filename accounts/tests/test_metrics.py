"""The ledger's counters move where money moves and commits, once per transfer; the
sweeper counts what it expires and reports the open holds; the periodic invariant check
reports whether the ledger holds, and when it last looked."""

import asyncio
import uuid

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from accounts.config import Settings
from accounts.ledger import invariant_check, sweeper
from accounts.resources import AccountsResources
from accounts.tests.helpers import Bank, Clock, accounts_app, raw_connection
from accounts.tests.test_sweeper import place_holds
from kit.db import database_of
from kit.resources import resources_of
from kit.testing import TestIssuer, app_client


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _counts() -> tuple[float, float]:
    return (
        _sample("sagabank_ledger_postings_total", currency="EUR"),
        _sample("sagabank_ledger_holds_placed_total", currency="EUR"),
    )


class TestPostingsAndHolds:
    async def test_counted_once_not_on_replays(self, bank: Bank, alice: str, bob: str) -> None:
        before = _counts()
        transfer_id = str(uuid.uuid4())
        for status in (201, 200):  # then an idempotent replay
            response = await bank.single_phase(alice, bob, 10, id=transfer_id)
            assert response.status_code == status, response.text
        hold_id = await bank.placed_hold(alice, bob, 20)
        post_id = str(uuid.uuid4())
        for status in (201, 200):
            assert (await bank.post(hold_id, id=post_id)).status_code == status
        refused = await bank.single_phase(alice, bob, 10**9)
        assert refused.status_code == 409, refused.text

        after = _counts()
        # The single-phase transfer and the hold's posting; the hold once.
        assert (after[0] - before[0], after[1] - before[1]) == (2, 1)


class TestSweeperMetrics:
    async def test_expired_holds_counted_and_open_holds_reported(
        self, bank: Bank, clock: Clock, app: FastAPI
    ) -> None:
        alice, bob, _holds = await place_holds(bank, 3, timeout_seconds=30)
        await bank.placed_hold(alice, bob, 100, timeout_seconds=3600)
        clock.advance(40)
        expired_before = _sample("sagabank_ledger_holds_expired_total")
        ledger = resources_of(app, AccountsResources).ledger

        await sweeper.sweep_once(ledger, clock=clock, batch_size=10)

        assert _sample("sagabank_ledger_holds_expired_total") - expired_before == 3
        assert _sample("sagabank_ledger_open_holds") == 1
        assert _sample("sagabank_ledger_oldest_open_hold_age_seconds") == 40


class TestInvariantCheckJob:
    async def test_holds_on_a_sound_ledger_and_fails_once_broken_behind_the_service(
        self,
        bank: Bank,
        alice: str,
        bob: str,
        app: FastAPI,
        clock: Clock,
        database_url: str,
        capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        assert (await bank.single_phase(alice, bob, 10)).status_code == 201
        database = database_of(app)

        await invariant_check.check_once(database, clock=clock)
        assert _sample("sagabank_ledger_invariants_hold") == 1
        assert _sample("sagabank_ledger_invariant_check_timestamp_seconds") == (clock().timestamp())

        async with raw_connection(database_url) as connection:
            # Only a bypass of the service can do this: accounts is not append-only.
            await connection.execute(
                "UPDATE accounts SET credits_posted = credits_posted + 1 WHERE id = $1",
                uuid.UUID(bob),
            )
        clock.advance(60)
        await invariant_check.check_once(database, clock=clock)

        assert _sample("sagabank_ledger_invariants_hold") == 0
        assert _sample("sagabank_ledger_invariant_check_timestamp_seconds") == (clock().timestamp())
        captured = capsys.readouterr()
        broken = [
            line
            for line in (captured.out + captured.err + caplog.text).splitlines()
            if "ledger.invariants_broken" in line
        ]
        assert broken, "a failed check logs no error"
        assert "error" in broken[0]
        assert bob in broken[0]  # what failed: the account whose totals differ

    async def test_the_service_runs_it_periodically_when_enabled(
        self, settings: Settings, clock: Clock, issuer: TestIssuer
    ) -> None:
        checking = settings.model_copy(
            update={"invariant_check_enabled": True, "invariant_check_interval_seconds": 0.05}
        )
        marker = clock().timestamp() + 12_345
        clock.advance(12_345)
        app = accounts_app(checking, clock=clock, token_verifier=issuer.verifier)
        async with app_client(app):
            deadline = asyncio.get_running_loop().time() + 10
            while _sample("sagabank_ledger_invariant_check_timestamp_seconds") != marker:
                assert asyncio.get_running_loop().time() < deadline, "no check ran"
                await asyncio.sleep(0.05)
        assert _sample("sagabank_ledger_invariants_hold") == 1


class TestPoolGauges:
    async def test_the_ledger_pool_is_summed_with_the_engines(
        self, client: httpx.AsyncClient, app: FastAPI, settings: Settings
    ) -> None:
        labels = {"service": "accounts"}
        engine_max = database_of(app).connections_max
        ledger_max = 2 * settings.database_pool_size  # accounts.main sizes the ledger's pool
        size = REGISTRY.get_sample_value("sagabank_db_pool_size_connections", labels)
        assert size == engine_max + ledger_max
        in_use_before = REGISTRY.get_sample_value("sagabank_db_pool_in_use_connections", labels)
        pool = resources_of(app, AccountsResources).ledger.pool
        async with pool.acquire():
            in_use = REGISTRY.get_sample_value("sagabank_db_pool_in_use_connections", labels)
        assert in_use_before is not None
        assert in_use == in_use_before + 1
