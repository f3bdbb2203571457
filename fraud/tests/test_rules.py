"""The rules that read the account's history, end to end: each fires on history the
database really holds (scores, outcomes, the deny-list) and stays quiet without it.
The rules on the amount alone are covered, pure, in test_scoring.py."""

import uuid
from datetime import timedelta

import httpx

from fraud.ruleset import Ruleset
from fraud.tests.clock import SettableClock
from fraud.tests.support import codes, completed, outcome_for, report, score

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


class TestVelocity:
    async def test_fires_on_a_burst_in_flight(
        self, worker: httpx.AsyncClient, ruleset: Ruleset, clock: SettableClock
    ) -> None:
        source = str(uuid.uuid4())
        transfers_min = ruleset.rules.velocity.hour_transfers_min
        # No outcome has arrived yet: the transfers are still in the saga.
        for _ in range(transfers_min - 1):
            assert codes(await score(worker, source_account_id=source)) == []
            clock.advance(timedelta(minutes=1))
        # Another account's transfers do not count towards this one's.
        await score(worker)
        assert codes(await score(worker, source_account_id=source)) == []
        clock.advance(timedelta(minutes=1))

        fired = await score(worker, source_account_id=source)
        assert codes(fired) == ["velocity"]
        text = fired["reasons"][0]["text"]
        assert f"{transfers_min} transfers in the last 60 minutes" in text
        assert f"{transfers_min * 125}.00 EUR" in text

    async def test_quiet_once_the_burst_is_an_hour_old(
        self, worker: httpx.AsyncClient, ruleset: Ruleset, clock: SettableClock
    ) -> None:
        source = str(uuid.uuid4())
        started = clock.now
        for _ in range(ruleset.rules.velocity.hour_transfers_min):
            await score(worker, source_account_id=source)

        clock.now = started + HOUR - timedelta(seconds=1)
        assert codes(await score(worker, source_account_id=source)) == ["velocity"]
        clock.now = started + HOUR + timedelta(seconds=1)
        assert codes(await score(worker, source_account_id=source)) == []

    async def test_fires_on_a_busy_day(
        self, worker: httpx.AsyncClient, ruleset: Ruleset, clock: SettableClock
    ) -> None:
        source = str(uuid.uuid4())
        rule = ruleset.rules.velocity
        # Spread out, never `hour_transfers_min` in one hour, but many in the day.
        spacing = timedelta(seconds=3600 // (rule.hour_transfers_min - 1) + 60)
        for _ in range(rule.day_transfers_min):
            assert "velocity" not in codes(await completed(worker, clock, source_account_id=source))
            clock.advance(spacing)
        fired = await score(worker, source_account_id=source)
        assert codes(fired) == ["velocity"]
        assert (
            f"{rule.day_transfers_min} transfers in the last 24 hours"
            in (fired["reasons"][0]["text"])
        )

    async def test_transfers_that_moved_nothing_do_not_count(
        self, worker: httpx.AsyncClient, ruleset: Ruleset, clock: SettableClock
    ) -> None:
        source = str(uuid.uuid4())
        for _ in range(ruleset.rules.velocity.hour_transfers_min):
            scored = await score(worker, source_account_id=source)
            assert (
                await report(worker, outcome_for(scored, "cancelled", clock.now))
            ).status_code == 201
        assert codes(await score(worker, source_account_id=source)) == []


class TestAmountAboveTypical:
    async def _history(
        self, worker: httpx.AsyncClient, clock: SettableClock, ruleset: Ruleset, source: str
    ) -> None:
        # A steady account: a few payments a day, 40 to 60 EUR (median 50, spread 5).
        amounts_minor = [40_00, 50_00, 60_00, 50_00, 45_00]
        assert len(amounts_minor) >= ruleset.rules.amount_above_typical.history_min
        for amount_minor in amounts_minor:
            await completed(worker, clock, source_account_id=source, amount_minor=amount_minor)
            clock.advance(3 * HOUR)

    async def test_fires_far_above_the_accounts_median(
        self, worker: httpx.AsyncClient, ruleset: Ruleset, clock: SettableClock
    ) -> None:
        source = str(uuid.uuid4())
        await self._history(worker, clock, ruleset, source)
        fired = await score(worker, source_account_id=source, amount_minor=400_00)
        assert codes(fired) == ["amount_above_typical"]
        assert "typical amount of 50.00 EUR" in fired["reasons"][0]["text"]

    async def test_quiet_near_the_accounts_median(
        self, worker: httpx.AsyncClient, ruleset: Ruleset, clock: SettableClock
    ) -> None:
        source = str(uuid.uuid4())
        await self._history(worker, clock, ruleset, source)
        assert codes(await score(worker, source_account_id=source, amount_minor=200_00)) == []

    async def test_quiet_before_the_account_has_a_history(
        self, worker: httpx.AsyncClient, clock: SettableClock
    ) -> None:
        source = str(uuid.uuid4())
        await completed(worker, clock, source_account_id=source, amount_minor=5_00)
        assert codes(await score(worker, source_account_id=source, amount_minor=900_00)) == []


class TestFirstCounterpartyLarge:
    async def test_completed_transfer_makes_the_recipient_known(
        self, worker: httpx.AsyncClient, clock: SettableClock
    ) -> None:
        pair = {"source_account_id": str(uuid.uuid4()), "target_account_id": str(uuid.uuid4())}
        first = await completed(worker, clock, **pair, amount_minor=2_500_00)
        assert first["decision"] == "approve"
        assert "first_counterparty_large" in codes(first)
        second = await score(worker, **pair, amount_minor=2_500_00)
        assert "first_counterparty_large" not in codes(second)

    async def test_transfer_not_yet_completed_does_not(
        self, worker: httpx.AsyncClient, clock: SettableClock
    ) -> None:
        pair = {"source_account_id": str(uuid.uuid4()), "target_account_id": str(uuid.uuid4())}
        await score(worker, **pair, amount_minor=2_500_00)
        again = await score(worker, **pair, amount_minor=2_500_00)
        assert "first_counterparty_large" in codes(again)

    async def test_declined_transfer_does_not(
        self, worker: httpx.AsyncClient, clock: SettableClock
    ) -> None:
        pair = {"source_account_id": str(uuid.uuid4()), "target_account_id": str(uuid.uuid4())}
        declined = await score(worker, **pair, amount_minor=50_000_00)
        assert declined["decision"] == "decline"
        assert (
            await report(worker, outcome_for(declined, "declined", clock.now))
        ).status_code == 201
        again = await score(worker, **pair, amount_minor=2_500_00)
        assert "first_counterparty_large" in codes(again)


class TestBrandNewAccount:
    async def test_fires_for_an_account_never_seen(
        self, worker: httpx.AsyncClient, ruleset: Ruleset
    ) -> None:
        threshold_minor = ruleset.rules.brand_new_account.threshold_minor["EUR"]
        fired = await score(worker, amount_minor=threshold_minor + 1)
        assert codes(fired) == ["brand_new_account"]
        assert "has no finished transfer yet" in fired["reasons"][0]["text"]

    async def test_fires_for_an_account_first_seen_hours_ago(
        self, worker: httpx.AsyncClient, ruleset: Ruleset, clock: SettableClock
    ) -> None:
        source = str(uuid.uuid4())
        await completed(worker, clock, source_account_id=source, amount_minor=5_00)
        clock.advance(5 * HOUR)
        threshold_minor = ruleset.rules.brand_new_account.threshold_minor["EUR"]
        fired = await score(worker, source_account_id=source, amount_minor=threshold_minor)
        assert codes(fired) == ["brand_new_account"]
        assert "first seen 5 hours ago" in fired["reasons"][0]["text"]

    async def test_quiet_once_the_account_is_old_enough(
        self, worker: httpx.AsyncClient, ruleset: Ruleset, clock: SettableClock
    ) -> None:
        rule = ruleset.rules.brand_new_account
        source = str(uuid.uuid4())
        received = await score(worker, target_account_id=source, amount_minor=5_00)
        first_seen = clock.now - timedelta(seconds=rule.age_seconds_max)
        assert (
            await report(worker, outcome_for(received, "completed", first_seen))
        ).status_code == 201
        quiet = await score(
            worker, source_account_id=source, amount_minor=rule.threshold_minor["EUR"]
        )
        assert codes(quiet) == []


class TestRecentDeclines:
    async def _declines(
        self, worker: httpx.AsyncClient, clock: SettableClock, source: str, count: int
    ) -> None:
        for _ in range(count):
            declined = await score(worker, source_account_id=source, amount_minor=50_000_00)
            assert declined["decision"] == "decline"
            assert (
                await report(worker, outcome_for(declined, "declined", clock.now))
            ).status_code == 201

    async def test_fires_after_declines_min_declines_in_a_day(
        self, worker: httpx.AsyncClient, ruleset: Ruleset, clock: SettableClock
    ) -> None:
        source = str(uuid.uuid4())
        declines_min = ruleset.rules.recent_declines.declines_min
        await self._declines(worker, clock, source, declines_min)
        clock.advance(DAY - timedelta(seconds=1))
        fired = await score(worker, source_account_id=source)
        assert codes(fired) == ["recent_declines"]

    async def test_quiet_below_declines_min(
        self, worker: httpx.AsyncClient, ruleset: Ruleset, clock: SettableClock
    ) -> None:
        source = str(uuid.uuid4())
        await self._declines(worker, clock, source, ruleset.rules.recent_declines.declines_min - 1)
        assert codes(await score(worker, source_account_id=source)) == []

    async def test_quiet_once_the_declines_are_a_day_old(
        self, worker: httpx.AsyncClient, ruleset: Ruleset, clock: SettableClock
    ) -> None:
        source = str(uuid.uuid4())
        await self._declines(worker, clock, source, ruleset.rules.recent_declines.declines_min)
        clock.advance(DAY)
        assert codes(await score(worker, source_account_id=source)) == []


class TestRoundAmountBurst:
    async def test_fires_on_the_third_round_amount_in_an_hour(
        self, worker: httpx.AsyncClient, ruleset: Ruleset, clock: SettableClock
    ) -> None:
        source = str(uuid.uuid4())
        earlier = ruleset.rules.round_amount.earlier_transfers_min
        pair = {"source_account_id": source, "target_account_id": str(uuid.uuid4())}
        # A known recipient and an old account, so only the round amounts speak.
        received = await score(worker, target_account_id=source, amount_minor=5_00)
        assert (
            await report(worker, outcome_for(received, "completed", clock.now - 30 * DAY))
        ).status_code == 201
        await completed(worker, clock, **pair, amount_minor=7_00)
        for _ in range(earlier):
            clock.advance(timedelta(minutes=10))
            assert codes(await score(worker, **pair, amount_minor=1_000_00)) == []
        clock.advance(timedelta(minutes=10))
        fired = await score(worker, **pair, amount_minor=2_000_00)
        assert codes(fired) == ["round_amount"]
        assert f"after {earlier} such round amounts" in fired["reasons"][0]["text"]

    async def test_quiet_after_amounts_that_are_not_round(
        self, worker: httpx.AsyncClient, ruleset: Ruleset, clock: SettableClock
    ) -> None:
        source = str(uuid.uuid4())
        for _ in range(ruleset.rules.round_amount.earlier_transfers_min):
            await score(worker, source_account_id=source, amount_minor=999_99)
        assert "round_amount" not in codes(
            await score(worker, source_account_id=source, amount_minor=1_000_00)
        )

    async def test_quiet_once_the_burst_is_an_hour_old(
        self, worker: httpx.AsyncClient, ruleset: Ruleset, clock: SettableClock
    ) -> None:
        source = str(uuid.uuid4())
        for _ in range(ruleset.rules.round_amount.earlier_transfers_min):
            await score(worker, source_account_id=source, amount_minor=1_000_00)
        clock.advance(HOUR)
        assert "round_amount" not in codes(
            await score(worker, source_account_id=source, amount_minor=1_000_00)
        )
