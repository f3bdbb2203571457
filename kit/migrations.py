"""Alembic, shared: each service keeps its own history under `<service>/migrations/`."""

import asyncio
import functools
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import structlog
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, pool, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from contracts.common import MigrationsCheck
from kit.settings import to_asyncpg_url

log = structlog.get_logger()


def owner_role(service: str) -> str:
    """The role that owns `service`'s schema and runs its migrations."""
    return f"sagabank_{service}_owner"


def application_role(service: str) -> str:
    """The role `service` connects as: reads and writes rows, owns nothing, changes no schema."""
    return f"sagabank_{service}_app"


def alembic_config(script_location: Path, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    # ConfigParser interpolation would read a '%' in a password as a directive.
    config.set_main_option("sqlalchemy.url", to_asyncpg_url(database_url).replace("%", "%%"))
    return config


@dataclass(frozen=True)
class ReleaseRevisions:
    """The history this release ships: its heads and every revision it knows."""

    heads: frozenset[str]
    known: frozenset[str]


@functools.cache
def release_revisions(script_location: Path) -> ReleaseRevisions:
    """Read once per folder: a process's migration scripts do not change while it runs."""
    directory = ScriptDirectory(str(script_location))
    return ReleaseRevisions(
        heads=frozenset(directory.get_heads()),
        known=frozenset(script.revision for script in directory.walk_revisions()),
    )


def compare_schema(
    database_revisions: Collection[str], release: ReleaseRevisions
) -> MigrationsCheck:
    """Where the database (its `alembic_version` rows, one per branch) stands against `release`."""
    current = frozenset(database_revisions)
    if current == release.heads:
        return MigrationsCheck.ok
    if not current:
        return MigrationsCheck.behind
    # A known revision that is not one of our heads is an ancestor of one (alembic_version
    # keeps only the newest of a branch): that branch lacks migrations this code needs,
    # whatever newer revisions other branches hold.
    if (current & release.known) - release.heads:
        return MigrationsCheck.behind
    # Only revisions we do not know come from a later release, whose Job upgraded to all
    # of its heads, so every branch we ship was applied first (histories only grow). A
    # database of another history looks ahead too: readiness never guarded against a
    # wrong URL (our services' revision ids are alike: 0001, 0002, ...).
    if current - release.known:
        return MigrationsCheck.ahead
    # Some of our heads and nothing else: a branch we ship was never applied.
    return MigrationsCheck.behind


def upgrade_to_head(
    script_location: Path, database_url: str, *, application_role: str | None = None
) -> None:
    """Apply every migration, then grant `application_role` what a service needs (None: a
    database nobody but its owner uses); safe to run again (at head or newer, it does nothing).
    """
    revisions = asyncio.run(_database_revisions(database_url))
    release = release_revisions(script_location)
    if compare_schema(revisions, release) is MigrationsCheck.ahead:
        # A rollback re-runs the previous release's Job; Alembic would fail on a revision
        # it does not know, and a rollback keeps the newer (expand-only) schema anyway, with
        # the grants the newer release's Job made for it.
        _warn_ahead(revisions, release)
        return
    command.upgrade(alembic_config(script_location, database_url), "head")
    if application_role is not None:
        asyncio.run(grant_application_role(database_url, application_role))


_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# An append-only table is one the database itself guards: a BEFORE UPDATE OR DELETE row
# trigger refuses every change (kit.audit's and the ledger's). pg_trigger.tgtype bits:
# 1 row, 2 before, 8 delete, 16 update (see PostgreSQL's catalog/pg_trigger.h).
_APPEND_ONLY_TABLES = """
    SELECT DISTINCT c.relname
    FROM pg_trigger t
    JOIN pg_class c ON c.oid = t.tgrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND NOT t.tgisinternal AND t.tgtype & 27 = 27
    ORDER BY c.relname
"""
_ORDINARY_TABLE_RIGHTS = "SELECT, INSERT, UPDATE, DELETE"
_APPEND_ONLY_TABLE_RIGHTS = "SELECT, INSERT"


async def grant_application_role(database_url: str, role: str) -> None:
    """Make `role` (connecting to the database at `database_url`, as its owner) able to read
    and write rows and nothing more: SELECT and INSERT only on append-only tables and on
    `alembic_version` (which /readyz reads), no TRUNCATE, REFERENCES, TRIGGER or DDL.

    Idempotent, and it converges: the rights are recomputed from the catalog each time.
    """
    if not _ROLE_NAME.match(role):
        raise ValueError(f"not a plain role name: {role!r}")
    engine = create_async_engine(to_asyncpg_url(database_url), poolclass=pool.NullPool)
    try:
        async with engine.begin() as connection:
            await _check_application_role(connection, role)
            for statement in await _grant_statements(connection, role):
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


def database_access_statements(database: str, role: str) -> list[str]:
    """Who may connect to `database`: the part of grant_application_role's rights kept in the
    cluster's catalog, hence the only part a copy (CREATE DATABASE ... TEMPLATE) lacks."""
    if not _ROLE_NAME.match(role):
        raise ValueError(f"not a plain role name: {role!r}")
    return [
        # PUBLIC may connect, create temporary tables and use the schema by default: only
        # the owner and the application role may, from now on.
        f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC',
        f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"',
    ]


async def _check_application_role(connection: AsyncConnection, role: str) -> None:
    row = (
        await connection.execute(
            text(
                "SELECT rolsuper OR rolbypassrls AS unbounded, rolname = current_user AS is_us"
                " FROM pg_roles WHERE rolname = :role"
            ),
            {"role": role},
        )
    ).first()
    if row is None:
        raise RuntimeError(f"role {role!r} does not exist: create it before migrating")
    # Either would make every grant below meaningless.
    if row.unbounded:
        raise RuntimeError(f"application role {role!r} is a superuser or bypasses RLS")
    if row.is_us:
        raise RuntimeError(f"migrate as the owner role, not as application role {role!r}")


async def _grant_statements(connection: AsyncConnection, role: str) -> list[str]:
    database = (await connection.execute(text("SELECT current_database()"))).scalar_one()
    tables = (
        await connection.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        )
    ).scalars()
    append_only = set((await connection.execute(text(_APPEND_ONLY_TABLES))).scalars())
    statements = [
        *database_access_statements(database, role),
        "REVOKE ALL ON SCHEMA public FROM PUBLIC",
        f'REVOKE ALL ON SCHEMA public FROM "{role}"',
        f'GRANT USAGE ON SCHEMA public TO "{role}"',
        f'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{role}"',
        f'REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM "{role}"',
        f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}"',
    ]
    for table in tables:
        read_and_append = table in append_only or table == "alembic_version"
        rights = _APPEND_ONLY_TABLE_RIGHTS if read_and_append else _ORDINARY_TABLE_RIGHTS
        statements.append(f'GRANT {rights} ON TABLE "{table}" TO "{role}"')
    return statements


def _current_revisions(sync_connection: Connection) -> frozenset[str]:
    """The database's `alembic_version` rows; none before the first migration.

    Read directly: `MigrationContext.configure(...).get_current_heads()` reads the same
    rows but logs "Context impl PostgresqlImpl." and "Will assume transactional DDL." at
    INFO on every call, i.e. on every /readyz probe.
    """
    if sync_connection.execute(text("SELECT to_regclass('alembic_version')")).scalar() is None:
        return frozenset()
    rows = sync_connection.execute(text("SELECT version_num FROM alembic_version"))
    return frozenset(str(version) for version in rows.scalars())


async def _database_revisions(database_url: str) -> frozenset[str]:
    engine = create_async_engine(to_asyncpg_url(database_url), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_current_revisions)
    finally:
        await engine.dispose()


def _warn_ahead(revisions: frozenset[str], release: ReleaseRevisions) -> None:
    log.warning(
        "migrations.database_ahead",
        database_revisions=sorted(revisions),
        release_heads=sorted(release.heads),
    )


class SchemaCheck:
    """The `migrations` check of `/readyz`; warns once per newer revision, not per probe."""

    def __init__(self, script_location: Path) -> None:
        self.script_location = script_location
        self._ahead_warned: frozenset[str] = frozenset()

    async def check(self, connection: AsyncConnection) -> MigrationsCheck:
        revisions = await connection.run_sync(_current_revisions)
        release = release_revisions(self.script_location)
        state = compare_schema(revisions, release)
        if state is MigrationsCheck.ahead and revisions != self._ahead_warned:
            self._ahead_warned = revisions
            _warn_ahead(revisions, release)
        return state


def run_env(target_metadata: MetaData) -> None:
    """The body of every service's `migrations/env.py` (online mode, asyncpg)."""
    from alembic import context

    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None, "sqlalchemy.url must be set by alembic_config()"

    def do_run(connection: Connection) -> None:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()

    async def run() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        async with engine.connect() as connection:
            await connection.run_sync(do_run)
        await engine.dispose()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(run())
        return
    raise RuntimeError("run migrations outside an event loop (e.g. asyncio.to_thread)")
