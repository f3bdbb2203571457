"""Create each service's database and its two roles on a PostgreSQL server (local or external).

Per service: `sagabank_<service>_owner` owns the database (and so its `public` schema) and
runs the migrations; `sagabank_<service>_app` is what the service connects as, with the
rights the migrations grant it (kit.migrations.grant_application_role).
"""

import contextlib

import asyncpg

from kit.jobs import lock_key
from kit.settings import to_asyncpg_dsn, with_database

# Held while a role is set up: one server-wide advisory lock.
_ROLE_SETUP_LOCK_KEY = lock_key("sagabank.role-setup")

SERVICE_DATABASES = {
    "accounts": "sagabank_accounts",
    "transactions": "sagabank_transactions",
    "fraud": "sagabank_fraud",
    "notifications": "sagabank_notifications",
}


async def ensure_database(
    server_url: str, database: str, *, template: str | None = None, owner: str | None = None
) -> None:
    """CREATE DATABASE unless it exists (`server_url` names any database we may connect to),
    owned by `owner` (None: by whoever `server_url` connects as)."""
    connection = await asyncpg.connect(to_asyncpg_dsn(server_url), timeout=10)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if exists:
            return
        # Identifiers cannot be bound as parameters; quote them.
        statement = f'CREATE DATABASE "{database}"'
        if template is not None:
            statement += f' TEMPLATE "{template}"'
        if owner is not None:
            statement += f' OWNER "{owner}"'
        # Another launcher or test may create it at the same moment.
        with contextlib.suppress(asyncpg.DuplicateDatabaseError):
            await connection.execute(statement)
    finally:
        await connection.close()


async def ensure_login_role(server_url: str, role: str, *, password: str | None) -> None:
    """A role that may log in with `password` (None: none, for trust authentication), and
    nothing else: no superuser, no CREATEDB, no CREATEROLE. Set again on every call."""
    connection = await asyncpg.connect(to_asyncpg_dsn(server_url), timeout=10)
    try:
        async with connection.transaction():
            # Another launcher or test worker may set up the same role at the same moment,
            # and PostgreSQL fails concurrent ALTER ROLEs of one role ("tuple concurrently
            # updated") and may fail concurrent CREATE ROLEs: one caller at a time per server.
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _ROLE_SETUP_LOCK_KEY)
            exists = await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            if not exists:
                await connection.execute(f'CREATE ROLE "{role}"')
            # format() quotes the password server-side: a utility statement binds no parameters.
            statement = await connection.fetchval(
                "SELECT format('ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                "NOBYPASSRLS PASSWORD %L', $1::text, $2::text)",
                role,
                password,
            )
            await connection.execute(statement)
    finally:
        await connection.close()


async def drop_database(server_url: str, database: str) -> None:
    connection = await asyncpg.connect(to_asyncpg_dsn(server_url), timeout=10)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await connection.close()


# Everything a migration creates in `public`: tables (their indexes and owned sequences
# follow them), views, free-standing sequences and functions, as ALTER ... OWNER statements.
_FOREIGN_OWNED_OBJECTS = """
    SELECT format('ALTER TABLE %s OWNER TO %I', c.oid::regclass, $1::text)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
      AND c.relowner <> $1::text::regrole
    UNION ALL
    SELECT format('ALTER SEQUENCE %s OWNER TO %I', c.oid::regclass, $1::text)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind = 'S' AND c.relowner <> $1::text::regrole
      AND NOT EXISTS (
          SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')
      )
    UNION ALL
    SELECT format('ALTER FUNCTION %s OWNER TO %I', p.oid::regprocedure, $1::text)
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'public' AND p.proowner <> $1::text::regrole
"""


async def adopt_database(server_url: str, database: str, owner: str) -> None:
    """Make `owner` the owner of `database` and of every object its migrations created: a
    local bank created before the owner role existed had them all owned by the superuser.

    `server_url` must connect as a superuser (the local bank's own server, or an external
    one's administrator). Does nothing when `owner` owns it all already.
    """
    admin = await asyncpg.connect(to_asyncpg_dsn(server_url), timeout=10)
    try:
        current = await admin.fetchval(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", database
        )
        if current != owner:
            await admin.execute(f'ALTER DATABASE "{database}" OWNER TO "{owner}"')
    finally:
        await admin.close()
    connection = await asyncpg.connect(
        to_asyncpg_dsn(with_database(server_url, database)), timeout=10
    )
    try:
        async with connection.transaction():
            for statement in await connection.fetch(_FOREIGN_OWNED_OBJECTS, owner):
                await connection.execute(statement[0])
    finally:
        await connection.close()
