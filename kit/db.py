"""The database of one service: an async engine and a unit of work per request."""

import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Final

from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session as SyncSession
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

# Where a session finds its service's audit chain key (kit.audit): in `Session.info`.
AUDIT_CHAIN_KEY_INFO = "audit_chain_key"
# And the service whose chain it is, the label of the audit append latency (kit.metrics).
AUDIT_SERVICE_INFO = "audit_service"


# Callbacks to run once the session's transaction commits (kit.db.after_commit).
_AFTER_COMMIT_INFO = "after_commit_callbacks"


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run `callback` once `session`'s current transaction commits, never if it rolls back:
    for what must count only what the database kept (metrics)."""
    session.info.setdefault(_AFTER_COMMIT_INFO, []).append(callback)


@event.listens_for(SyncSession, "after_commit")
def _run_after_commit(session: SyncSession) -> None:
    for callback in session.info.pop(_AFTER_COMMIT_INFO, []):
        callback()


@event.listens_for(SyncSession, "after_rollback")
def _forget_after_commit(session: SyncSession) -> None:
    # No savepoint is used where callbacks are registered: a rollback drops them all.
    session.info.pop(_AFTER_COMMIT_INFO, None)


# A pooled connection idle longer than this is pinged before use (see `_check_on_checkout`).
PING_IDLE_AFTER_SECONDS: Final = 5.0
# Where a pooled connection's record keeps when it was last checked in (time.monotonic()).
_CHECKED_IN_AT_INFO: Final = "checked_in_at"


def _check_on_checkout(engine: AsyncEngine, *, ping_idle_after_seconds: float) -> None:
    """Replace a dead pooled connection before a request gets it, without SQLAlchemy's
    `pool_pre_ping`: on asyncpg that is BEGIN, a query and ROLLBACK at every checkout,
    three round trips paid by every request under load.

    A connection whose server closed it (a terminated backend, a restart) is known closed
    to asyncpg, which reads its socket while it sits in the pool: replaced at no cost.
    Only one idle longer than `ping_idle_after_seconds` is pinged, for what no socket
    tells (a peer gone silent). Raising DisconnectionError makes the pool discard the
    connection and check out another (SQLAlchemy's pessimistic disconnect handling).
    """
    pool = engine.sync_engine.pool
    dialect = engine.sync_engine.dialect

    @event.listens_for(pool, "checkin")
    def _checked_in(dbapi_connection: DBAPIConnection | None, record: ConnectionPoolEntry) -> None:
        record.info[_CHECKED_IN_AT_INFO] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _checked_out(
        dbapi_connection: DBAPIConnection,
        record: ConnectionPoolEntry,
        proxy: PoolProxiedConnection,
    ) -> None:
        # The asyncpg connection itself (dbapi_connection is SQLAlchemy's adapter of it).
        driver_connection = record.driver_connection
        if driver_connection is None or driver_connection.is_closed():
            raise DisconnectionError("the server closed this pooled connection")
        checked_in_at = record.info.get(_CHECKED_IN_AT_INFO)
        # None: connected just now, for this checkout.
        if checked_in_at is None or time.monotonic() - checked_in_at < ping_idle_after_seconds:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise DisconnectionError("a pooled connection did not answer its ping") from error


class Database:
    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        application_name: str = "sagabank",
        audit_chain_key: bytes | None = None,
        ping_idle_after_seconds: float = PING_IDLE_AFTER_SECONDS,
    ) -> None:
        """`audit_chain_key` keys the service's audit chain; without it, audit writes and
        checks raise (the key lives in the service's settings, never in its database).
        A pooled connection idle longer than `ping_idle_after_seconds` is pinged before use."""
        # What the pool may hold at most: its size plus as many again in overflow.
        self.connections_max = 2 * pool_size
        self.engine: AsyncEngine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=self.connections_max - pool_size,
            pool_timeout=10,
            connect_args={
                "server_settings": {"application_name": application_name},
                # A query that hangs must not hold a request (and its row locks) forever.
                "command_timeout": 30,
            },
        )
        _check_on_checkout(self.engine, ping_idle_after_seconds=ping_idle_after_seconds)
        info: dict[str, object] = {AUDIT_SERVICE_INFO: application_name}
        if audit_chain_key is not None:
            info[AUDIT_CHAIN_KEY_INFO] = audit_chain_key
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, info=info)

    async def dispose(self) -> None:
        await self.engine.dispose()


def database_of(app: Any) -> Database:
    """The database the service shell (kit.app) opened for `app`'s lifespan."""
    database = getattr(app.state, "database", None)
    assert isinstance(database, Database), "the service shell opens the database first"
    return database


async def get_database(request: Request) -> Database:
    return database_of(request.app)


async def get_session(
    database: Annotated[Database, Depends(get_database)],
) -> AsyncIterator[AsyncSession]:
    """One transaction per request: commit when the handler returns, roll back if it raises."""
    async with database.sessions() as session, session.begin():
        yield session


# scope="function": commit before the response leaves. With the default ("request") FastAPI
# runs the cleanup after sending, so a client could see 201 for a write that then fails to
# commit, or act on it before it is visible.
Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
# For a route that runs its own transactions (e.g. several, or one after the answer).
ServiceDatabase = Annotated[Database, Depends(get_database)]
