from collections.abc import AsyncIterator

import httpx
import pytest

from kit.testing import app_client
from notifications.config import Settings
from notifications.main import MIGRATIONS_PATH, create_app


@pytest.fixture
async def client(database_factory: object) -> AsyncIterator[httpx.AsyncClient]:
    url = await database_factory(MIGRATIONS_PATH)  # type: ignore[operator]
    app = create_app(Settings(database_url=url, log_json=True))
    async with app_client(app) as client:
        yield client
