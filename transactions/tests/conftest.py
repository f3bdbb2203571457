"""Fixtures of the transactions tests: the app on a fresh database and the real Temporal."""

import base64
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from kit.testing import app_client
from transactions.config import Settings
from transactions.main import MIGRATIONS_PATH, create_app

DatabaseFactory = Callable[[Path], Awaitable[str]]


@pytest.fixture
async def database_url(database_factory: DatabaseFactory) -> str:
    return await database_factory(MIGRATIONS_PATH)


@pytest.fixture
def settings(database_url: str, task_queue: str) -> Settings:
    # A fresh task queue per test: no worker ever polls it, so started workflows stay
    # RUNNING at their first task and can be inspected and signalled.
    return Settings(
        database_url=database_url,
        log_json=True,
        task_queue=task_queue,
        callback_secrets_key=base64.b64encode(secrets.token_bytes(32)).decode(),
    )


@pytest.fixture
def temporal(temporal_dev_env: WorkflowEnvironment) -> Client:
    return temporal_dev_env.client


@pytest.fixture
def app(settings: Settings, temporal: Client) -> FastAPI:
    return create_app(settings, temporal_client=temporal)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(app) as client:
        yield client
