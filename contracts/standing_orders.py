"""Standing orders wire contracts: recurring transfers, one Temporal Schedule each."""

import enum
from datetime import datetime
from typing import Final
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.common import ShortText, StrictModel
from contracts.examples import (
    EXAMPLE_SOURCE_ACCOUNT_ID,
    EXAMPLE_STANDING_ORDER_ID,
    EXAMPLE_TARGET_ACCOUNT_ID,
    EXAMPLE_TIME,
    EXAMPLE_TRANSFER_ID,
)
from contracts.money import AmountMinor, CurrencyCode
from contracts.transfers import TransferStatus

STANDING_ORDERS_PATH: Final = "/v1/standing-orders"
# The occurrence workflow asks transactions to create the transfer of one scheduled time
# (worker scope), and later tells it how that transfer ended.
STANDING_ORDER_OCCURRENCES_INTERNAL_PATH: Final = (
    "/v1/internal/standing-orders/{standing_order_id}/occurrences"
)
STANDING_ORDER_OUTCOMES_INTERNAL_PATH: Final = (
    "/v1/internal/standing-orders/{standing_order_id}/occurrences/outcome"
)
OCCURRENCE_WORKFLOW_NAME: Final = "StandingOrderOccurrenceWorkflow"
# Set by Temporal on every workflow a schedule starts: the time the action was due.
SCHEDULED_START_TIME_ATTRIBUTE: Final = "TemporalScheduledStartTime"
# Occurrences an order may have in all (`count`), and next run times shown.
OCCURRENCES_COUNT_MAX: Final = 10_000
NEXT_RUNS_SHOWN: Final = 3
INTERVAL_LENGTH_MAX: Final = 32


def schedule_id(standing_order_id: UUID) -> str:
    """The Temporal Schedule of an order: readable on the UI's Schedules page."""
    return f"standing-order-{standing_order_id}"


def occurrence_idempotency_key(standing_order_id: UUID, scheduled_at: datetime) -> str:
    """The Idempotency-Key of an occurrence's transfer: one per (order, scheduled time),
    so a schedule that fires twice for one time moves money once."""
    assert scheduled_at.tzinfo is not None, "a scheduled time is timezone-aware"
    return f"standing-order:{standing_order_id}:{int(scheduled_at.timestamp())}"


# Why an order whose schedule was never created ended cancelled (decision 0033).
NOT_SCHEDULED_REASON: Final = "not-scheduled"


class StandingOrderStatus(enum.StrEnum):
    active = "active"
    paused = "paused"
    cancelled = "cancelled"


class StandingOrderCreate(StrictModel):
    """A recurring transfer: every `interval` (ISO 8601: "P1M", "P7D", "PT12H") from
    `start_at`, until `end_at` or for `count` occurrences (at most one of the two)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "source_account_id": EXAMPLE_SOURCE_ACCOUNT_ID,
                    "target_account_id": EXAMPLE_TARGET_ACCOUNT_ID,
                    "amount_minor": 125000,
                    "currency": "EUR",
                    "description": "Rent",
                    "interval": "P1M",
                    "start_at": "2027-01-01T08:00:00Z",
                    "count": 12,
                }
            ]
        }
    )

    source_account_id: UUID
    target_account_id: UUID
    amount_minor: AmountMinor
    currency: CurrencyCode
    description: ShortText | None = None
    interval: str = Field(min_length=2, max_length=INTERVAL_LENGTH_MAX, examples=["P1M"])
    start_at: AwareDatetime
    end_at: AwareDatetime | None = None
    count: int | None = Field(default=None, ge=1, le=OCCURRENCES_COUNT_MAX)


class StandingOrder(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": EXAMPLE_STANDING_ORDER_ID,
                    "schedule_id": "standing-order-" + EXAMPLE_STANDING_ORDER_ID,
                    "status": "active",
                    "source_account_id": EXAMPLE_SOURCE_ACCOUNT_ID,
                    "target_account_id": EXAMPLE_TARGET_ACCOUNT_ID,
                    "amount_minor": 125000,
                    "currency": "EUR",
                    "description": "Rent",
                    "interval": "P1M",
                    "start_at": "2027-01-01T08:00:00Z",
                    "end_at": None,
                    "count": 12,
                    "next_run_at": ["2027-01-01T08:00:00Z", "2027-02-01T08:00:00Z"],
                    "next_run_at_known": True,
                    "created_at": EXAMPLE_TIME,
                    "updated_at": EXAMPLE_TIME,
                }
            ]
        }
    )

    id: UUID
    schedule_id: str
    status: StandingOrderStatus
    source_account_id: UUID
    target_account_id: UUID
    amount_minor: int
    currency: str
    description: str | None
    interval: str
    start_at: datetime
    end_at: datetime | None
    count: int | None
    # From the Temporal Schedule's description: empty once it has nothing left to run
    # (paused, cancelled, ended), or when Temporal did not answer (`next_run_at_known`).
    next_run_at: list[datetime]
    next_run_at_known: bool
    # Why the service cancelled it: `not-scheduled` when its schedule could not be created
    # before the start deadline (the 503 its creator got stays true). None otherwise.
    cancellation_reason: str | None = None
    created_at: datetime
    updated_at: datetime


class OccurrenceRequest(StrictModel):
    """The occurrence workflow's ask: create the transfer due at `scheduled_at`."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"scheduled_at": "2027-01-01T08:00:00Z"}]}
    )

    scheduled_at: AwareDatetime


class OccurrenceOutcome(StrictModel):
    """How an occurrence's transfer ended, as the occurrence workflow learnt it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "scheduled_at": "2027-01-01T08:00:00Z",
                    "status": "rejected",
                    "failure_reason": "insufficient-funds",
                }
            ]
        }
    )

    scheduled_at: AwareDatetime
    status: TransferStatus
    failure_reason: str | None = Field(default=None, max_length=500)


class StandingOrderOccurrence(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "standing_order_id": EXAMPLE_STANDING_ORDER_ID,
                    "scheduled_at": "2027-01-01T08:00:00Z",
                    "transfer_id": EXAMPLE_TRANSFER_ID,
                    "status": "completed",
                    "failure_reason": None,
                    "failed_at": None,
                    "created_at": "2027-01-01T08:00:01Z",
                }
            ]
        }
    )

    standing_order_id: UUID
    scheduled_at: datetime
    # None when transactions refused to create the transfer for good (the source account
    # gone or no longer the owner's, terms refused): the occurrence failed without one.
    transfer_id: UUID | None
    # The transfer's status now (its saga's projection); None without a transfer.
    status: TransferStatus | None
    failure_reason: str | None
    # When the occurrence's failure was recorded (and notified); None otherwise.
    failed_at: datetime | None
    created_at: datetime


class OccurrenceWorkflowInput(BaseModel):
    """The Schedule's action input: the order and its terms (fixed for its life), which a
    failure's event names. The scheduled time is read from the workflow's
    `TemporalScheduledStartTime`; `scheduled_at` only stands in for a run started by hand
    (an operator replaying a missed occurrence)."""

    standing_order_id: UUID
    source_account_id: UUID
    target_account_id: UUID
    amount_minor: int
    currency: str
    # The order's owner: the failure event is routed to them.
    source_customer_id: str | None = None
    scheduled_at: datetime | None = None


class OccurrenceWorkflowResult(BaseModel):
    standing_order_id: UUID
    scheduled_at: datetime
    transfer_id: UUID | None
    status: TransferStatus | None
