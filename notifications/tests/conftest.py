import base64
import random
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from kit.testing import app_client
from notifications.config import Settings
from notifications.main import MIGRATIONS_PATH, create_app
from notifications.tests.support import (
    ISSUER,
    PUBLIC_ADDRESS,
    PUBLIC_HOST,
    Clock,
    LoopbackNetwork,
    StubResolver,
)

DatabaseFactory = Callable[[Path], Awaitable[str]]
AppFactory = Callable[..., FastAPI]

# The dev relaxations of the SSRF guard, for tests whose receiver listens on 127.0.0.1.
DEV = {"webhook_allow_http": True, "webhook_allow_loopback": True}
# The key ring webhook secrets are sealed under, unless a test passes its own.
SECRETS_KEYS = f"test:{base64.b64encode(secrets.token_bytes(32)).decode()}"


@pytest.fixture
async def service_database_url(database_factory: DatabaseFactory) -> str:
    """A fresh database at head, as the service's application role: what the app uses."""
    return await database_factory(MIGRATIONS_PATH)


@pytest.fixture
def database_url(service_database_url: str, database_admin_url: Callable[[str], str]) -> str:
    """The same database as superuser, for tests acting beside or behind the service."""
    return database_admin_url(service_database_url)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def resolver() -> StubResolver:
    return StubResolver({PUBLIC_HOST: [str(PUBLIC_ADDRESS)], "localhost": ["127.0.0.1", "::1"]})


@pytest.fixture
def network() -> Iterator[LoopbackNetwork]:
    network = LoopbackNetwork()
    yield network
    assert network.violations == [], "a connection left 127.0.0.0/8 and ::1"


@pytest.fixture
def make_app(
    service_database_url: str, clock: Clock, resolver: StubResolver, network: LoopbackNetwork
) -> AppFactory:
    """An app on this test's database, clock, resolver and loopback-only network.
    Production settings unless overridden (pass **DEV for a local receiver)."""

    def make(*, ssl_context: Any = None, **overrides: Any) -> FastAPI:
        values: dict[str, Any] = {
            "database_url": service_database_url,
            "log_json": True,
            "dispatcher_poll_interval_seconds": 0.02,
            "secrets_keys": SECRETS_KEYS,
            **overrides,
        }
        return create_app(
            Settings.model_validate(values),
            clock=clock,
            resolver=resolver,
            network_backend=network,
            ssl_context=ssl_context,
            rng=random.Random(7),
            token_verifier=ISSUER.verifier,
        )

    return make


@pytest.fixture
async def client(make_app: AppFactory) -> AsyncIterator[httpx.AsyncClient]:
    """The service as production runs it, with the dispatcher off (tests drive it)."""
    async with app_client(make_app(dispatcher_enabled=False)) as client:
        yield client
