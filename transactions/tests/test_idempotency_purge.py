"""Expired idempotency keys are purged in bounded batches, in the background."""

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import event, text
from temporalio.client import Client

from transactions import service
from transactions.config import Settings
from transactions.tests.support import build_app, client_of, count_rows, key_header, transfer_body


async def _keys(app: FastAPI, *, expired: int, live: int) -> None:
    """Insert keys straight into the table: `expired` ones past their time, `live` ones not."""
    async with app.state.database.engine.begin() as connection:
        for number in range(expired + live):
            await connection.execute(
                text(
                    "INSERT INTO idempotency_keys"
                    " (caller, key, request_hash, state, transfer_id, response_status,"
                    "  response_body, created_at, expires_at)"
                    " VALUES ('customer:x', :key, repeat('0', 64), 'completed', :transfer_id, 202,"
                    "  '{}', now() - interval '2 days', now() + :offset * interval '1 hour')"
                ),
                {
                    "key": f"key-{number}",
                    "transfer_id": uuid.uuid4(),
                    "offset": -1 - number if number < expired else 1,
                },
            )


class TestPurgeExpiredIdempotencyKeys:
    async def test_bounded_batches(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        await _keys(app, expired=5, live=2)

        async def purge() -> int:
            return await service.purge_expired_idempotency_keys(
                app.state.database, batch_size=2, batches_max=2
            )

        assert await purge() == 4
        assert await count_rows(app, "idempotency_keys") == 3
        assert await purge() == 1
        assert await purge() == 0
        assert await count_rows(app, "idempotency_keys") == 2

    async def test_oldest_expired_first(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        await _keys(app, expired=3, live=0)
        await service.purge_expired_idempotency_keys(
            app.state.database, batch_size=1, batches_max=1
        )
        async with app.state.database.engine.connect() as connection:
            left = await connection.execute(text("SELECT key FROM idempotency_keys ORDER BY key"))
            # key-2 expired 3 hours ago, the longest.
            assert list(left.scalars()) == ["key-0", "key-1"]

    async def test_live_keys_still_replay(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        body, headers = transfer_body(), key_header()
        first = await client.post("/v1/transfers", json=body, headers=headers)
        await _keys(app, expired=3, live=0)
        await service.purge_expired_idempotency_keys(
            app.state.database, batch_size=10, batches_max=1
        )
        again = await client.post("/v1/transfers", json=body, headers=headers)
        assert again.headers["idempotency-replayed"] == "true"
        assert again.json() == first.json()

    async def test_runs_in_the_background(self, settings: Settings, temporal: Client) -> None:
        # One instance only: a second one would stand by while this one purges.
        eager = settings.model_copy(update={"idempotency_purge_interval_seconds": 0.1})
        app = build_app(eager, temporal_client=temporal)
        async with client_of(app):
            await _keys(app, expired=3, live=1)
            deadline = time.monotonic() + 10
            while await count_rows(app, "idempotency_keys") > 1:
                assert time.monotonic() < deadline, "the background purge never ran"
                await asyncio.sleep(0.05)
            # The live key stays.
            assert await count_rows(app, "idempotency_keys") == 1


class PurgeCounter:
    """Counts the purge's DELETE statements one instance sends through its own engine."""

    def __init__(self, app: FastAPI) -> None:
        self.deletes = 0
        event.listen(app.state.database.engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, *arguments: Any) -> None:
        statement: str = arguments[2]
        if statement.lstrip().upper().startswith("DELETE FROM IDEMPOTENCY_KEYS"):
            self.deletes += 1


async def _wait_until(condition: Callable[[], Awaitable[bool]], *, failure: str) -> None:
    deadline = time.monotonic() + 10
    while not await condition():
        assert time.monotonic() < deadline, failure
        await asyncio.sleep(0.02)


class TestTwoInstances:
    async def test_only_one_instance_purges(self, settings: Settings, temporal: Client) -> None:
        """Two replicas on one database: one purges, the other stands by."""
        eager = settings.model_copy(update={"idempotency_purge_interval_seconds": 0.05})
        apps = [build_app(eager, temporal_client=temporal) for _ in range(2)]
        async with client_of(apps[0]), client_of(apps[1]):
            counters = [PurgeCounter(app) for app in apps]
            await _keys(apps[0], expired=3, live=1)

            async def purged() -> bool:
                return await count_rows(apps[0], "idempotency_keys") == 1

            await _wait_until(purged, failure="the background purge never ran")
            deletes_before = max(counter.deletes for counter in counters)

            async def ten_more_passes() -> bool:
                return max(counter.deletes for counter in counters) >= deletes_before + 10

            await _wait_until(ten_more_passes, failure="the purge stopped")
            deletes = [counter.deletes for counter in counters]
            assert min(deletes) == 0, f"both instances purged: DELETE statements {deletes}"
            leaders = [app.state.idempotency_purge.is_leader for app in apps]
            assert leaders.count(True) == 1, leaders
