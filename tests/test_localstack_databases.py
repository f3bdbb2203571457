"""Roles and databases on one PostgreSQL server set up by several processes at once: the test
suite's workers against SAGABANK_TEST_DATABASE_URL, launchers sharing an external server."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from kit.settings import to_asyncpg_dsn
from sagabank.localstack.databases import ensure_login_role

CONCURRENT_CALLERS = 8


@pytest.fixture
async def role_name(postgres_url: str) -> AsyncIterator[str]:
    """A role name no one uses yet; the role is dropped after the test."""
    name = f"test_role_{uuid.uuid4().hex[:12]}"
    yield name
    admin = await asyncpg.connect(to_asyncpg_dsn(postgres_url), timeout=10)
    try:
        await admin.execute(f'DROP ROLE IF EXISTS "{name}"')
    finally:
        await admin.close()


async def test_the_same_login_role_ensured_at_once(postgres_url: str, role_name: str) -> None:
    for _ in range(3):
        await asyncio.gather(
            *(
                ensure_login_role(postgres_url, role_name, password="p")
                for _ in range(CONCURRENT_CALLERS)
            )
        )
    admin = await asyncpg.connect(to_asyncpg_dsn(postgres_url), timeout=10)
    try:
        row = await admin.fetchrow(
            "SELECT rolcanlogin, rolsuper, rolcreatedb FROM pg_roles WHERE rolname = $1",
            role_name,
        )
    finally:
        await admin.close()
    assert row is not None
    assert (row["rolcanlogin"], row["rolsuper"], row["rolcreatedb"]) == (True, False, False)
