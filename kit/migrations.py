"""Alembic, shared: each service keeps its own history under `<service>/migrations/`."""

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, pool
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from kit.settings import to_asyncpg_url


def alembic_config(script_location: Path, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    # ConfigParser interpolation would read a '%' in a password as a directive.
    config.set_main_option("sqlalchemy.url", to_asyncpg_url(database_url).replace("%", "%%"))
    return config


def upgrade_to_head(script_location: Path, database_url: str) -> None:
    """Apply every migration; safe to run again (already at head does nothing)."""
    command.upgrade(alembic_config(script_location, database_url), "head")


def head_revision(script_location: Path) -> str | None:
    return ScriptDirectory(str(script_location)).get_current_head()


async def is_at_head(connection: AsyncConnection, script_location: Path) -> bool:
    def current(sync_connection: Connection) -> str | None:
        return MigrationContext.configure(sync_connection).get_current_revision()

    revision = await connection.run_sync(current)
    return revision == head_revision(script_location)


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
