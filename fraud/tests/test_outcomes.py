"""POST /v1/outcomes and the per-account features it feeds (read back through
GET /v1/admin/accounts/{id}/features, which shows what scoring would see)."""

import asyncio
import uuid
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from fraud.ruleset import AMOUNT_HISTORY_MAX
from fraud.tests.clock import SettableClock
from fraud.tests.support import completed, features, outcome_for, report, score
from kit.testing import assert_problem

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)


class TestRecordOutcome:
    async def test_valid(
        self, worker: httpx.AsyncClient, operator: httpx.AsyncClient, clock: SettableClock
    ) -> None:
        scored = await score(worker, amount_minor=42_00)
        outcome = outcome_for(scored, "completed", clock.now)
        response = await report(worker, outcome)
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["transfer_id"] == outcome["transfer_id"]
        assert body["final_status"] == "completed"
        source = await features(operator, scored["request"]["source_account_id"])
        assert source["transfers_last_hour"] == 1
        assert source["amount_last_hour_minor"] == 42_00
        assert source["completed_transfers"] == 1
        assert source["typical_amount_minor"] == 42_00

    async def test_same_report_twice_changes_the_features_once(
        self, worker: httpx.AsyncClient, operator: httpx.AsyncClient, clock: SettableClock
    ) -> None:
        scored = await score(worker, amount_minor=42_00)
        source_id = scored["request"]["source_account_id"]
        outcome = outcome_for(scored, "completed", clock.now)
        first = await report(worker, outcome)
        after_first = await features(operator, source_id)
        second = await report(worker, outcome)
        assert first.status_code == 201
        assert second.status_code == 200
        assert second.json() == first.json()
        after_second = await features(operator, source_id)
        assert after_second == after_first
        assert after_second["completed_transfers"] == 1
        assert after_second["transfers_last_day"] == 1
        assert after_second["amount_last_day_minor"] == 42_00
        assert after_second["typical_sample_size"] == 1

    async def test_concurrent_identical_reports_agree(
        self, worker: httpx.AsyncClient, operator: httpx.AsyncClient, clock: SettableClock
    ) -> None:
        for _ in range(3):
            scored = await score(worker)
            outcome = outcome_for(scored, "completed", clock.now)
            responses = await asyncio.gather(report(worker, outcome), report(worker, outcome))
            assert sorted(response.status_code for response in responses) == [200, 201]
            source = await features(operator, scored["request"]["source_account_id"])
            assert source["completed_transfers"] == 1

    async def test_opposite_transfers_between_two_accounts_do_not_deadlock(
        self, worker: httpx.AsyncClient, operator: httpx.AsyncClient, clock: SettableClock
    ) -> None:
        alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
        outcomes = []
        for _ in range(5):
            for source, target in ((alice, bob), (bob, alice)):
                scored = await score(worker, source_account_id=source, target_account_id=target)
                outcomes.append(outcome_for(scored, "completed", clock.now))
        responses = await asyncio.gather(*(report(worker, outcome) for outcome in outcomes))
        assert [response.status_code for response in responses] == [201] * len(outcomes)
        assert (await features(operator, alice))["completed_transfers"] == 5
        assert (await features(operator, bob))["completed_transfers"] == 5

    @pytest.mark.parametrize(
        "change",
        [
            pytest.param({"final_status": "cancelled"}, id="final_status"),
            pytest.param({"review_decision": "approve"}, id="review_decision"),
            pytest.param({"occurred_at": "2026-11-28T09:00:01+00:00"}, id="occurred_at"),
        ],
    )
    async def test_another_outcome_for_the_same_transfer_conflicts(
        self,
        worker: httpx.AsyncClient,
        operator: httpx.AsyncClient,
        clock: SettableClock,
        change: dict[str, Any],
    ) -> None:
        scored = await score(worker)
        outcome = outcome_for(scored, "completed", clock.now)
        assert (await report(worker, outcome)).status_code == 201
        before = await features(operator, scored["request"]["source_account_id"])

        response = await report(worker, {**outcome, **change})
        body = assert_problem(response, 409, "outcome-conflict")
        assert body["fields"] == list(change)
        assert await features(operator, scored["request"]["source_account_id"]) == before

    async def test_same_instant_in_another_zone_is_the_same_outcome(
        self, worker: httpx.AsyncClient, clock: SettableClock
    ) -> None:
        scored = await score(worker)
        outcome = outcome_for(scored, "completed", clock.now)
        assert (await report(worker, outcome)).status_code == 201
        in_paris = clock.now.astimezone(ZoneInfo("Europe/Paris"))
        again = await report(worker, {**outcome, "occurred_at": in_paris.isoformat()})
        assert again.status_code == 200, again.text

    @pytest.mark.parametrize(
        "change",
        [
            pytest.param({"amount_minor": 999}, id="amount_minor"),
            pytest.param({"source_account_id": str(uuid.uuid4())}, id="source_account_id"),
        ],
    )
    async def test_details_other_than_the_score_are_refused(
        self,
        worker: httpx.AsyncClient,
        operator: httpx.AsyncClient,
        clock: SettableClock,
        change: dict[str, Any],
    ) -> None:
        scored = await score(worker)
        outcome = {**outcome_for(scored, "completed", clock.now), **change}
        response = await report(worker, outcome)
        body = assert_problem(response, 409, "outcome-score-mismatch")
        assert body["fields"] == list(change)
        # Nothing was recorded: the same transfer can still be reported correctly.
        source = await features(operator, outcome["source_account_id"])
        assert source["first_seen_at"] is None
        assert (
            await report(worker, outcome_for(scored, "completed", clock.now))
        ).status_code == 201

    async def test_transfer_never_scored_is_recorded(
        self, worker: httpx.AsyncClient, operator: httpx.AsyncClient, clock: SettableClock
    ) -> None:
        # Rejected by validation or for want of funds: it ends before the fraud step.
        outcome: dict[str, Any] = {
            "transfer_id": str(uuid.uuid4()),
            "source_account_id": str(uuid.uuid4()),
            "target_account_id": str(uuid.uuid4()),
            "amount_minor": 10_00,
            "currency": "EUR",
            "final_status": "rejected",
            "occurred_at": clock.now.isoformat(),
        }
        assert (await report(worker, outcome)).status_code == 201
        source = await features(operator, outcome["source_account_id"])
        assert source["first_seen_at"] is not None
        assert source["transfers_last_day"] == 0
        assert source["completed_transfers"] == 0

    async def test_timestamp_without_zone_is_refused(
        self, worker: httpx.AsyncClient, operator: httpx.AsyncClient, clock: SettableClock
    ) -> None:
        scored = await score(worker)
        outcome = outcome_for(scored, "completed", clock.now.replace(tzinfo=None))
        assert_problem(await report(worker, outcome), 422, "timezone-required")
        assert (await features(operator, scored["request"]["source_account_id"]))[
            "completed_transfers"
        ] == 0

    @pytest.mark.parametrize(
        "change",
        [
            pytest.param({"final_status": "pending"}, id="not-terminal"),
            pytest.param({"review_decision": "maybe"}, id="unknown-review-decision"),
            pytest.param({"amount_minor": 0}, id="zero-amount"),
            pytest.param({"amount_minor": 1.5}, id="float-amount"),
            pytest.param({"currency": "XTS"}, id="unknown-currency"),
            pytest.param({"note": "x"}, id="unknown-field"),
        ],
    )
    async def test_malformed_report_is_refused(
        self, worker: httpx.AsyncClient, clock: SettableClock, change: dict[str, Any]
    ) -> None:
        scored = await score(worker)
        outcome = {**outcome_for(scored, "completed", clock.now), **change}
        assert_problem(await report(worker, outcome), 422, "invalid-request")


class TestWindows:
    async def test_hour_and_day_roll_with_the_clock(
        self, worker: httpx.AsyncClient, operator: httpx.AsyncClient, clock: SettableClock
    ) -> None:
        scored = await completed(worker, clock, amount_minor=30_00)
        source_id = scored["request"]["source_account_id"]
        started = clock.now

        clock.now = started + HOUR - SECOND
        inside_hour = await features(operator, source_id)
        assert (inside_hour["transfers_last_hour"], inside_hour["amount_last_hour_minor"]) == (
            1,
            30_00,
        )
        clock.now = started + HOUR
        past_hour = await features(operator, source_id)
        assert (past_hour["transfers_last_hour"], past_hour["amount_last_hour_minor"]) == (0, 0)
        assert (past_hour["transfers_last_day"], past_hour["amount_last_day_minor"]) == (1, 30_00)
        clock.now = started + DAY - SECOND
        assert (await features(operator, source_id))["transfers_last_day"] == 1
        clock.now = started + DAY
        past_day = await features(operator, source_id)
        assert (past_day["transfers_last_day"], past_day["amount_last_day_minor"]) == (0, 0)
        # The windows forget; the account's history does not.
        assert past_day["completed_transfers"] == 1
        assert past_day["typical_amount_minor"] == 30_00

    async def test_outcomes_are_placed_when_they_occurred(
        self, worker: httpx.AsyncClient, operator: httpx.AsyncClient, clock: SettableClock
    ) -> None:
        scored = await score(worker)
        # Reported late: it ended two hours ago, so it is in the day but not the hour.
        outcome = outcome_for(scored, "completed", clock.now - 2 * HOUR)
        assert (await report(worker, outcome)).status_code == 201
        source = await features(operator, scored["request"]["source_account_id"])
        assert (source["transfers_last_hour"], source["transfers_last_day"]) == (0, 1)

    async def test_sums_count_only_the_currency_asked_for(
        self, worker: httpx.AsyncClient, operator: httpx.AsyncClient, clock: SettableClock
    ) -> None:
        source_id = str(uuid.uuid4())
        await completed(worker, clock, source_account_id=source_id, amount_minor=10_00)
        await completed(
            worker, clock, source_account_id=source_id, amount_minor=700, currency="JPY"
        )
        in_euro = await features(operator, source_id, "EUR")
        assert (in_euro["transfers_last_hour"], in_euro["amount_last_hour_minor"]) == (2, 10_00)
        in_yen = await features(operator, source_id, "JPY")
        assert in_yen["amount_last_hour_minor"] == 700

    async def test_transfer_in_flight_counts_once_before_and_after_its_outcome(
        self, worker: httpx.AsyncClient, operator: httpx.AsyncClient, clock: SettableClock
    ) -> None:
        scored = await score(worker, amount_minor=15_00)
        source_id = scored["request"]["source_account_id"]
        in_flight = await features(operator, source_id)
        assert (in_flight["transfers_last_hour"], in_flight["amount_last_hour_minor"]) == (
            1,
            15_00,
        )
        clock.advance(timedelta(seconds=5))
        assert (
            await report(worker, outcome_for(scored, "completed", clock.now))
        ).status_code == 201
        done = await features(operator, source_id)
        assert (done["transfers_last_hour"], done["amount_last_hour_minor"]) == (1, 15_00)

    @pytest.mark.parametrize("final_status", ["rejected", "expired", "cancelled"])
    async def test_transfer_that_moved_nothing_drops_out(
        self,
        worker: httpx.AsyncClient,
        operator: httpx.AsyncClient,
        clock: SettableClock,
        final_status: str,
    ) -> None:
        scored = await score(worker)
        assert (
            await report(worker, outcome_for(scored, final_status, clock.now))
        ).status_code == 201
        source = await features(operator, scored["request"]["source_account_id"])
        assert (source["transfers_last_day"], source["declines_last_day"]) == (0, 0)
        assert source["completed_transfers"] == 0

    async def test_declines_are_counted_apart(
        self, worker: httpx.AsyncClient, operator: httpx.AsyncClient, clock: SettableClock
    ) -> None:
        declined = await score(worker, amount_minor=50_000_00)
        assert declined["decision"] == "decline"
        source_id = declined["request"]["source_account_id"]
        # Counted from the score, before the saga reports it ...
        before = await features(operator, source_id)
        assert (before["declines_last_day"], before["transfers_last_day"]) == (1, 0)
        # ... and once from the outcome after.
        assert (
            await report(worker, outcome_for(declined, "declined", clock.now))
        ).status_code == 201
        after = await features(operator, source_id)
        assert (after["declines_last_day"], after["transfers_last_day"]) == (1, 0)
        # A reviewer's rejection is a decline too.
        reviewed = await score(worker, source_account_id=source_id, amount_minor=10_000_00)
        assert reviewed["decision"] == "review"
        rejected = outcome_for(reviewed, "declined", clock.now, review_decision="reject")
        assert (await report(worker, rejected)).status_code == 201
        assert (await features(operator, source_id))["declines_last_day"] == 2
        clock.advance(DAY)
        assert (await features(operator, source_id))["declines_last_day"] == 0


class TestAccountHistory:
    async def test_typical_amount_is_the_median_and_its_spread(
        self, worker: httpx.AsyncClient, operator: httpx.AsyncClient, clock: SettableClock
    ) -> None:
        source_id = str(uuid.uuid4())
        for amount_minor in (10_00, 20_00, 30_00, 40_00, 5_000_00):
            await completed(worker, clock, source_account_id=source_id, amount_minor=amount_minor)
        source = await features(operator, source_id)
        assert source["typical_amount_minor"] == 30_00
        assert source["typical_spread_minor"] == 10_00
        assert source["typical_sample_size"] == 5

    async def test_only_completed_transfers_shape_it(
        self, worker: httpx.AsyncClient, operator: httpx.AsyncClient, clock: SettableClock
    ) -> None:
        source_id = str(uuid.uuid4())
        await completed(worker, clock, source_account_id=source_id, amount_minor=20_00)
        cancelled = await score(worker, source_account_id=source_id, amount_minor=900_00)
        assert (
            await report(worker, outcome_for(cancelled, "cancelled", clock.now))
        ).status_code == 201
        source = await features(operator, source_id)
        assert (source["typical_amount_minor"], source["typical_sample_size"]) == (20_00, 1)

    async def test_history_is_bounded_to_the_newest(
        self, worker: httpx.AsyncClient, operator: httpx.AsyncClient, clock: SettableClock
    ) -> None:
        source_id = str(uuid.uuid4())
        # Older amounts are large; once they are pushed out, the median is the small ones'.
        for _ in range(5):
            await completed(worker, clock, source_account_id=source_id, amount_minor=900_00)
        for _ in range(AMOUNT_HISTORY_MAX):
            clock.advance(timedelta(minutes=1))
            await completed(worker, clock, source_account_id=source_id, amount_minor=10_00)
        source = await features(operator, source_id)
        assert source["completed_transfers"] == 5 + AMOUNT_HISTORY_MAX
        assert source["typical_sample_size"] == AMOUNT_HISTORY_MAX
        assert (source["typical_amount_minor"], source["typical_spread_minor"]) == (10_00, 0)

    async def test_typical_amount_is_per_currency(
        self, worker: httpx.AsyncClient, operator: httpx.AsyncClient, clock: SettableClock
    ) -> None:
        source_id = str(uuid.uuid4())
        await completed(worker, clock, source_account_id=source_id, amount_minor=20_00)
        assert (await features(operator, source_id, "USD"))["typical_amount_minor"] is None

    async def test_first_seen_is_the_earliest_outcome_on_either_side(
        self, worker: httpx.AsyncClient, operator: httpx.AsyncClient, clock: SettableClock
    ) -> None:
        account_id = str(uuid.uuid4())
        unseen = await features(operator, account_id)
        assert (unseen["first_seen_at"], unseen["age_seconds"]) == (None, None)
        # Money received three days ago, reported after a transfer it sent an hour ago.
        sent = await score(worker, source_account_id=account_id)
        assert (
            await report(worker, outcome_for(sent, "completed", clock.now - HOUR))
        ).status_code == 201
        received = await score(worker, target_account_id=account_id)
        outcome = outcome_for(received, "completed", clock.now - 3 * DAY)
        assert (await report(worker, outcome)).status_code == 201
        seen = await features(operator, account_id)
        assert seen["age_seconds"] == int((3 * DAY).total_seconds())
        clock.advance(DAY)
        assert (await features(operator, account_id))["age_seconds"] == int(
            (4 * DAY).total_seconds()
        )

    async def test_counterparty_becomes_known_once_money_reached_it(
        self, worker: httpx.AsyncClient, operator: httpx.AsyncClient, clock: SettableClock
    ) -> None:
        pair = {"source_account_id": str(uuid.uuid4()), "target_account_id": str(uuid.uuid4())}
        scored = await score(worker, **pair)
        params = {"target_account_id": pair["target_account_id"]}
        assert (await features(operator, pair["source_account_id"], **params))[
            "counterparty_known"
        ] is False
        assert (
            await report(worker, outcome_for(scored, "completed", clock.now))
        ).status_code == 201
        assert (await features(operator, pair["source_account_id"], **params))[
            "counterparty_known"
        ] is True
        # Without a target, the question is not asked.
        assert (await features(operator, pair["source_account_id"]))["counterparty_known"] is None


class TestAccountFeatures:
    async def test_unknown_account_reads_empty(self, operator: httpx.AsyncClient) -> None:
        body = await features(operator, str(uuid.uuid4()))
        assert body["transfers_last_day"] == 0
        assert body["declines_last_day"] == 0
        assert body["typical_amount_minor"] is None
        assert body["denied"] is False

    @pytest.mark.parametrize("currency", ["XTS", "eur", "EURO"])
    async def test_unknown_currency_is_refused(
        self, operator: httpx.AsyncClient, currency: str
    ) -> None:
        response = await operator.get(
            f"/v1/admin/accounts/{uuid.uuid4()}/features", params={"currency": currency}
        )
        assert_problem(response, 422, "invalid-request")

    async def test_currency_is_required(self, operator: httpx.AsyncClient) -> None:
        response = await operator.get(f"/v1/admin/accounts/{uuid.uuid4()}/features")
        assert_problem(response, 422, "invalid-request")
