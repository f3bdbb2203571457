"""Database sessions of the fraud service's routes.

`Session` (kit's): one transaction per request, committed before the answer leaves.

`AutocommitSession`, for scoring only: no transaction around the request. Scoring reads
the features in one statement and writes the score (and, for a review, its queue entry)
in another, a single atomic statement; a transaction around the two would add two round
trips (BEGIN, COMMIT) and no safety: the read takes no locks and the write is idempotent
on the transfer id.
"""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fraud.resources import Resources
from kit.db import Database, Session

__all__ = ["AutocommitSession", "Session", "autocommit_sessions"]


def autocommit_sessions(database: Database) -> async_sessionmaker[AsyncSession]:
    """Sessions on the service's own pool whose statements each commit on their own."""
    engine = database.engine.execution_options(isolation_level="AUTOCOMMIT")
    return async_sessionmaker(engine, expire_on_commit=False)


async def get_autocommit_session(resources: Resources) -> AsyncIterator[AsyncSession]:
    async with resources.autocommit_sessions() as session:
        yield session


AutocommitSession = Annotated[AsyncSession, Depends(get_autocommit_session, scope="function")]
