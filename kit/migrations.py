"""Alembic, shared: each service keeps its own history under `<service>/migrations/`."""

import asyncio
import functools
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, pool
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from contracts.common import MigrationsCheck
from kit.settings import to_asyncpg_url

log = structlog.get_logger()


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


def upgrade_to_head(script_location: Path, database_url: str) -> None:
    """Apply every migration; safe to run again (at head or newer, it does nothing)."""
    revisions = asyncio.run(_database_revisions(database_url))
    release = release_revisions(script_location)
    if compare_schema(revisions, release) is MigrationsCheck.ahead:
        # A rollback re-runs the previous release's Job; Alembic would fail on a revision
        # it does not know, and a rollback keeps the newer (expand-only) schema anyway.
        _warn_ahead(revisions, release)
        return
    command.upgrade(alembic_config(script_location, database_url), "head")


def _current_revisions(sync_connection: Connection) -> frozenset[str]:
    return frozenset(MigrationContext.configure(sync_connection).get_current_heads())


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
