"""POST /v1/transfers with `Prefer: wait=N`: the final state when it comes in time."""

import asyncio
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from temporalio.client import Client

from kit.testing import assert_problem
from transactions import service
from transactions.config import Settings
from transactions.errors import PreferWaitInvalid
from transactions.tests.support import (
    build_app,
    client_of,
    count_rows,
    key_header,
    report,
    transfer_body,
)


async def _created_id(client: httpx.AsyncClient, body: dict[str, Any]) -> str:
    """The id of the transfer a still-running POST created, once it is listed (bounded)."""
    deadline = time.monotonic() + 10
    while True:
        page = await client.get("/v1/transfers", params={"account_id": body["source_account_id"]})
        items = page.json()["items"]
        if items:
            (transfer,) = items
            transfer_id: str = transfer["id"]
            return transfer_id
        assert time.monotonic() < deadline, "the transfer was never created"
        await asyncio.sleep(0.02)


async def _finish(client: httpx.AsyncClient, transfer_id: str, status: str = "completed") -> None:
    response = await report(
        client, transfer_id, step="notify", outcome="succeeded", status=status, version=9
    )
    assert response.status_code == 200, response.text


class TestPreferWait:
    async def test_final_state_when_it_finishes_in_time(self, client: httpx.AsyncClient) -> None:
        body = transfer_body()
        headers = {**key_header(), "Prefer": "wait=10"}
        posting = asyncio.create_task(client.post("/v1/transfers", json=body, headers=headers))
        transfer_id = await _created_id(client, body)

        await _finish(client, transfer_id)

        response = await posting
        assert response.status_code == 200, response.text
        assert response.headers["preference-applied"] == "wait=10"
        assert response.headers["location"] == f"/v1/transfers/{transfer_id}"
        assert "idempotency-replayed" not in response.headers
        final = response.json()
        assert final["status"] == "completed"
        assert [step["name"] for step in final["steps"]] == ["notify"]
        assert final == (await client.get(f"/v1/transfers/{transfer_id}")).json()

    @pytest.mark.parametrize("status", ["rejected", "declined", "expired", "cancelled"])
    async def test_every_terminal_status_is_final(
        self, client: httpx.AsyncClient, status: str
    ) -> None:
        body = transfer_body()
        headers = {**key_header(), "Prefer": "wait=10"}
        posting = asyncio.create_task(client.post("/v1/transfers", json=body, headers=headers))
        await _finish(client, await _created_id(client, body), status)
        response = await posting
        assert response.status_code == 200, response.text
        assert response.json()["status"] == status

    async def test_in_review_is_not_final(self, client: httpx.AsyncClient) -> None:
        body = transfer_body()
        headers = {**key_header(), "Prefer": "wait=1"}
        posting = asyncio.create_task(client.post("/v1/transfers", json=body, headers=headers))
        transfer_id = await _created_id(client, body)
        await report(
            client, transfer_id, step="score", outcome="review", status="in_review", version=3
        )
        response = await posting
        assert response.status_code == 202, response.text
        assert response.headers["preference-applied"] == "wait=1"

    async def test_woken_by_the_notification_not_by_polling(
        self, settings: Settings, temporal: Client
    ) -> None:
        # The re-read interval is far longer than the outer bound: only the NOTIFY sent
        # when the step report commits can end the wait in time.
        slow_poll = settings.model_copy(update={"wait_poll_interval_seconds": 30})
        async with client_of(build_app(slow_poll, temporal_client=temporal)) as client:
            body = transfer_body()
            headers = {**key_header(), "Prefer": "wait=30"}
            posting = asyncio.create_task(client.post("/v1/transfers", json=body, headers=headers))
            await _finish(client, await _created_id(client, body))
            response = await asyncio.wait_for(posting, timeout=10)
        assert response.status_code == 200, response.text

    async def test_not_finished_in_time_answers_202(self, client: httpx.AsyncClient) -> None:
        body = transfer_body()
        response = await client.post(
            "/v1/transfers", json=body, headers={**key_header(), "Prefer": "wait=1"}
        )
        assert response.status_code == 202, response.text
        assert response.headers["preference-applied"] == "wait=1"
        assert response.json()["status"] == "pending"

    async def test_without_prefer_nothing_waits(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/transfers", json=transfer_body(), headers=key_header())
        assert response.status_code == 202
        assert "preference-applied" not in response.headers

    async def test_replay_honours_prefer_wait(self, client: httpx.AsyncClient) -> None:
        body = transfer_body()
        headers = key_header()
        first = await client.post("/v1/transfers", json=body, headers=headers)
        await _finish(client, first.json()["id"])

        plain_replay = await client.post("/v1/transfers", json=body, headers=headers)
        waiting_replay = await client.post(
            "/v1/transfers", json=body, headers={**headers, "Prefer": "wait=5"}
        )

        assert plain_replay.status_code == 202
        assert plain_replay.json() == first.json()
        assert waiting_replay.status_code == 200, waiting_replay.text
        assert waiting_replay.headers["idempotency-replayed"] == "true"
        assert waiting_replay.headers["preference-applied"] == "wait=5"
        assert waiting_replay.json()["id"] == first.json()["id"]
        assert waiting_replay.json()["status"] == "completed"

    @pytest.mark.parametrize(
        "prefer", ["wait=31", "wait=-1", "wait=abc", "wait=1.5", "wait", "wait=", "wait=99999"]
    )
    async def test_malformed_or_too_long(
        self, client: httpx.AsyncClient, app: FastAPI, prefer: str
    ) -> None:
        response = await client.post(
            "/v1/transfers", json=transfer_body(), headers={**key_header(), "Prefer": prefer}
        )
        assert_problem(response, 422, "invalid-prefer-wait")
        assert await count_rows(app, "transfers") == 0
        assert await count_rows(app, "idempotency_keys") == 0


class TestParsePreferWait:
    @pytest.mark.parametrize(
        ("prefer", "seconds"),
        [
            (None, None),
            ("", None),
            ("wait=5", 5),
            ("wait=0", 0),
            ("wait=30", 30),
            ("WAIT=7", 7),
            ('wait="12"', 12),
            (" wait = 3 ", 3),
            ("respond-async, wait=10", 10),
            ("wait=10;foo=bar", 10),
            ("handling=lenient", None),
            ("return=minimal, respond-async", None),
            # RFC 7240: only the first instance of a preference counts.
            ("wait=5, wait=40", 5),
        ],
    )
    def test_valid(self, prefer: str | None, seconds: int | None) -> None:
        assert service.parse_prefer_wait(prefer) == seconds

    @pytest.mark.parametrize(
        "prefer", ["wait=31", "wait=-1", "wait=abc", "wait=1.5", "wait", "wait=", "wait=٣"]
    )
    def test_invalid(self, prefer: str) -> None:
        with pytest.raises(PreferWaitInvalid):
            service.parse_prefer_wait(prefer)
