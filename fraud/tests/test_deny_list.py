"""/v1/admin/deny-list: operators list accounts; transfers from or to them are declined."""

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

from fraud.tests.clock import SettableClock
from fraud.tests.support import OPERATOR_ID, codes, features, score
from kit.testing import TestIssuer, assert_problem

ENTRY = {"reason": "Mule account reported by the police (case 2026-118)", "listed_by": OPERATOR_ID}


async def _deny(
    operator: httpx.AsyncClient,
    account_id: str,
    headers: dict[str, str] | None = None,
    **entry: Any,
) -> httpx.Response:
    return await operator.put(
        f"/v1/admin/deny-list/{account_id}", json={**ENTRY, **entry}, headers=headers
    )


class TestDenyAccount:
    async def test_valid(self, operator: httpx.AsyncClient, clock: SettableClock) -> None:
        account_id = str(uuid.uuid4())
        response = await _deny(operator, account_id)
        assert response.status_code == 201, response.text
        assert response.json() == {
            "account_id": account_id,
            "reason": ENTRY["reason"],
            "listed_by": OPERATOR_ID,
            "listed_at": clock.now.isoformat().replace("+00:00", "Z"),
        }
        assert (await features(operator, account_id))["denied"] is True

    async def test_listing_again_keeps_the_first_entry(
        self, operator: httpx.AsyncClient, clock: SettableClock, issuer: TestIssuer
    ) -> None:
        account_id = str(uuid.uuid4())
        first = await _deny(operator, account_id)
        clock.advance(timedelta(hours=1))
        again = await _deny(
            operator,
            account_id,
            headers=issuer.operator("ops-ben"),
            reason="Another reason",
            listed_by="ops-ben",
        )
        assert again.status_code == 200
        assert again.json() == first.json()

    async def test_listed_by_must_name_the_caller(self, operator: httpx.AsyncClient) -> None:
        account_id = str(uuid.uuid4())
        response = await _deny(operator, account_id, listed_by="ops-ben")
        body = assert_problem(response, 422, "listed-by-mismatch")
        assert "ops-ben" in str(body["detail"])
        assert (await features(operator, account_id))["denied"] is False

    @pytest.mark.parametrize(
        "entry",
        [
            pytest.param({"reason": ""}, id="empty-reason"),
            pytest.param({"reason": "x" * 301}, id="long-reason"),
            pytest.param({"listed_by": "ops anna"}, id="listed-by-with-space"),
            pytest.param({"points": 5}, id="unknown-field"),
        ],
    )
    async def test_malformed_entry_is_refused(
        self, operator: httpx.AsyncClient, entry: dict[str, Any]
    ) -> None:
        account_id = str(uuid.uuid4())
        assert_problem(await _deny(operator, account_id, **entry), 422, "invalid-request")
        assert (await features(operator, account_id))["denied"] is False


class TestAllowAccount:
    async def test_valid(self, operator: httpx.AsyncClient) -> None:
        account_id = str(uuid.uuid4())
        await _deny(operator, account_id)
        response = await operator.delete(f"/v1/admin/deny-list/{account_id}")
        assert response.status_code == 204
        assert (await features(operator, account_id))["denied"] is False

    async def test_not_listed(self, operator: httpx.AsyncClient) -> None:
        response = await operator.delete(f"/v1/admin/deny-list/{uuid.uuid4()}")
        assert_problem(response, 404, "deny-list-entry-not-found")


class TestListDenyList:
    async def test_pages_in_listing_order(
        self, operator: httpx.AsyncClient, clock: SettableClock
    ) -> None:
        listed = []
        for _ in range(3):
            account_id = str(uuid.uuid4())
            await _deny(operator, account_id)
            listed.append(account_id)
            clock.advance(timedelta(seconds=1))
        first = (await operator.get("/v1/admin/deny-list", params={"limit": "2"})).json()
        assert [entry["account_id"] for entry in first["items"]] == listed[:2]
        second = (
            await operator.get(
                "/v1/admin/deny-list", params={"limit": "2", "cursor": first["next_cursor"]}
            )
        ).json()
        assert [entry["account_id"] for entry in second["items"]] == listed[2:]
        assert second["next_cursor"] is None

    async def test_limit_is_capped(self, operator: httpx.AsyncClient) -> None:
        response = await operator.get("/v1/admin/deny-list", params={"limit": "501"})
        assert_problem(response, 422, "invalid-request")


class TestDenyListRule:
    async def test_listed_source_is_declined(
        self, worker: httpx.AsyncClient, operator: httpx.AsyncClient
    ) -> None:
        source = str(uuid.uuid4())
        await _deny(operator, source)
        scored = await score(worker, source_account_id=source, amount_minor=5_00)
        assert scored["decision"] == "decline"
        assert codes(scored) == ["deny_list"]
        # The reason names the side, never the operators' notes.
        assert "police" not in scored["reasons"][0]["text"]

    async def test_listed_recipient_is_declined(
        self, worker: httpx.AsyncClient, operator: httpx.AsyncClient
    ) -> None:
        target = str(uuid.uuid4())
        await _deny(operator, target)
        scored = await score(worker, target_account_id=target, amount_minor=5_00)
        assert scored["decision"] == "decline"
        assert "recipient" in scored["reasons"][0]["text"]

    async def test_quiet_after_removal(
        self, worker: httpx.AsyncClient, operator: httpx.AsyncClient
    ) -> None:
        source = str(uuid.uuid4())
        await _deny(operator, source)
        await operator.delete(f"/v1/admin/deny-list/{source}")
        scored = await score(worker, source_account_id=source, amount_minor=5_00)
        assert (scored["decision"], codes(scored)) == ("approve", [])

    async def test_quiet_for_accounts_not_listed(
        self, worker: httpx.AsyncClient, operator: httpx.AsyncClient
    ) -> None:
        await _deny(operator, str(uuid.uuid4()))
        scored = await score(worker, amount_minor=5_00)
        assert codes(scored) == []

    async def test_listing_does_not_rewrite_earlier_scores(
        self, worker: httpx.AsyncClient, operator: httpx.AsyncClient
    ) -> None:
        earlier = await score(worker, amount_minor=5_00)
        await _deny(operator, earlier["request"]["source_account_id"])
        replay = await worker.post("/v1/scores", json=earlier["request"])
        assert replay.status_code == 200
        assert replay.json()["decision"] == "approve"
