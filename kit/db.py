"""The database of one service: an async engine and a unit of work per request."""

from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session as SyncSession

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


class Database:
    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        application_name: str = "sagabank",
        audit_chain_key: bytes | None = None,
    ) -> None:
        """`audit_chain_key` keys the service's audit chain; without it, audit writes and
        checks raise (the key lives in the service's settings, never in its database)."""
        # What the pool may hold at most: its size plus as many again in overflow.
        self.connections_max = 2 * pool_size
        self.engine: AsyncEngine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=self.connections_max - pool_size,
            pool_pre_ping=True,
            pool_timeout=10,
            connect_args={
                "server_settings": {"application_name": application_name},
                # A query that hangs must not hold a request (and its row locks) forever.
                "command_timeout": 30,
            },
        )
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
