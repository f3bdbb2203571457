"""Create each service's database on a PostgreSQL server (local or external)."""

import contextlib

import asyncpg

from kit.settings import to_asyncpg_dsn

SERVICE_DATABASES = {
    "accounts": "sagabank_accounts",
    "transactions": "sagabank_transactions",
    "fraud": "sagabank_fraud",
    "notifications": "sagabank_notifications",
}


async def ensure_database(server_url: str, database: str, *, template: str | None = None) -> None:
    """CREATE DATABASE unless it exists (`server_url` names any database we may connect to)."""
    connection = await asyncpg.connect(to_asyncpg_dsn(server_url), timeout=10)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if exists:
            return
        # Identifiers cannot be bound as parameters; quote them.
        statement = f'CREATE DATABASE "{database}"'
        if template is not None:
            statement += f' TEMPLATE "{template}"'
        # Another launcher or test may create it at the same moment.
        with contextlib.suppress(asyncpg.DuplicateDatabaseError):
            await connection.execute(statement)
    finally:
        await connection.close()


async def drop_database(server_url: str, database: str) -> None:
    connection = await asyncpg.connect(to_asyncpg_dsn(server_url), timeout=10)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await connection.close()
