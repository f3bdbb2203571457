import asyncio
import base64
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from accounts.config import Settings
from accounts.main import MIGRATIONS_PATH
from accounts.tests.helpers import Bank, Clock, accounts_app, write_signing_key
from kit.migrations import upgrade_to_head
from kit.settings import to_asyncpg_dsn, with_database
from kit.testing import TestIssuer, app_client
from kit.token_signing import SigningKey

DatabaseFactory = Callable[[Path], Awaitable[str]]


# Seals the staff's TOTP secrets in every test app (a ring of one test key).
STAFF_SECRETS_KEYS: Final = "test:" + base64.b64encode(b"staff-secrets-key-for-tests-0032").decode()


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    """The service's own signing key (RSA key generation is slow: once per session)."""
    return SigningKey.generate()


@pytest.fixture(scope="session")
def signing_keys_dir(signing_key: SigningKey, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("accounts-keys")
    write_signing_key(directory, "primary", signing_key)
    return directory


@pytest.fixture(scope="session")
def issuer() -> TestIssuer:
    """Mints the tokens most tests send; the app under test trusts it instead of its own
    keys (the token endpoint's tests use the service's own keys)."""
    return TestIssuer()


@pytest.fixture
async def service_database_url(database_factory: DatabaseFactory) -> str:
    """A fresh database at head, as the service's application role: what the app uses."""
    return await database_factory(MIGRATIONS_PATH)


@pytest.fixture
def database_url(service_database_url: str, database_admin_url: Callable[[str], str]) -> str:
    """The same database as superuser, for tests acting beside or behind the service."""
    return database_admin_url(service_database_url)


@pytest.fixture
def settings(service_database_url: str, signing_keys_dir: Path) -> Settings:
    # The sweeper's own tests start it; elsewhere it would void holds behind a test's back.
    # The invariant check's too: elsewhere it would only move the gauges its tests read.
    return Settings(
        database_url=service_database_url,
        log_json=True,
        hold_sweep_enabled=False,
        invariant_check_enabled=False,
        signing_keys_dir=signing_keys_dir,
        secrets_keys=STAFF_SECRETS_KEYS,
    )


@pytest.fixture
def app(settings: Settings, clock: Clock, issuer: TestIssuer) -> FastAPI:
    return accounts_app(settings, clock=clock, token_verifier=issuer.verifier)


@pytest.fixture
async def client(app: FastAPI, issuer: TestIssuer) -> AsyncIterator[httpx.AsyncClient]:
    """A client that calls as an operator unless a request says otherwise."""
    async with app_client(app) as client:
        client.headers.update(issuer.operator())
        yield client


@pytest.fixture
def bank(client: httpx.AsyncClient, issuer: TestIssuer) -> Bank:
    return Bank(client, issuer)


@pytest.fixture
async def alice(bank: Bank) -> str:
    """A customer account holding 1000."""
    account_id: str = (await bank.funded_account(1000, customer_id="alice"))["id"]
    return account_id


@pytest.fixture
async def bob(bank: Bank) -> str:
    """An empty customer account of another customer."""
    account_id: str = (await bank.open_account(customer_id="bob"))["id"]
    return account_id


@pytest.fixture(scope="module")
async def module_database_url(postgres_url: str) -> AsyncIterator[str]:
    """A database at head shared by one module's tests, for matrices of requests that must
    each change nothing (a database per cell would cost more than the cells)."""
    name = f"test_accounts_module_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(to_asyncpg_dsn(postgres_url), timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = with_database(postgres_url, name)
    try:
        await asyncio.to_thread(upgrade_to_head, MIGRATIONS_PATH, url)
        yield url
    finally:
        admin = await asyncpg.connect(to_asyncpg_dsn(postgres_url), timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
