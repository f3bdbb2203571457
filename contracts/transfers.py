"""Transfers wire contracts: the public transfers API, the saga's input and its projection."""

import enum
import uuid
from datetime import datetime
from typing import Annotated, Final, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from contracts.common import Identifier, ShortText, StrictModel
from contracts.fraud import FraudDecision, ScoreReason
from contracts.money import AmountMinor, CurrencyCode

TRANSFERS_PATH = "/v1/transfers"
# The saga reports each step here (transactions service, internal): POST a StepRecord.
TRANSFER_STEPS_PATH = "/v1/internal/transfers/{transfer_id}/steps"
TASK_QUEUE: Final = "sagabank-transfers"
WORKFLOW_NAME: Final = "TransferWorkflow"
SIGNAL_REVIEW_DECISION: Final = "review_decision"
SIGNAL_CANCEL: Final = "cancel"
# The update behind `POST /v1/transfers/{id}/cancel`: unlike the signal, its validator
# refuses once posting has begun, so the caller learns the answer (409) synchronously.
UPDATE_CANCEL: Final = "request_cancel"
QUERY_STATUS: Final = "status"
REVIEW_TIMEOUT_SECONDS_DEFAULT: Final = 24 * 3600

# Namespace for ids derived from a transfer id and a step, so every retry of a step
# carries the same id and every service can deduplicate it.
STEP_ID_NAMESPACE: Final = uuid.UUID("8a4c1d2e-5b6f-4f7a-9c3d-2e1f0a9b8c7d")


def workflow_id(transfer_id: UUID) -> str:
    """The Temporal workflow id of a transfer: readable in the web UI, unique per transfer."""
    return f"transfer-{transfer_id}"


def step_id(transfer_id: UUID, step: str) -> UUID:
    """The deterministic id of one step of one transfer (e.g. its hold or its posting)."""
    assert step, "a step needs a name"
    return uuid.uuid5(STEP_ID_NAMESPACE, f"{transfer_id}:{step}")


# Custom search attributes registered on the Temporal namespace, with their types.
SEARCH_ATTRIBUTES: Final[dict[str, str]] = {
    "TransferStatus": "Keyword",
    "SourceAccountId": "Keyword",
    "TargetAccountId": "Keyword",
    "AmountMinor": "Int",
    "Currency": "Keyword",
    "FraudDecision": "Keyword",
}


class TransferStatus(enum.StrEnum):
    pending = "pending"
    in_review = "in_review"
    completed = "completed"
    rejected = "rejected"
    declined = "declined"
    expired = "expired"
    cancelled = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self not in (TransferStatus.pending, TransferStatus.in_review)


Metadata = Annotated[dict[Identifier, ShortText], Field(max_length=20)]


class TransferCreate(StrictModel):
    source_account_id: UUID
    target_account_id: UUID
    amount_minor: AmountMinor
    currency: CurrencyCode
    description: ShortText | None = None
    metadata: Metadata = Field(default_factory=dict)


class TransferStep(BaseModel):
    name: str = Field(max_length=40)
    outcome: str = Field(max_length=40)
    occurred_at: datetime
    detail: str | None = Field(default=None, max_length=500)


class FraudAssessment(BaseModel):
    score: int
    decision: FraudDecision
    reasons: list[ScoreReason]


class Transfer(BaseModel):
    id: UUID
    workflow_id: str
    status: TransferStatus
    source_account_id: UUID
    target_account_id: UUID
    amount_minor: int
    currency: str
    description: str | None
    metadata: dict[str, str]
    steps: list[TransferStep]
    fraud: FraudAssessment | None
    hold_id: UUID | None
    posting_id: UUID | None
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime


class StepRecord(StrictModel):
    """What the saga reports after each step; applied only if `version` is newer.

    Idempotent on (transfer id, step): a retried report changes nothing, and a late
    report with an older version never moves the transfer's status backwards.
    """

    step: str = Field(min_length=1, max_length=40)
    outcome: str = Field(min_length=1, max_length=40)
    status: TransferStatus
    version: int = Field(ge=1, le=1000)
    occurred_at: datetime
    detail: str | None = Field(default=None, max_length=500)
    fraud: FraudAssessment | None = None
    hold_id: UUID | None = None
    posting_id: UUID | None = None
    failure_reason: str | None = Field(default=None, max_length=500)


class TransferWorkflowInput(BaseModel):
    """The saga's one input. Everything it needs travels here; it reads no database."""

    transfer_id: UUID
    source_account_id: UUID
    target_account_id: UUID
    amount_minor: int
    currency: str
    description: str | None = None
    review_timeout_seconds: int = REVIEW_TIMEOUT_SECONDS_DEFAULT


class TransferWorkflowResult(BaseModel):
    transfer_id: UUID
    status: TransferStatus
    failure_reason: str | None = None


class ReviewDecision(StrictModel):
    """A reviewer's verdict on a transfer in review (signal `review_decision`)."""

    decision: Literal["approve", "reject"]
    reviewer_id: Identifier
    note: ShortText | None = None


class CancelRequest(StrictModel):
    """A customer's request to cancel (signal `cancel`); honoured only before posting."""

    reason: ShortText | None = None


class CancelResult(BaseModel):
    """The workflow's answer to a cancel update: accepted, and the status at that moment."""

    accepted: bool
    status: TransferStatus
