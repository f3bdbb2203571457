"""The fraud service's audit trail: each deny-list change is recorded once, by whom, in the
transaction that makes it; a refused or failed change records nothing; scores are left
to the saga's trail; only `audit:read` opens the trail."""

import asyncio
import json
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.audit import AuditEventCreate
from contracts.auth import PrincipalKind, Scope
from fraud import repository
from fraud.tests.clock import SettableClock
from fraud.tests.support import OPERATOR_ID, features, score
from kit.testing import TestIssuer, assert_problem

AUDIT_PATHS = (
    "/v1/admin/audit-events",
    "/v1/admin/audit-events/verify",
    "/v1/admin/audit-events/export",
)
ENTRY = {"reason": "Mule account reported by the police (case 2026-118)", "listed_by": OPERATOR_ID}


async def _events(operator: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
    response = await operator.get("/v1/admin/audit-events", params={"limit": "500", **params})
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    assert page["next_cursor"] is None
    items: list[dict[str, Any]] = page["items"]
    return items


async def _deny(operator: httpx.AsyncClient, account_id: str, **entry: Any) -> httpx.Response:
    return await operator.put(f"/v1/admin/deny-list/{account_id}", json={**ENTRY, **entry})


class TestDenyListListing:
    async def test_writes_one_event(
        self, operator: httpx.AsyncClient, clock: SettableClock
    ) -> None:
        account_id = str(uuid.uuid4())
        response = await _deny(operator, account_id)
        assert response.status_code == 201, response.text
        [event] = await _events(operator, account_id=account_id)
        assert event["service"] == "fraud"
        assert event["action"] == "deny_list.entry_added"
        assert (event["actor_id"], event["actor_type"]) == (OPERATOR_ID, "operator")
        assert (event["subject_type"], event["subject_id"]) == ("deny_list_entry", account_id)
        assert event["account_ids"] == [account_id]
        assert event["transfer_id"] is None
        assert event["before"] is None
        assert event["after"] == {
            "reason": ENTRY["reason"],
            "listed_by": OPERATOR_ID,
            "listed_at": clock.now.isoformat(),
        }
        assert event["outcome"] == "succeeded"
        assert event["occurred_at"] == response.json()["listed_at"]
        # The event names the request that made the change, as its response did.
        assert event["request_id"] == response.headers["x-request-id"]

    async def test_listing_again_writes_nothing(
        self, operator: httpx.AsyncClient, clock: SettableClock
    ) -> None:
        account_id = str(uuid.uuid4())
        await _deny(operator, account_id)
        clock.advance(timedelta(minutes=5))
        again = await _deny(operator, account_id, reason="Listed twice")
        assert again.status_code == 200
        assert len(await _events(operator, account_id=account_id)) == 1

    async def test_concurrent_listings_write_one_event(self, operator: httpx.AsyncClient) -> None:
        account_id = str(uuid.uuid4())
        responses = await asyncio.gather(*(_deny(operator, account_id) for _ in range(4)))
        assert sorted(response.status_code for response in responses) == [200, 200, 200, 201]
        assert len(await _events(operator, account_id=account_id)) == 1

    @pytest.mark.parametrize(
        "entry",
        [
            pytest.param({"reason": ""}, id="malformed"),
            pytest.param({"listed_at": "2020-01-01T00:00:00Z"}, id="mass-assignment"),
            pytest.param({"listed_by": "ops-ben"}, id="listed-by-someone-else"),
        ],
    )
    async def test_refused_listing_writes_nothing(
        self, operator: httpx.AsyncClient, entry: dict[str, Any]
    ) -> None:
        account_id = str(uuid.uuid4())
        assert (await _deny(operator, account_id, **entry)).status_code == 422
        assert await _events(operator) == []

    async def test_customer_listing_writes_nothing(
        self, anonymous: httpx.AsyncClient, operator: httpx.AsyncClient, issuer: TestIssuer
    ) -> None:
        account_id = str(uuid.uuid4())
        response = await anonymous.put(
            f"/v1/admin/deny-list/{account_id}",
            json=ENTRY,
            headers=issuer.customer(str(uuid.uuid4())),
        )
        assert_problem(response, 403, "insufficient-scope")
        assert await _events(operator) == []


class TestDenyListRemoval:
    async def test_writes_one_event_with_the_entry_it_removed(
        self, operator: httpx.AsyncClient, issuer: TestIssuer, clock: SettableClock
    ) -> None:
        account_id = str(uuid.uuid4())
        await _deny(operator, account_id)
        clock.advance(timedelta(days=2))
        # Someone else takes it off: the event names who removed it, the entry who listed it.
        response = await operator.delete(
            f"/v1/admin/deny-list/{account_id}", headers=issuer.operator("ops-ben")
        )
        assert response.status_code == 204
        added, removed = await _events(operator, account_id=account_id)
        assert removed["action"] == "deny_list.entry_removed"
        assert (removed["actor_id"], removed["actor_type"]) == ("ops-ben", "operator")
        assert removed["before"] == added["after"]
        assert removed["after"] is None
        assert removed["occurred_at"] == clock.now.isoformat().replace("+00:00", "Z")
        assert removed["request_id"] == response.headers["x-request-id"]

    async def test_removing_an_unlisted_account_writes_nothing(
        self, operator: httpx.AsyncClient
    ) -> None:
        response = await operator.delete(f"/v1/admin/deny-list/{uuid.uuid4()}")
        assert_problem(response, 404, "deny-list-entry-not-found")
        assert await _events(operator) == []


class TestSameTransaction:
    """No change without its event: when the event cannot be written, the change is undone."""

    @pytest.fixture
    def failing_audit(self, monkeypatch: pytest.MonkeyPatch) -> None:
        async def broken_append(session: AsyncSession, event: AuditEventCreate) -> bool:
            await session.execute(text("SELECT 1 / 0"))  # a real database error, mid-transaction
            raise AssertionError("unreachable")

        monkeypatch.setattr(repository, "append_audit", broken_append)

    @pytest.mark.usefixtures("failing_audit")
    async def test_listing_is_undone(self, operator: httpx.AsyncClient) -> None:
        account_id = str(uuid.uuid4())
        response = await _deny(operator, account_id)
        assert_problem(response, 500, "internal-error")
        assert (await features(operator, account_id))["denied"] is False
        listed = (await operator.get("/v1/admin/deny-list")).json()["items"]
        assert listed == []

    async def test_removal_is_undone(
        self, operator: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        account_id = str(uuid.uuid4())
        assert (await _deny(operator, account_id)).status_code == 201
        appended = repository.append_audit

        async def broken_append(session: AsyncSession, event: AuditEventCreate) -> bool:
            await session.execute(text("SELECT 1 / 0"))
            return await appended(session, event)

        monkeypatch.setattr(repository, "append_audit", broken_append)
        response = await operator.delete(f"/v1/admin/deny-list/{account_id}")
        assert_problem(response, 500, "internal-error")
        assert (await features(operator, account_id))["denied"] is True
        monkeypatch.undo()
        assert len(await _events(operator, account_id=account_id)) == 1


class TestScores:
    async def test_scoring_writes_no_event(
        self, worker: httpx.AsyncClient, operator: httpx.AsyncClient
    ) -> None:
        """Each verdict is in the saga's trail (transactions' `transfer.step.score`) and in
        the immutable scores table; an event here would put every score behind the audit
        chain's lock (see fraud.service.score_transfer)."""
        scored = await score(worker, amount_minor=10_000_00)
        assert scored["decision"] == "review"
        assert await _events(operator, transfer_id=scored["transfer_id"]) == []
        assert await _events(operator) == []


class TestTrail:
    async def test_chain_verifies(
        self, operator: httpx.AsyncClient, issuer: TestIssuer, clock: SettableClock
    ) -> None:
        accounts = [str(uuid.uuid4()) for _ in range(3)]
        for account_id in accounts:
            await _deny(operator, account_id)
            clock.advance(timedelta(seconds=1))
        await operator.delete(f"/v1/admin/deny-list/{accounts[1]}")
        events = await _events(operator)
        assert [event["action"] for event in events] == [
            "deny_list.entry_added",
            "deny_list.entry_added",
            "deny_list.entry_added",
            "deny_list.entry_removed",
        ]
        assert [event["sequence"] for event in events] == [1, 2, 3, 4]
        verification = await operator.get("/v1/admin/audit-events/verify")
        assert verification.json() == {
            "service": "fraud",
            "events_checked": 4,
            "ok": True,
            "first_broken_event_id": None,
            "first_broken_sequence": None,
            "reason": None,
            # The service under test runs without a checkpoint directory.
            "checkpoint_sequence": None,
            "checkpoint_published_at": None,
            "missing_from_sequence": None,
            "missing_to_sequence": None,
        }

    async def test_filters_by_action_and_actor(
        self, operator: httpx.AsyncClient, issuer: TestIssuer
    ) -> None:
        mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
        await _deny(operator, mine)
        await operator.put(
            f"/v1/admin/deny-list/{theirs}",
            json={**ENTRY, "listed_by": "ops-ben"},
            headers=issuer.operator("ops-ben"),
        )
        await operator.delete(f"/v1/admin/deny-list/{mine}")
        by_ben = await _events(operator, actor_id="ops-ben")
        assert [event["subject_id"] for event in by_ben] == [theirs]
        removals = await _events(operator, action="deny_list.entry_removed")
        assert [event["subject_id"] for event in removals] == [mine]

    async def test_export_streams_ndjson(self, operator: httpx.AsyncClient) -> None:
        account_id = str(uuid.uuid4())
        await _deny(operator, account_id)
        response = await operator.get("/v1/admin/audit-events/export")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        [line] = response.text.splitlines()
        assert json.loads(line)["subject_id"] == account_id


class TestWhoReadsTheTrail:
    @pytest.mark.parametrize("path", AUDIT_PATHS)
    async def test_customer_is_forbidden(
        self, anonymous: httpx.AsyncClient, issuer: TestIssuer, path: str
    ) -> None:
        response = await anonymous.get(path, headers=issuer.customer(str(uuid.uuid4())))
        assert_problem(response, 403, "insufficient-scope")

    @pytest.mark.parametrize("path", AUDIT_PATHS)
    async def test_worker_is_forbidden(self, worker: httpx.AsyncClient, path: str) -> None:
        assert_problem(await worker.get(path), 403, "insufficient-scope")

    @pytest.mark.parametrize("path", AUDIT_PATHS)
    async def test_anonymous(self, anonymous: httpx.AsyncClient, path: str) -> None:
        assert_problem(await anonymous.get(path), 401, "unauthorized")

    @pytest.mark.parametrize("path", AUDIT_PATHS)
    async def test_auditor_reads_it(
        self, anonymous: httpx.AsyncClient, issuer: TestIssuer, path: str
    ) -> None:
        auditor = issuer.headers("auditor-1", PrincipalKind.operator, {str(Scope.audit_read)})
        assert (await anonymous.get(path, headers=auditor)).status_code == 200
