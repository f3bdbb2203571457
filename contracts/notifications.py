"""Notifications service wire contracts: transfer events published by the saga."""

import enum
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field

from contracts.common import StrictModel

EVENTS_PATH = "/v1/events"


class EventType(enum.StrEnum):
    transfer_created = "transfer.created"
    transfer_in_review = "transfer.in_review"
    transfer_completed = "transfer.completed"
    transfer_rejected = "transfer.rejected"
    transfer_declined = "transfer.declined"
    transfer_expired = "transfer.expired"
    transfer_cancelled = "transfer.cancelled"


class EventCreate(StrictModel):
    """An event to fan out; idempotent on `id` (the saga derives it from transfer id + type)."""

    id: UUID
    type: EventType
    timestamp: datetime
    data: dict[str, Any] = Field(max_length=50)


class Event(BaseModel):
    id: UUID
    type: EventType
    timestamp: datetime
    data: dict[str, Any]
    received_at: datetime
