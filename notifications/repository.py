"""Every query of the notifications service."""

import uuid

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.notifications import EventCreate
from notifications.models import EventRow


async def insert_event(session: AsyncSession, event: EventCreate) -> bool:
    """Insert unless the id exists; True when this call created it."""
    statement = (
        insert(EventRow)
        .values(
            id=event.id,
            type=event.type.value,
            occurred_at=event.timestamp,
            data=event.data,
        )
        .on_conflict_do_nothing(index_elements=[EventRow.id])
        .returning(EventRow.id)
    )
    created = (await session.execute(statement)).scalar_one_or_none()
    return created is not None


async def get_event(session: AsyncSession, event_id: uuid.UUID) -> EventRow | None:
    return (
        await session.execute(select(EventRow).where(EventRow.id == event_id))
    ).scalar_one_or_none()
