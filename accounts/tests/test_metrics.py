"""The ledger's counters move where money moves and commits, once per transfer; the
sweeper counts what it expires and reports the open holds."""

import uuid

from fastapi import FastAPI
from prometheus_client import REGISTRY

from accounts.ledger import sweeper
from accounts.resources import AccountsResources
from accounts.tests.helpers import Bank, Clock
from accounts.tests.test_sweeper import place_holds
from kit.resources import resources_of


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
