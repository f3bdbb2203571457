from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from console.config import Settings
from console.main import create_app
from console.tests.support import Clock, FakeUpstream
from kit.testing import app_client


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def upstreams() -> dict[str, FakeUpstream]:
    names = ("issuer", "accounts", "transactions", "fraud", "notifications")
    return {name: FakeUpstream(name) for name in names}


@pytest.fixture
def settings() -> Settings:
    return Settings(
        public_url="http://127.0.0.1:8005",
        issuer_public_url="https://issuer.example",
        issuer_url="http://accounts.internal",
        log_json=True,
    )


@pytest.fixture
def app(settings: Settings, clock: Clock, upstreams: dict[str, FakeUpstream]) -> FastAPI:
    transports = {name: upstream.transport() for name, upstream in upstreams.items()}
    return create_app(settings, clock=clock, transports=transports)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Keeps no cookies: each test sends the ones it means to, as a header."""
    async with app_client(app) as client:

        async def forget_cookies(_response: httpx.Response) -> None:
            client.cookies.clear()

        client.event_hooks["response"].append(forget_cookies)
        yield client
