"""HTTP routes of the notifications service."""

import uuid

from fastapi import APIRouter, Response, status

from contracts.notifications import EVENTS_PATH, Event, EventCreate
from kit.db import Session
from kit.problems import problem_responses
from notifications import service
from notifications.errors import EventIdReused, EventNotFound

router = APIRouter(tags=["events"])


@router.post(
    EVENTS_PATH,
    status_code=status.HTTP_201_CREATED,
    summary="Publish a transfer event (idempotent on its id)",
    responses={
        200: {"model": Event, "description": "Already accepted earlier"},
        **problem_responses(EventIdReused),
    },
)
async def publish_event(body: EventCreate, session: Session, response: Response) -> Event:
    event, created = await service.publish_event(session, event=body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return event


@router.get(
    f"{EVENTS_PATH}/{{event_id}}",
    summary="Get one event",
    responses=problem_responses(EventNotFound),
)
async def get_event(event_id: uuid.UUID, session: Session) -> Event:
    return await service.get_event(session, event_id=event_id)
