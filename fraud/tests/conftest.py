import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from fraud.config import Settings
from fraud.main import MIGRATIONS_PATH, create_app
from fraud.ruleset import DEFAULT_RULESET_PATH, Ruleset, load_ruleset
from fraud.tests.clock import SettableClock
from fraud.tests.support import Clients, clients
from kit.migrations import upgrade_to_head
from kit.settings import to_asyncpg_dsn, with_database
from kit.testing import TestIssuer


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(datetime(2026, 11, 28, 9, 0, tzinfo=UTC))


@pytest.fixture
def ruleset() -> Ruleset:
    return load_ruleset(DEFAULT_RULESET_PATH)


@pytest.fixture(scope="session")
def issuer() -> TestIssuer:
    # One signing key for the session: generating an RSA key per test costs more than many
    # a test. Tokens carry no state, so sharing the issuer isolates nothing less.
    return TestIssuer()


@pytest.fixture
async def app(database_factory: object, clock: SettableClock, issuer: TestIssuer) -> FastAPI:
    url = await database_factory(MIGRATIONS_PATH)  # type: ignore[operator]
    return create_app(
        Settings(database_url=url, log_json=True), token_verifier=issuer.verifier, clock=clock
    )


@pytest.fixture
async def callers(app: FastAPI, issuer: TestIssuer) -> AsyncIterator[Clients]:
    async with clients(app, issuer) as started:
        yield started


@pytest.fixture
def anonymous(callers: Clients) -> httpx.AsyncClient:
    return callers.anonymous


@pytest.fixture
def worker(callers: Clients) -> httpx.AsyncClient:
    return callers.worker


@pytest.fixture
def operator(callers: Clients) -> httpx.AsyncClient:
    return callers.operator


@pytest.fixture(scope="module")
async def module_database_url(postgres_url: str) -> AsyncIterator[str]:
    """A database at head shared by one module's tests, for matrices of requests that must
    each change nothing (a database per cell would cost more than the cells)."""
    name = f"test_fraud_module_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(to_asyncpg_dsn(postgres_url), timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        url = with_database(postgres_url, name)
        await asyncio.to_thread(upgrade_to_head, MIGRATIONS_PATH, url)
        yield url
    finally:
        admin = await asyncpg.connect(to_asyncpg_dsn(postgres_url), timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
