"""Each service connects as its application role, which the database holds to what the code
promises: history is appended to, never rewritten, and the schema is not the service's to
change (issue 15: the database enforces what the code promises)."""

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import asyncpg
import pytest

from kit.migrations import application_role, grant_application_role, owner_role
from kit.settings import to_asyncpg_dsn, with_user
from sagabank.config import SERVICES
from sagabank.launcher import migrations_path
from sagabank.localstack.databases import SERVICE_DATABASES
from tests.bank import Bank

# Each service's append-only tables: the audit trail everywhere, the journal in accounts.
APPEND_ONLY_TABLES = {
    "accounts": ("audit_events", "ledger_transfers", "ledger_entries", "ledger_hold_tombstones"),
    "transactions": ("audit_events",),
    "fraud": ("audit_events",),
    "notifications": ("audit_events",),
}
# The trigger that guards each (disabling it must be refused), and a column to rewrite.
GUARD_TRIGGERS = {
    "audit_events": "audit_events_no_update_or_delete",
    "ledger_transfers": "ledger_transfers_append_only",
    "ledger_entries": "ledger_entries_append_only",
    "ledger_hold_tombstones": "ledger_hold_tombstones_append_only",
}
REWRITABLE_COLUMNS = {
    "audit_events": "outcome",
    "ledger_transfers": "reference",
    "ledger_entries": "amount_minor",
    "ledger_hold_tombstones": "amount_minor",
}

DatabaseFactory = Callable[[Path], Awaitable[str]]


@pytest.fixture(params=SERVICES)
async def service_connection(
    request: pytest.FixtureRequest, database_factory: DatabaseFactory
) -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    """(service, a connection to a fresh database of it, as the URL a service is given)."""
    service: str = request.param
    url = await database_factory(migrations_path(service))
    connection = await asyncpg.connect(to_asyncpg_dsn(url), timeout=10)
    try:
        yield service, connection
    finally:
        await connection.close()


async def _refused(connection: asyncpg.Connection, statement: str) -> str:
    """The message PostgreSQL refuses `statement` with (the test fails if it is allowed)."""
    with pytest.raises(asyncpg.InsufficientPrivilegeError) as refusal:
        await connection.execute(statement)
    return str(refusal.value)


class TestApplicationRole:
    async def test_is_the_services_application_role(
        self, service_connection: tuple[str, asyncpg.Connection]
    ) -> None:
        service, connection = service_connection
        role = await connection.fetchrow(
            "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls "
            "FROM pg_roles WHERE rolname = current_user"
        )
        assert role is not None
        assert dict(role) == {
            "rolname": application_role(service),
            "rolsuper": False,
            "rolcreaterole": False,
            "rolcreatedb": False,
            "rolbypassrls": False,
        }

    async def test_refused_update_and_delete_on_append_only_tables(
        self, service_connection: tuple[str, asyncpg.Connection]
    ) -> None:
        service, connection = service_connection
        for table in APPEND_ONLY_TABLES[service]:
            # By privilege, before any trigger runs (the trigger's own refusal would name
            # the table as append-only instead).
            column = REWRITABLE_COLUMNS[table]
            for statement in (f"UPDATE {table} SET {column} = {column}", f"DELETE FROM {table}"):  # noqa: S608
                message = await _refused(connection, statement)
                assert f"permission denied for table {table}" in message, statement
            message = await _refused(connection, f"TRUNCATE {table}")
            assert f"permission denied for table {table}" in message

    async def test_refused_disabling_the_guard_triggers(
        self, service_connection: tuple[str, asyncpg.Connection]
    ) -> None:
        service, connection = service_connection
        for table in APPEND_ONLY_TABLES[service]:
            for trigger in (GUARD_TRIGGERS[table], "USER", "ALL"):
                message = await _refused(
                    connection, f"ALTER TABLE {table} DISABLE TRIGGER {trigger}"
                )
                assert re.fullmatch(rf"must be owner of (table|relation) {table}", message)
            message = await _refused(connection, f"DROP TRIGGER {GUARD_TRIGGERS[table]} ON {table}")
            assert re.fullmatch(rf"must be owner of (table|relation) {table}", message)
        await _refused(connection, "SET session_replication_role = replica")

    async def test_refused_ddl(self, service_connection: tuple[str, asyncpg.Connection]) -> None:
        service, connection = service_connection
        table = APPEND_ONLY_TABLES[service][0]
        await _refused(connection, "CREATE TABLE intruder (id int)")
        await _refused(connection, "CREATE TEMPORARY TABLE intruder (id int)")
        await _refused(
            connection,
            f"CREATE TRIGGER intruder BEFORE INSERT ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()",
        )
        await _refused(connection, "UPDATE alembic_version SET version_num = version_num")
        await _refused(connection, "DELETE FROM alembic_version")

    async def test_owns_nothing(self, service_connection: tuple[str, asyncpg.Connection]) -> None:
        _, connection = service_connection
        owned = await connection.fetchval(
            """
            SELECT (SELECT count(*) FROM pg_class WHERE relowner = current_user::regrole)
                 + (SELECT count(*) FROM pg_namespace WHERE nspowner = current_user::regrole)
                 + (SELECT count(*) FROM pg_proc WHERE proowner = current_user::regrole)
                 + (SELECT count(*) FROM pg_database WHERE datdba = current_user::regrole)
            """
        )
        assert owned == 0

    async def test_reads_and_appends(
        self, service_connection: tuple[str, asyncpg.Connection]
    ) -> None:
        """What /readyz and an append need: the schema revision, the chain's end."""
        service, connection = service_connection
        assert await connection.fetchval("SELECT count(*) FROM alembic_version") == 1
        for table in APPEND_ONLY_TABLES[service]:
            assert await connection.fetchval(f"SELECT count(*) FROM {table}") == 0  # noqa: S608


class TestTestDatabases:
    """Each test's database is a copy of a template migrated and granted once (conftest.py's
    database_factory), given only the rights a copy lacks: who may connect."""

    @pytest.mark.parametrize("service", SERVICES)
    async def test_a_copy_holds_exactly_the_rights_of_a_full_grant(
        self,
        service: str,
        database_factory: DatabaseFactory,
        database_admin_url: Callable[[str], str],
    ) -> None:
        url = await database_factory(migrations_path(service))
        admin_url = database_admin_url(url)
        copied = await _rights(admin_url)
        password = urlsplit(url).password
        as_owner = with_user(admin_url, owner_role(service), unquote(password or "") or None)
        # Converges: recomputes every right from the catalog, as a deployment's Job does.
        await grant_application_role(as_owner, application_role(service))
        assert await _rights(admin_url) == copied
        assert copied["database"] == sorted(
            [f"{application_role(service)}=c/{owner_role(service)}", _owner_acl(service)]
        )


def _owner_acl(service: str) -> str:
    return f"{owner_role(service)}=CTc/{owner_role(service)}"


async def _rights(admin_url: str) -> dict[str, list[str]]:
    """Every access control list of the database, its `public` schema and their objects."""
    connection = await asyncpg.connect(to_asyncpg_dsn(admin_url), timeout=10)
    try:
        rows = await connection.fetch(
            "SELECT 'database' AS what, datacl::text[] AS acl FROM pg_database"
            " WHERE datname = current_database()"
            " UNION ALL SELECT 'schema', nspacl::text[] FROM pg_namespace"
            " WHERE nspname = 'public'"
            " UNION ALL SELECT relname, relacl::text[] FROM pg_class"
            " WHERE relnamespace = 'public'::regnamespace"
        )
    finally:
        await connection.close()
    return {row["what"]: sorted(row["acl"] or []) for row in rows}


class TestLocalBank:
    """`sagabank up` (hence `make run` and every system test) uses the two roles too."""

    async def test_services_connect_as_application_roles_to_owned_schemas(self, bank: Bank) -> None:
        for service in SERVICES:
            database = SERVICE_DATABASES[service]
            url = f"postgresql://postgres@127.0.0.1:{bank.ports['postgres']}/{database}"
            connection = await asyncpg.connect(url, timeout=10)
            try:
                # A ready service holds pooled connections; the migrations' are closed.
                users = await connection.fetch(
                    "SELECT DISTINCT usename FROM pg_stat_activity"
                    " WHERE datname = $1 AND pid <> pg_backend_pid()",
                    database,
                )
                owners = await connection.fetch(
                    "SELECT DISTINCT pg_get_userbyid(relowner) AS owner FROM pg_class"
                    " WHERE relnamespace = 'public'::regnamespace"
                )
            finally:
                await connection.close()
            assert {row["usename"] for row in users} == {application_role(service)}
            assert {row["owner"] for row in owners} == {owner_role(service)}
