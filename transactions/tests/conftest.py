"""Fixtures of the transactions tests: the app on a fresh database and the real Temporal,
with tokens from the test issuer and a stand-in for the accounts service."""

import base64
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from transactions.config import Settings
from transactions.main import MIGRATIONS_PATH
from transactions.tests.standin import StandInTransferWorkflow
from transactions.tests.support import ACCOUNTS_URL, FakeAccounts, build_app, client_of

DatabaseFactory = Callable[[Path], Awaitable[str]]


@pytest.fixture
async def service_database_url(database_factory: DatabaseFactory) -> str:
    """A fresh database at head, as the service's application role: what the app uses."""
    return await database_factory(MIGRATIONS_PATH)


@pytest.fixture
def database_url(service_database_url: str, database_admin_url: Callable[[str], str]) -> str:
    """The same database as superuser, for tests acting beside or behind the service."""
    return database_admin_url(service_database_url)


@pytest.fixture
def settings(service_database_url: str, task_queue: str) -> Settings:
    # A fresh task queue per test: no worker ever polls it, so started workflows stay
    # RUNNING at their first task and can be inspected and signalled.
    return Settings(
        database_url=service_database_url,
        log_json=True,
        task_queue=task_queue,
        callback_secrets_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        accounts_url=ACCOUNTS_URL,
        # Tests make many requests as one customer; the rate limit has tests of its own.
        rate_limit_money="10000/minute",
    )


@pytest.fixture
def temporal(temporal_dev_env: WorkflowEnvironment) -> Client:
    return temporal_dev_env.client


@pytest.fixture
def accounts() -> FakeAccounts:
    return FakeAccounts()


@pytest.fixture
def app(settings: Settings, temporal: Client, accounts: FakeAccounts) -> FastAPI:
    return build_app(settings, temporal_client=temporal, accounts=accounts)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that acts as Alice (a customer) unless a request sends other headers."""
    async with client_of(app) as client:
        yield client


@pytest.fixture
async def worker(temporal: Client, task_queue: str) -> AsyncIterator[Worker]:
    """A worker of the saga's stand-in (transactions.tests.standin) on the test's queue."""
    async with Worker(
        temporal, task_queue=task_queue, workflows=[StandInTransferWorkflow]
    ) as running:
        yield running
