"""GET /v1/reviews (the review queue) and GET /v1/admin/rules/stats (each rule's record)."""

import uuid
from dataclasses import replace
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from contracts.fraud import FraudRuleCode
from fraud.resources import FraudResources
from fraud.ruleset import Ruleset
from fraud.tests.clock import SettableClock
from fraud.tests.support import outcome_for, report, score
from kit.resources import install_resources, resources_of
from kit.testing import assert_problem

REVIEW_AMOUNT_MINOR = 10_000_00
DECLINE_AMOUNT_MINOR = 50_000_00


class TestListReviews:
    async def test_valid(
        self, worker: httpx.AsyncClient, operator: httpx.AsyncClient, clock: SettableClock
    ) -> None:
        first = await score(worker, amount_minor=REVIEW_AMOUNT_MINOR)
        clock.advance(timedelta(seconds=1))
        await score(worker, amount_minor=10_00)
        await score(worker, amount_minor=DECLINE_AMOUNT_MINOR)
        second = await score(worker, amount_minor=REVIEW_AMOUNT_MINOR + 1)

        response = await operator.get("/v1/reviews")
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["next_cursor"] is None
        # Only reviews, oldest first, each with what a reviewer needs to decide.
        assert [item["transfer_id"] for item in page["items"]] == [
            first["transfer_id"],
            second["transfer_id"],
        ]
        item = page["items"][0]
        request = first["request"]
        assert item["source_account_id"] == request["source_account_id"]
        assert item["target_account_id"] == request["target_account_id"]
        assert (item["amount_minor"], item["currency"]) == (REVIEW_AMOUNT_MINOR, "EUR")
        assert item["score"] == first["score"]
        assert item["reasons"] == first["reasons"]
        assert item["ruleset_version"] == first["ruleset_version"]
        assert item["scored_at"] == first["created_at"]

    @pytest.mark.parametrize(
        ("final_status", "review_decision"),
        [("completed", "approve"), ("declined", "reject"), ("expired", None), ("cancelled", None)],
    )
    async def test_leaves_the_queue_with_its_outcome(
        self,
        worker: httpx.AsyncClient,
        operator: httpx.AsyncClient,
        clock: SettableClock,
        final_status: str,
        review_decision: str | None,
    ) -> None:
        waiting = await score(worker, amount_minor=REVIEW_AMOUNT_MINOR)
        staying = await score(worker, amount_minor=REVIEW_AMOUNT_MINOR)
        outcome = outcome_for(waiting, final_status, clock.now, review_decision=review_decision)
        assert (await report(worker, outcome)).status_code == 201
        items = (await operator.get("/v1/reviews")).json()["items"]
        assert [item["transfer_id"] for item in items] == [staying["transfer_id"]]

    async def test_pages_follow_the_cursor(
        self, worker: httpx.AsyncClient, operator: httpx.AsyncClient, clock: SettableClock
    ) -> None:
        scored = []
        for _ in range(5):
            scored.append((await score(worker, amount_minor=REVIEW_AMOUNT_MINOR))["transfer_id"])
            clock.advance(timedelta(seconds=1))
        seen: list[str] = []
        cursor = None
        for _ in range(5):
            params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            page = (await operator.get("/v1/reviews", params=params)).json()
            seen += [item["transfer_id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == scored

    async def test_empty_queue(
        self, worker: httpx.AsyncClient, operator: httpx.AsyncClient
    ) -> None:
        await score(worker)
        assert (await operator.get("/v1/reviews")).json() == {"items": [], "next_cursor": None}

    @pytest.mark.parametrize("limit", ["0", "501", "ten"])
    async def test_limit_is_capped(self, operator: httpx.AsyncClient, limit: str) -> None:
        response = await operator.get("/v1/reviews", params={"limit": limit})
        assert_problem(response, 422, "invalid-request")

    @pytest.mark.parametrize("cursor", ["not-base64!", "bm8tc2VwYXJhdG9y", "YXxi"])
    async def test_malformed_cursor(self, operator: httpx.AsyncClient, cursor: str) -> None:
        response = await operator.get("/v1/reviews", params={"cursor": cursor})
        assert_problem(response, 422, "invalid-cursor")


class TestRuleStats:
    async def _history(self, worker: httpx.AsyncClient, clock: SettableClock) -> None:
        """Four reviews (one approved, two rejected, one waiting), a decline, an approval."""
        verdicts = [
            ("completed", "approve"),
            ("declined", "reject"),
            ("declined", "reject"),
        ]
        for final_status, review_decision in verdicts:
            reviewed = await score(worker, amount_minor=REVIEW_AMOUNT_MINOR)
            assert reviewed["decision"] == "review"
            outcome = outcome_for(
                reviewed, final_status, clock.now, review_decision=review_decision
            )
            assert (await report(worker, outcome)).status_code == 201
        assert (await score(worker, amount_minor=REVIEW_AMOUNT_MINOR))["decision"] == "review"
        declined = await score(worker, amount_minor=DECLINE_AMOUNT_MINOR)
        assert (
            await report(worker, outcome_for(declined, "declined", clock.now))
        ).status_code == 201
        approved = await score(worker, amount_minor=10_00)
        assert (
            await report(worker, outcome_for(approved, "completed", clock.now))
        ).status_code == 201

    async def test_valid(
        self,
        worker: httpx.AsyncClient,
        operator: httpx.AsyncClient,
        clock: SettableClock,
        ruleset: Ruleset,
    ) -> None:
        await self._history(worker, clock)
        response = await operator.get("/v1/admin/rules/stats")
        assert response.status_code == 200, response.text
        report_body = response.json()
        assert (report_body["scored"], report_body["with_outcome"]) == (6, 5)
        rules = {rule["code"]: rule for rule in report_body["rules"]}
        # Every rule is listed, those that never fired too.
        assert [rule["code"] for rule in report_body["rules"]] == [
            code.value for code in FraudRuleCode
        ]
        assert rules["velocity"]["fired"] == 0
        assert rules["velocity"]["precision"] is None

        large = rules["large_amount"]
        assert large["fired"] == 5
        assert large["with_outcome"] == 4
        assert (large["completed"], large["declined"]) == (1, 3)
        assert (large["reviewed"], large["review_approved"], large["review_rejected"]) == (3, 1, 2)
        assert large["precision"] == pytest.approx(2 / 3, abs=1e-4)
        # Declined without a human verdict: no evidence either way.
        very_large = rules["very_large_amount"]
        assert (very_large["fired"], very_large["declined"], very_large["reviewed"]) == (1, 1, 0)
        assert very_large["precision"] is None

    async def test_filters_by_ruleset_version(
        self,
        worker: httpx.AsyncClient,
        operator: httpx.AsyncClient,
        clock: SettableClock,
        ruleset: Ruleset,
    ) -> None:
        await self._history(worker, clock)
        mine = await operator.get(
            "/v1/admin/rules/stats", params={"ruleset_version": ruleset.version}
        )
        assert mine.json()["scored"] == 6
        other = await operator.get("/v1/admin/rules/stats", params={"ruleset_version": "older-1"})
        assert other.json()["scored"] == 0
        assert all(rule["fired"] == 0 for rule in other.json()["rules"])

    async def test_filters_by_period(
        self,
        app: FastAPI,
        worker: httpx.AsyncClient,
        operator: httpx.AsyncClient,
        clock: SettableClock,
    ) -> None:
        started = clock.now
        await self._history(worker, clock)
        clock.advance(timedelta(days=40))
        # The default period is the last 30 days.
        assert (await operator.get("/v1/admin/rules/stats")).json()["scored"] == 0
        since = (started - timedelta(seconds=1)).isoformat()
        until = (started + timedelta(seconds=1)).isoformat()
        response = await operator.get(
            "/v1/admin/rules/stats", params={"since": since, "until": until}
        )
        assert response.json()["scored"] == 6

    @pytest.mark.parametrize(
        ("params", "slug"),
        [
            ({"since": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"}, "invalid-period"),
            ({"since": "2024-11-01T00:00:00Z", "until": "2026-11-01T00:00:00Z"}, "invalid-period"),
            ({"since": "2026-11-01T00:00:00"}, "timezone-required"),
            ({"ruleset_version": "with space"}, "invalid-request"),
        ],
    )
    async def test_bad_period_is_refused(
        self, operator: httpx.AsyncClient, params: dict[str, str], slug: str
    ) -> None:
        response = await operator.get("/v1/admin/rules/stats", params=params)
        assert_problem(response, 422, slug)


async def test_review_item_uses_the_stored_reasons(
    app: FastAPI, worker: httpx.AsyncClient, operator: httpx.AsyncClient, ruleset: Ruleset
) -> None:
    """A later ruleset does not rewrite why a waiting transfer was stopped."""
    waiting = await score(worker, amount_minor=REVIEW_AMOUNT_MINOR)
    later = Ruleset.model_validate({**ruleset.model_dump(), "version": "later-1"})
    install_resources(app, replace(resources_of(app, FraudResources), ruleset=later))
    [item] = (await operator.get("/v1/reviews")).json()["items"]
    assert item["ruleset_version"] == ruleset.version
    assert item["reasons"] == waiting["reasons"]
    assert uuid.UUID(item["transfer_id"])
