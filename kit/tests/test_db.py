"""kit.db's pool: a connection is pinged only after it sat idle, and a dead one is replaced."""

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text

from kit.db import Database
from kit.settings import to_asyncpg_dsn, to_asyncpg_url


@pytest.fixture
async def database(empty_database_url: str) -> AsyncIterator[Database]:
    database = Database(to_asyncpg_url(empty_database_url), pool_size=1)
    yield database
    await database.dispose()


def _count_pings(database: Database) -> list[object]:
    """The connections the pool pings from now on, one entry per ping."""
    dialect = database.engine.sync_engine.dialect
    pinged: list[object] = []
    ping = dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pinged.append(dbapi_connection)
        return ping(dbapi_connection)

    dialect.do_ping = counted  # type: ignore[method-assign]
    return pinged


async def _backend_pid(database: Database) -> int:
    async with database.sessions() as session:
        pid: int = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    return pid


class TestPing:
    async def test_a_busy_connection_is_not_pinged(self, database: Database) -> None:
        first_pid = await _backend_pid(database)
        pinged = _count_pings(database)
        for _ in range(3):
            assert await _backend_pid(database) == first_pid
        assert pinged == []

    async def test_an_idle_connection_is_pinged(self, empty_database_url: str) -> None:
        database = Database(
            to_asyncpg_url(empty_database_url), pool_size=1, ping_idle_after_seconds=0
        )
        try:
            first_pid = await _backend_pid(database)
            pinged = _count_pings(database)
            assert await _backend_pid(database) == first_pid
            assert len(pinged) == 1
        finally:
            await database.dispose()

    async def test_a_terminated_connection_is_replaced(
        self, database: Database, empty_database_url: str
    ) -> None:
        # As after a PostgreSQL restart: the pooled connection's backend is gone.
        first_pid = await _backend_pid(database)
        admin = await asyncpg.connect(to_asyncpg_dsn(empty_database_url))
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", first_pid)
            deadline = time.monotonic() + 10
            while await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", first_pid
            ):
                assert time.monotonic() < deadline, "the backend outlived its termination"
                await asyncio.sleep(0.05)
        finally:
            await admin.close()
        assert await _backend_pid(database) != first_pid
