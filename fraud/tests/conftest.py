from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI

from fraud.config import Settings
from fraud.main import MIGRATIONS_PATH, create_app
from fraud.ruleset import DEFAULT_RULESET_PATH, Ruleset, load_ruleset
from fraud.tests.clock import SettableClock
from kit.testing import app_client


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(datetime(2026, 11, 28, 9, 0, tzinfo=UTC))


@pytest.fixture
def ruleset() -> Ruleset:
    return load_ruleset(DEFAULT_RULESET_PATH)


@pytest.fixture
async def app(database_factory: object, clock: SettableClock) -> FastAPI:
    url = await database_factory(MIGRATIONS_PATH)  # type: ignore[operator]
    app = create_app(Settings(database_url=url, log_json=True))
    app.state.clock = clock
    return app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(app) as client:
        yield client
