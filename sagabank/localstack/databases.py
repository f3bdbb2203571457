"""Create each service's database on a PostgreSQL server (local or external)."""

import contextlib

import asyncpg

SERVICE_DATABASES = {
    "accounts": "sagabank_accounts",
    "transactions": "sagabank_transactions",
    "fraud": "sagabank_fraud",
    "notifications": "sagabank_notifications",
}


def with_database(server_url: str, database: str) -> str:
    """`server_url` with its database path replaced by `database`."""
    base, _, query = server_url.partition("?")
    scheme, _, rest = base.partition("://")
    authority = rest.split("/", 1)[0]
    return f"{scheme}://{authority}/{database}" + (f"?{query}" if query else "")


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def ensure_database(server_url: str, database: str, *, template: str | None = None) -> None:
    """CREATE DATABASE unless it exists (`server_url` names any database we may connect to)."""
    connection = await asyncpg.connect(_plain(server_url), timeout=10)
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
    connection = await asyncpg.connect(_plain(server_url), timeout=10)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await connection.close()
