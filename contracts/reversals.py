"""Reversals wire contracts: money moved back from a completed transfer's payee to its payer.

A reversal is a transfer of its own (its own saga, ids, audit and ledger movements) that
names the transfer it reverses; docs/decisions/0032-reversals.md says why.
"""

from datetime import datetime
from typing import Final
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.common import ShortText, StrictModel
from contracts.examples import (
    EXAMPLE_LATER_TIME,
    EXAMPLE_LEDGER_TRANSFER_ID,
    EXAMPLE_REVERSAL_ID,
    EXAMPLE_SOURCE_ACCOUNT_ID,
    EXAMPLE_TARGET_ACCOUNT_ID,
    EXAMPLE_TIME,
    EXAMPLE_TRANSFER_ID,
    example_of,
)
from contracts.money import AmountMinor
from contracts.transfers import (
    TRANSFER_REVERSALS_MAX,
    TransferStatus,
    TransferStep,
    TransferWorkflowInput,
)

TRANSFER_REVERSALS_PATH: Final = "/v1/transfers/{transfer_id}/reversals"
REVERSALS_PATH: Final = "/v1/reversals"
REVERSAL_WORKFLOW_NAME: Final = "ReversalWorkflow"
# The search attribute naming the reversed transfer (one of contracts.transfers'
# SEARCH_ATTRIBUTES): `OriginalTransferId = "<id>"` lists a transfer's reversals.
ORIGINAL_TRANSFER_ID_ATTRIBUTE: Final = "OriginalTransferId"
# Statuses whose amount no longer counts against the original: nothing moved back.
REVERSAL_FAILED_STATUSES: Final = frozenset(
    {
        TransferStatus.rejected,
        TransferStatus.declined,
        TransferStatus.expired,
        TransferStatus.cancelled,
    }
)


def reversal_workflow_id(reversal_id: UUID) -> str:
    """The Temporal workflow id of a reversal, readable in the web UI."""
    return f"reversal-{reversal_id}"


class ReversalCreate(StrictModel):
    """`amount_minor` omitted: reverse what remains of the original."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"amount_minor": 25000, "reason": "Deposit returned"}]}
    )

    amount_minor: AmountMinor | None = None
    reason: ShortText = Field(min_length=1)


class Reversal(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": EXAMPLE_REVERSAL_ID,
                    "workflow_id": "reversal-" + EXAMPLE_REVERSAL_ID,
                    "original_transfer_id": EXAMPLE_TRANSFER_ID,
                    "status": "completed",
                    "source_account_id": EXAMPLE_TARGET_ACCOUNT_ID,
                    "target_account_id": EXAMPLE_SOURCE_ACCOUNT_ID,
                    "amount_minor": 25000,
                    "currency": "EUR",
                    "reason": "Deposit returned",
                    "steps": [{"name": "post", "outcome": "ok", "occurred_at": EXAMPLE_LATER_TIME}],
                    "hold_id": EXAMPLE_LEDGER_TRANSFER_ID,
                    "posting_id": "3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7",
                    "failure_reason": None,
                    "created_at": EXAMPLE_TIME,
                    "updated_at": EXAMPLE_LATER_TIME,
                }
            ]
        }
    )

    id: UUID
    workflow_id: str
    original_transfer_id: UUID
    status: TransferStatus
    # The payee's account (money leaves it) and the payer's (money returns to it).
    source_account_id: UUID
    target_account_id: UUID
    amount_minor: int
    currency: str
    reason: str | None
    steps: list[TransferStep]
    hold_id: UUID | None
    posting_id: UUID | None
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime


class ReversalList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [example_of(Reversal)]}]})

    items: list[Reversal] = Field(max_length=TRANSFER_REVERSALS_MAX)


class ReversalWorkflowInput(BaseModel):
    """The reversal saga's one input; `source_customer_id` is who asked, if a customer did."""

    reversal_id: UUID
    original_transfer_id: UUID
    source_account_id: UUID
    target_account_id: UUID
    amount_minor: int
    currency: str
    reason: str | None = None
    source_customer_id: str | None = None
    hold_timeout_seconds: int | None = Field(default=None, gt=0)
    start_deadline: datetime | None = None

    def as_transfer(self) -> TransferWorkflowInput:
        """The reversal as the transfer activities take it: its own id, payee to payer."""
        return TransferWorkflowInput(
            transfer_id=self.reversal_id,
            source_account_id=self.source_account_id,
            target_account_id=self.target_account_id,
            amount_minor=self.amount_minor,
            currency=self.currency,
            description=self.reason,
            source_customer_id=self.source_customer_id,
            hold_timeout_seconds=self.hold_timeout_seconds,
            start_deadline=self.start_deadline,
        )


class ReversalWorkflowResult(BaseModel):
    reversal_id: UUID
    original_transfer_id: UUID
    status: TransferStatus
    failure_reason: str | None = None
