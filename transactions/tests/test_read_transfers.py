"""GET /v1/transfers/{id} and GET /v1/transfers: the projection, one or a page at a time."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from kit.testing import assert_problem
from transactions.tests.support import create, report


class TestGetTransfer:
    async def test_valid(self, client: httpx.AsyncClient) -> None:
        created = await create(client)
        response = await client.get(f"/v1/transfers/{created['id']}")
        assert response.status_code == 200, response.text
        assert response.json() == created

    async def test_steps_in_reported_order(self, client: httpx.AsyncClient) -> None:
        created = await create(client)
        # Reported out of order (a retry arrived late); listed by the saga's version.
        await report(
            client, created["id"], step="hold", outcome="succeeded", status="pending", version=2
        )
        await report(
            client, created["id"], step="validate", outcome="succeeded", status="pending", version=1
        )
        await report(
            client, created["id"], step="score", outcome="approve", status="pending", version=3
        )

        steps = (await client.get(f"/v1/transfers/{created['id']}")).json()["steps"]
        assert [step["name"] for step in steps] == ["validate", "hold", "score"]

    async def test_unknown(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get(f"/v1/transfers/{uuid.uuid4()}"), 404, "transfer-not-found")

    async def test_malformed_id(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get("/v1/transfers/not-a-uuid"), 422, "invalid-request")


async def _list(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/transfers", params=params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def _ids(page: dict[str, Any]) -> list[str]:
    return [item["id"] for item in page["items"]]


class TestListTransfers:
    async def test_valid_newest_first(self, client: httpx.AsyncClient) -> None:
        created = [await create(client) for _ in range(3)]
        page = await _list(client)
        assert _ids(page) == [transfer["id"] for transfer in reversed(created)]
        assert page["next_cursor"] is None
        assert page["items"][0] == created[-1]

    async def test_empty(self, client: httpx.AsyncClient) -> None:
        assert await _list(client) == {"items": [], "next_cursor": None}

    async def test_filter_by_status(self, client: httpx.AsyncClient) -> None:
        waiting, _ = await create(client), await create(client)
        await report(
            client, waiting["id"], step="score", outcome="review", status="in_review", version=3
        )
        assert _ids(await _list(client, status="in_review")) == [waiting["id"]]
        assert len(_ids(await _list(client, status="pending"))) == 1
        assert _ids(await _list(client, status="completed")) == []

    async def test_filter_by_account_as_source_or_target(self, client: httpx.AsyncClient) -> None:
        account = str(uuid.uuid4())
        outgoing = await create(client, source_account_id=account)
        incoming = await create(client, target_account_id=account)
        await create(client)
        assert _ids(await _list(client, account_id=account)) == [incoming["id"], outgoing["id"]]

    async def test_filter_by_creation_time(self, client: httpx.AsyncClient) -> None:
        first = await create(client)
        second = await create(client)
        third = await create(client)
        after = second["created_at"]
        before = third["created_at"]
        assert _ids(await _list(client, created_after=after)) == [third["id"], second["id"]]
        assert _ids(await _list(client, created_before=before)) == [second["id"], first["id"]]
        assert _ids(await _list(client, created_after=after, created_before=before)) == [
            second["id"]
        ]
        future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        assert _ids(await _list(client, created_after=future)) == []

    async def test_pagination_walks_every_transfer_once(self, client: httpx.AsyncClient) -> None:
        created = [await create(client) for _ in range(5)]
        seen: list[str] = []
        cursor: str | None = None
        for _ in range(10):
            params: dict[str, Any] = {"limit": 2}
            if cursor is not None:
                params["cursor"] = cursor
            page = await _list(client, **params)
            assert len(page["items"]) <= 2
            seen += _ids(page)
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [transfer["id"] for transfer in reversed(created)]

    async def test_cursor_is_stable_when_new_transfers_arrive(
        self, client: httpx.AsyncClient
    ) -> None:
        created = [await create(client) for _ in range(3)]
        first_page = await _list(client, limit=2)
        await create(client)
        second_page = await _list(client, limit=2, cursor=first_page["next_cursor"])
        assert _ids(second_page) == [created[0]["id"]]
        assert second_page["next_cursor"] is None

    async def test_cursor_keeps_the_filters_of_the_caller(self, client: httpx.AsyncClient) -> None:
        account = str(uuid.uuid4())
        mine = [await create(client, source_account_id=account) for _ in range(3)]
        await create(client)
        first_page = await _list(client, account_id=account, limit=2)
        second_page = await _list(
            client, account_id=account, limit=2, cursor=first_page["next_cursor"]
        )
        assert _ids(first_page) + _ids(second_page) == [t["id"] for t in reversed(mine)]

    @pytest.mark.parametrize("limit", [0, 101, -1])
    async def test_limit_is_capped(self, client: httpx.AsyncClient, limit: int) -> None:
        response = await client.get("/v1/transfers", params={"limit": limit})
        assert_problem(response, 422, "invalid-request")

    async def test_limit_of_100_is_allowed(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/v1/transfers", params={"limit": 100})).status_code == 200

    @pytest.mark.parametrize(
        ("cursor", "slug"),
        [
            pytest.param("garbage!", "invalid-cursor", id="not-base64"),
            pytest.param("bm90LWEtY3Vyc29y", "invalid-cursor", id="not-a-cursor"),
            pytest.param("MjAyNi0xMS0yOFQxMDowMDowMHxub3QtYS11dWlk", "invalid-cursor", id="bad-id"),
            pytest.param("x" * 201, "invalid-request", id="too-long"),
        ],
    )
    async def test_invalid_cursor(self, client: httpx.AsyncClient, cursor: str, slug: str) -> None:
        response = await client.get("/v1/transfers", params={"cursor": cursor})
        assert_problem(response, 422, slug)

    @pytest.mark.parametrize(
        "params",
        [
            {"status": "teleported"},
            {"account_id": "not-a-uuid"},
            {"created_after": "2026-11-28T10:00:00"},
            {"created_before": "yesterday"},
        ],
    )
    async def test_malformed_filters(
        self, client: httpx.AsyncClient, params: dict[str, str]
    ) -> None:
        assert_problem(await client.get("/v1/transfers", params=params), 422, "invalid-request")
