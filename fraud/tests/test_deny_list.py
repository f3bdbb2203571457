"""/v1/admin/deny-list: operators list accounts; transfers from or to them are declined."""

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest

from fraud.tests.clock import SettableClock
from fraud.tests.support import codes, features, score
from kit.testing import assert_problem

ENTRY = {"reason": "Mule account reported by the police (case 2026-118)", "listed_by": "ops-anna"}


async def _deny(client: httpx.AsyncClient, account_id: str, **entry: Any) -> httpx.Response:
    return await client.put(f"/v1/admin/deny-list/{account_id}", json={**ENTRY, **entry})


class TestDenyAccount:
    async def test_valid(self, client: httpx.AsyncClient, clock: SettableClock) -> None:
        account_id = str(uuid.uuid4())
        response = await _deny(client, account_id)
        assert response.status_code == 201, response.text
        assert response.json() == {
            "account_id": account_id,
            "reason": ENTRY["reason"],
            "listed_by": "ops-anna",
            "listed_at": clock.now.isoformat().replace("+00:00", "Z"),
        }
        assert (await features(client, account_id))["denied"] is True

    async def test_listing_again_keeps_the_first_entry(
        self, client: httpx.AsyncClient, clock: SettableClock
    ) -> None:
        account_id = str(uuid.uuid4())
        first = await _deny(client, account_id)
        clock.advance(timedelta(hours=1))
        again = await _deny(client, account_id, reason="Another reason", listed_by="ops-ben")
        assert again.status_code == 200
        assert again.json() == first.json()

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
        self, client: httpx.AsyncClient, entry: dict[str, Any]
    ) -> None:
        account_id = str(uuid.uuid4())
        assert_problem(await _deny(client, account_id, **entry), 422, "invalid-request")
        assert (await features(client, account_id))["denied"] is False


class TestAllowAccount:
    async def test_valid(self, client: httpx.AsyncClient) -> None:
        account_id = str(uuid.uuid4())
        await _deny(client, account_id)
        response = await client.delete(f"/v1/admin/deny-list/{account_id}")
        assert response.status_code == 204
        assert (await features(client, account_id))["denied"] is False

    async def test_not_listed(self, client: httpx.AsyncClient) -> None:
        response = await client.delete(f"/v1/admin/deny-list/{uuid.uuid4()}")
        assert_problem(response, 404, "deny-list-entry-not-found")


class TestListDenyList:
    async def test_pages_in_listing_order(
        self, client: httpx.AsyncClient, clock: SettableClock
    ) -> None:
        listed = []
        for _ in range(3):
            account_id = str(uuid.uuid4())
            await _deny(client, account_id)
            listed.append(account_id)
            clock.advance(timedelta(seconds=1))
        first = (await client.get("/v1/admin/deny-list", params={"limit": "2"})).json()
        assert [entry["account_id"] for entry in first["items"]] == listed[:2]
        second = (
            await client.get(
                "/v1/admin/deny-list", params={"limit": "2", "cursor": first["next_cursor"]}
            )
        ).json()
        assert [entry["account_id"] for entry in second["items"]] == listed[2:]
        assert second["next_cursor"] is None

    async def test_limit_is_capped(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/admin/deny-list", params={"limit": "501"})
        assert_problem(response, 422, "invalid-request")


class TestDenyListRule:
    async def test_listed_source_is_declined(self, client: httpx.AsyncClient) -> None:
        source = str(uuid.uuid4())
        await _deny(client, source)
        scored = await score(client, source_account_id=source, amount_minor=5_00)
        assert scored["decision"] == "decline"
        assert codes(scored) == ["deny_list"]
        # The reason names the side, never the operators' notes.
        assert "police" not in scored["reasons"][0]["text"]

    async def test_listed_recipient_is_declined(self, client: httpx.AsyncClient) -> None:
        target = str(uuid.uuid4())
        await _deny(client, target)
        scored = await score(client, target_account_id=target, amount_minor=5_00)
        assert scored["decision"] == "decline"
        assert "recipient" in scored["reasons"][0]["text"]

    async def test_quiet_after_removal(self, client: httpx.AsyncClient) -> None:
        source = str(uuid.uuid4())
        await _deny(client, source)
        await client.delete(f"/v1/admin/deny-list/{source}")
        scored = await score(client, source_account_id=source, amount_minor=5_00)
        assert (scored["decision"], codes(scored)) == ("approve", [])

    async def test_quiet_for_accounts_not_listed(self, client: httpx.AsyncClient) -> None:
        await _deny(client, str(uuid.uuid4()))
        scored = await score(client, amount_minor=5_00)
        assert codes(scored) == []

    async def test_listing_does_not_rewrite_earlier_scores(self, client: httpx.AsyncClient) -> None:
        earlier = await score(client, amount_minor=5_00)
        await _deny(client, earlier["request"]["source_account_id"])
        replay = await client.post("/v1/scores", json=earlier["request"])
        assert replay.status_code == 200
        assert replay.json()["decision"] == "approve"
