"""Activity arguments and saga vocabulary that only the worker uses (not wire contracts)."""

import enum
from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel

from contracts.notifications import EventType
from contracts.transfers import StepRecord, TransferStatus, TransferWorkflowInput


class Step(enum.StrEnum):
    """The steps the saga reports to the transactions service (one report each per transfer)."""

    # Reported only when the saga starts too late to move money (past its start deadline).
    start = "start"
    validate = "validate"
    hold = "hold"
    score = "score"
    review = "review"
    post = "post"
    void = "void"
    cancel = "cancel"
    notify = "notify"


class StepOutcome(enum.StrEnum):
    succeeded = "succeeded"
    failed = "failed"
    approve = "approve"
    review = "review"
    decline = "decline"
    approved = "approved"
    rejected = "rejected"
    timed_out = "timed_out"
    requested = "requested"


# The terminal event published for each way a transfer can end.
TERMINAL_EVENTS: dict[TransferStatus, EventType] = {
    TransferStatus.completed: EventType.transfer_completed,
    TransferStatus.rejected: EventType.transfer_rejected,
    TransferStatus.declined: EventType.transfer_declined,
    TransferStatus.expired: EventType.transfer_expired,
    TransferStatus.cancelled: EventType.transfer_cancelled,
}


class HoldAction(BaseModel):
    """Post or void the hold of a transfer.

    A void names the transfer too, so that the ledger can void a hold it has not seen yet
    (a slow attempt to place it may still be on its way): the void then leaves a tombstone
    that refuses the hold should it arrive. (Histories before this carry no `transfer`.)
    """

    transfer_id: UUID
    hold_id: UUID
    transfer: TransferWorkflowInput | None = None


class EventPublication(BaseModel):
    """A transfer event to publish; `occurred_at` comes from workflow time, so retries agree.

    The two customer ids route the event to each side's webhooks and email (notifications
    drops them before anything leaves the bank); None when not known, e.g. a transfer
    refused before accounts named the owners.
    """

    transfer: TransferWorkflowInput
    type: EventType
    status: TransferStatus
    occurred_at: datetime
    failure_reason: str | None = None
    source_customer_id: str | None = None
    target_customer_id: str | None = None
    # Set by a reversal's saga (whose `transfer` is the reversal): the transfer it reverses.
    original_transfer_id: UUID | None = None


class StepReport(BaseModel):
    """One step report for the transactions service."""

    transfer_id: UUID
    record: StepRecord


class StepsReport(BaseModel):
    """Consecutive step reports of one transfer, oldest first, sent in one request."""

    transfer_id: UUID
    records: list[StepRecord]


class OutcomeNotice(BaseModel):
    """How a scored transfer ended, for the fraud service (`report_outcome`).

    The activity, not the workflow, shapes it into the wire `OutcomeReport`: a report that
    fails validation is then one failed activity, not a workflow task failing forever.
    """

    transfer: TransferWorkflowInput
    final_status: TransferStatus
    review_decision: Literal["approve", "reject"] | None = None
    occurred_at: datetime
