from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from accounts.config import Settings
from accounts.main import MIGRATIONS_PATH, create_app
from accounts.tests.helpers import Bank, Clock
from kit.testing import app_client

DatabaseFactory = Callable[[Path], Awaitable[str]]


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
async def database_url(database_factory: DatabaseFactory) -> str:
    return await database_factory(MIGRATIONS_PATH)


@pytest.fixture
def app(database_url: str, clock: Clock) -> FastAPI:
    # The sweeper's own tests start it; elsewhere it would void holds behind a test's back.
    settings = Settings(database_url=database_url, log_json=True, hold_sweep_enabled=False)
    return create_app(settings, clock=clock)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(app) as client:
        yield client


@pytest.fixture
def bank(client: httpx.AsyncClient) -> Bank:
    return Bank(client)
