"""A shadow ruleset is evaluated beside the live one, its verdicts recorded and logged,
and never changes a decision."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from fraud import repository
from fraud.config import Settings
from fraud.main import MIGRATIONS_PATH, create_app
from fraud.ruleset import DEFAULT_RULESET_PATH, RulesetError
from fraud.tests.clock import SettableClock
from fraud.tests.support import Clients, clients, completed, logged_events, score, score_request
from kit.testing import TestIssuer, assert_problem

DEFAULT_TEXT = DEFAULT_RULESET_PATH.read_text(encoding="utf-8")
# The candidate: same rules, much lower thresholds, so it stops what the live one lets by.
CANDIDATE_TEXT = (
    DEFAULT_TEXT.replace('version = "2026.11.2"', 'version = "candidate-1"')
    .replace("review_at = 400", "review_at = 100")
    .replace("decline_at = 800", "decline_at = 200")
)
STARTED = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
# Large enough for first-counterparty and new-account points (250), below live review.
PAID_AT_ONCE_MINOR = 2_000_00


@pytest.fixture
def candidate_path(tmp_path: Path) -> Path:
    assert "candidate-1" in CANDIDATE_TEXT
    assert "review_at = 100" in CANDIDATE_TEXT
    path = tmp_path / "candidate.toml"
    path.write_text(CANDIDATE_TEXT, encoding="utf-8")
    return path


async def _app(
    database_factory: Any, clock: SettableClock, issuer: TestIssuer, shadow_path: Path | None
) -> FastAPI:
    url = await database_factory(MIGRATIONS_PATH)
    settings = Settings(database_url=url, log_json=True, shadow_ruleset_path=shadow_path)
    return create_app(settings, token_verifier=issuer.verifier, clock=clock)


@pytest.fixture
async def shadowed(
    database_factory: Any, clock: SettableClock, issuer: TestIssuer, candidate_path: Path
) -> AsyncIterator[Clients]:
    """A fraud service with the candidate ruleset running in the shadow."""
    app = await _app(database_factory, clock, issuer, candidate_path)
    async with clients(app, issuer) as callers:
        yield callers


async def _shadow_scores(operator: httpx.AsyncClient, transfer_id: str) -> list[dict[str, Any]]:
    response = await operator.get(f"/v1/scores/{transfer_id}/shadow")
    assert response.status_code == 200, response.text
    body: list[dict[str, Any]] = response.json()
    return body


class TestShadowScoring:
    async def test_verdict_recorded_beside_the_live_decision(self, shadowed: Clients) -> None:
        scored = await score(shadowed.worker, amount_minor=PAID_AT_ONCE_MINOR)
        assert (scored["decision"], scored["ruleset_version"]) == ("approve", "2026.11.2")
        [shadow] = await _shadow_scores(shadowed.operator, scored["transfer_id"])
        assert shadow["ruleset_version"] == "candidate-1"
        assert (shadow["decision"], shadow["score"]) == ("decline", scored["score"])
        assert shadow["reasons"] == scored["reasons"]
        assert (shadow["live_decision"], shadow["live_ruleset_version"]) == (
            "approve",
            "2026.11.2",
        )
        # The stored live score is what the saga was told.
        stored = await shadowed.worker.get(f"/v1/scores/{scored['transfer_id']}")
        assert stored.json()["decision"] == "approve"

    async def test_live_decisions_are_those_made_without_a_shadow(
        self, database_factory: Any, candidate_path: Path, issuer: TestIssuer
    ) -> None:
        """The same traffic through a bank with and one without the shadow: same answers."""
        answers: dict[bool, list[dict[str, Any]]] = {}
        source = str(uuid.uuid4())
        traffic = [
            score_request(source_account_id=source, amount_minor=amount_minor)
            for amount_minor in (10_00, PAID_AT_ONCE_MINOR, 9_00, 10_000_00, 1_000_00, 20_00)
        ] + [score_request(amount_minor=50_000_00)]
        for with_shadow in (False, True):
            clock = SettableClock(STARTED)
            shadow_path = candidate_path if with_shadow else None
            app = await _app(database_factory, clock, issuer, shadow_path)
            async with clients(app, issuer) as callers:
                answers[with_shadow] = []
                for request in traffic:
                    response = await callers.worker.post("/v1/scores", json=request)
                    assert response.status_code == 201, response.text
                    answers[with_shadow].append(response.json())
        assert answers[True] == answers[False]
        assert {answer["decision"] for answer in answers[True]} == {"approve", "review", "decline"}

    async def test_replay_records_nothing_new(self, shadowed: Clients) -> None:
        scored = await score(shadowed.worker, amount_minor=PAID_AT_ONCE_MINOR)
        replay = await shadowed.worker.post("/v1/scores", json=scored["request"])
        assert replay.status_code == 200
        assert len(await _shadow_scores(shadowed.operator, scored["transfer_id"])) == 1

    async def test_verdict_is_logged(self, shadowed: Clients) -> None:
        with logged_events() as events:
            scored = await score(shadowed.worker, amount_minor=PAID_AT_ONCE_MINOR)
        [logged] = [event for event in events if event["event"] == "score.shadow_evaluated"]
        assert logged["transfer_id"] == scored["transfer_id"]
        assert (logged["live_decision"], logged["shadow_decision"]) == ("approve", "decline")
        assert logged["shadow_ruleset_version"] == "candidate-1"
        assert logged["agrees"] is False

    async def test_failing_shadow_costs_the_live_score_nothing(
        self, shadowed: Clients, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        async def broken_insert(session: AsyncSession, **_: object) -> None:
            # A real database error, inside the shadow's savepoint.
            await session.execute(text("SELECT 1 / 0"))

        monkeypatch.setattr(repository, "insert_shadow_score", broken_insert)
        with logged_events() as events:
            scored = await score(shadowed.worker, amount_minor=PAID_AT_ONCE_MINOR)
        assert scored["decision"] == "approve"
        stored = await shadowed.worker.get(f"/v1/scores/{scored['transfer_id']}")
        assert stored.status_code == 200
        assert await _shadow_scores(shadowed.operator, scored["transfer_id"]) == []
        assert "score.shadow_failed" in [event["event"] for event in events]

    async def test_shadow_verdicts_of_an_unscored_transfer(self, shadowed: Clients) -> None:
        response = await shadowed.operator.get(f"/v1/scores/{uuid.uuid4()}/shadow")
        assert_problem(response, 404, "score-not-found")

    async def test_no_shadow_no_verdicts(
        self, worker: httpx.AsyncClient, operator: httpx.AsyncClient
    ) -> None:
        scored = await score(worker, amount_minor=PAID_AT_ONCE_MINOR)
        assert await _shadow_scores(operator, scored["transfer_id"]) == []
        comparison = (await operator.get("/v1/admin/shadow/comparison")).json()
        assert (comparison["shadow_ruleset_version"], comparison["evaluated"]) == (None, 0)


class TestShadowComparison:
    async def test_valid(self, shadowed: Clients, clock: SettableClock) -> None:
        source = str(uuid.uuid4())
        await completed(shadowed.worker, clock, source_account_id=source, amount_minor=10_00)
        await score(shadowed.worker, amount_minor=PAID_AT_ONCE_MINOR)
        await score(shadowed.worker, amount_minor=PAID_AT_ONCE_MINOR)
        await score(shadowed.worker, amount_minor=10_000_00)
        response = await shadowed.operator.get("/v1/admin/shadow/comparison")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["shadow_ruleset_version"] == "candidate-1"
        assert (body["evaluated"], body["agreed"]) == (4, 1)
        assert sorted((pair["live"], pair["shadow"], pair["count"]) for pair in body["pairs"]) == [
            ("approve", "approve", 1),
            ("approve", "decline", 2),
            ("review", "decline", 1),
        ]

    async def test_other_version(self, shadowed: Clients) -> None:
        await score(shadowed.worker, amount_minor=PAID_AT_ONCE_MINOR)
        response = await shadowed.operator.get(
            "/v1/admin/shadow/comparison", params={"ruleset_version": "candidate-0"}
        )
        assert (response.json()["shadow_ruleset_version"], response.json()["evaluated"]) == (
            "candidate-0",
            0,
        )


class TestShadowConfiguration:
    def test_shadow_with_the_live_version_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "same.toml"
        path.write_text(DEFAULT_TEXT, encoding="utf-8")
        settings = Settings(
            database_url="postgresql://fraud@localhost:1/unused", shadow_ruleset_path=path
        )
        with pytest.raises(RulesetError, match="version of its own"):
            create_app(settings)

    def test_broken_shadow_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "broken.toml"
        path.write_text(CANDIDATE_TEXT.replace("review_at = 100", "review_at = 900"), "utf-8")
        settings = Settings(
            database_url="postgresql://fraud@localhost:1/unused", shadow_ruleset_path=path
        )
        with pytest.raises(RulesetError, match=str(path)):
            create_app(settings)
