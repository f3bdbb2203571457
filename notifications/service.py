"""Use cases of the notifications service."""

import uuid

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.notifications import Event, EventCreate, EventType
from notifications import repository
from notifications.errors import EventIdReused, EventNotFound
from notifications.models import EventRow

log = structlog.get_logger()


def _to_contract(row: EventRow) -> Event:
    return Event(
        id=row.id,
        type=EventType(row.type),
        timestamp=row.occurred_at,
        data=row.data,
        received_at=row.received_at,
    )


async def publish_event(session: AsyncSession, *, event: EventCreate) -> tuple[Event, bool]:
    """Accept an event once: a retry with the same id and content returns the original."""
    created = await repository.insert_event(session, event)
    row = await repository.get_event(session, event.id)
    assert row is not None, "the event was just inserted or already existed"
    stored = _to_contract(row)
    if not created and (stored.type != event.type or stored.data != event.data):
        raise EventIdReused(f"event {event.id} was already published with other content")
    if created:
        log.info("event.accepted", event_id=str(event.id), event_type=event.type.value)
    return stored, created


async def get_event(session: AsyncSession, *, event_id: uuid.UUID) -> Event:
    row = await repository.get_event(session, event_id)
    if row is None:
        raise EventNotFound(f"no event {event_id}")
    return _to_contract(row)
