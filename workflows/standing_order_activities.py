"""The standing-order occurrence's activities: create its transfer, learn how it ended,
record and announce a failure. HTTP calls go through the saga's own clients and error
mapping (`workflows.activities`); the wait uses the worker's Temporal client."""

import asyncio
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final

import structlog
from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from contracts.notifications import EVENTS_PATH, EventCreate, EventType
from contracts.standing_orders import (
    STANDING_ORDER_OCCURRENCES_INTERNAL_PATH,
    STANDING_ORDER_OUTCOMES_INTERNAL_PATH,
    OccurrenceOutcome,
    OccurrenceRequest,
    OccurrenceWorkflowInput,
    StandingOrderOccurrence,
)
from contracts.transfers import (
    TransactionsProblem,
    TransferStatus,
    TransferWorkflowResult,
    workflow_id,
)
from workflows.activities import TransferActivities, post_to_service, send_to_service

log = structlog.get_logger()

# Fixed forever: an occurrence's failure event keeps its id across retries.
OCCURRENCE_EVENT_NAMESPACE: Final = uuid.UUID("3f0e5c2a-8d71-4b9e-a6c4-71d2e09b5f13")
# How often the wait on a transfer's end tells Temporal it is alive (its heartbeat
# timeout, in the workflow, is a few times this).
HEARTBEAT_INTERVAL_SECONDS: Final = 10.0
# A saga that failed as a workflow (not a business end) is reported with this reason.
SAGA_FAILED: Final = "saga-failed"


class OccurrenceCall(BaseModel):
    """Which occurrence an activity acts on: the order and its scheduled time."""

    occurrence: OccurrenceWorkflowInput
    scheduled_at: datetime


class TransferEnd(BaseModel):
    # None when transactions refused to create the transfer (the occurrence failed first).
    transfer_id: uuid.UUID | None
    status: TransferStatus
    failure_reason: str | None = None


class OccurrenceFailure(BaseModel):
    """A failed occurrence to record and announce."""

    occurrence: OccurrenceWorkflowInput
    scheduled_at: datetime
    end: TransferEnd
    # When the workflow learnt of the end: the event's time, the same on every retry (the
    # notifications service refuses an event id sent again with another body).
    occurred_at: datetime


def failure_event_id(standing_order_id: uuid.UUID, scheduled_at: datetime) -> uuid.UUID:
    return uuid.uuid5(
        OCCURRENCE_EVENT_NAMESPACE, f"{standing_order_id}:{scheduled_at.isoformat()}:failed"
    )


class StandingOrderActivities:
    """The occurrence workflow's activities, on the saga's HTTP clients and the worker's
    Temporal client (neither owned here)."""

    def __init__(self, *, transfers: TransferActivities, client: Client) -> None:
        self._transactions = transfers.transactions
        self._notifications = transfers.notifications
        self._client = client

    def all(self) -> Sequence[Callable[..., Any]]:
        """Every activity, for `Worker(activities=...)`."""
        return [
            self.create_occurrence,
            self.await_transfer_end,
            self.record_occurrence_failed,
            self.publish_occurrence_failed,
        ]

    @activity.defn(name="create_occurrence")
    async def create_occurrence(self, call: OccurrenceCall) -> StandingOrderOccurrence:
        """Have transactions create the occurrence's transfer (once per scheduled time)."""
        order_id = call.occurrence.standing_order_id
        path = STANDING_ORDER_OCCURRENCES_INTERNAL_PATH.format(standing_order_id=order_id)
        request = OccurrenceRequest(scheduled_at=call.scheduled_at)
        try:
            return await post_to_service(self._transactions, path, request, StandingOrderOccurrence)
        except ApplicationError as error:
            if error.type != TransactionsProblem.idempotency_key_in_flight:
                raise
            # An earlier attempt (or a twin firing) is still creating this very transfer:
            # its key answers once it settles, so asking again is the way to the answer.
            raise ApplicationError(error.message, type=error.type) from None

    @activity.defn(name="await_transfer_end")
    async def await_transfer_end(self, transfer_id: uuid.UUID) -> TransferEnd:
        """Wait for the transfer's saga to end and say how, heartbeating meanwhile."""
        handle = self._client.get_workflow_handle(
            workflow_id(transfer_id), result_type=TransferWorkflowResult
        )
        waiting = asyncio.ensure_future(handle.result())
        try:
            while True:
                done, _pending = await asyncio.wait({waiting}, timeout=HEARTBEAT_INTERVAL_SECONDS)
                if done:
                    break
                activity.heartbeat()
            result = waiting.result()
        except WorkflowFailureError as error:
            # The saga ends with a result in every business case; a failed workflow is
            # a bug or an operator's terminate: money did not move as the order asked.
            log.error("standing_order.saga_failed", transfer_id=str(transfer_id))
            return TransferEnd(
                transfer_id=transfer_id,
                status=TransferStatus.rejected,
                failure_reason=f"{SAGA_FAILED}: {str(error.cause)[:400]}",
            )
        finally:
            waiting.cancel()
        return TransferEnd(
            transfer_id=transfer_id, status=result.status, failure_reason=result.failure_reason
        )

    @activity.defn(name="record_occurrence_failed")
    async def record_occurrence_failed(self, failure: OccurrenceFailure) -> None:
        """Record the failure on the occurrence (marked once)."""
        order_id = failure.occurrence.standing_order_id
        path = STANDING_ORDER_OUTCOMES_INTERNAL_PATH.format(standing_order_id=order_id)
        outcome = OccurrenceOutcome(
            scheduled_at=failure.scheduled_at,
            status=failure.end.status,
            failure_reason=failure.end.failure_reason,
        )
        await send_to_service(self._transactions, path, outcome)

    @activity.defn(name="publish_occurrence_failed")
    async def publish_occurrence_failed(self, failure: OccurrenceFailure) -> None:
        """Publish `standing_order.occurrence_failed`, shaped as a transfer event (so it
        routes to the order's owner) plus the order and the scheduled time."""
        occurrence = failure.occurrence
        if failure.end.status is TransferStatus.completed:
            raise ApplicationError(
                "a completed occurrence did not fail", type="invalid-request", non_retryable=True
            )
        data: dict[str, object] = {
            "transfer_id": None
            if failure.end.transfer_id is None
            else str(failure.end.transfer_id),
            "status": failure.end.status.value,
            "amount_minor": occurrence.amount_minor,
            "currency": occurrence.currency,
            "source_account_id": str(occurrence.source_account_id),
            "target_account_id": str(occurrence.target_account_id),
            "failure_reason": failure.end.failure_reason,
            "standing_order_id": str(occurrence.standing_order_id),
            "scheduled_at": failure.scheduled_at.isoformat(),
        }
        if occurrence.source_customer_id is not None:
            data["source_customer_id"] = occurrence.source_customer_id
        event = EventCreate(
            id=failure_event_id(occurrence.standing_order_id, failure.scheduled_at),
            type=EventType.standing_order_occurrence_failed,
            timestamp=failure.occurred_at,
            data=data,
        )
        await send_to_service(self._notifications, EVENTS_PATH, event)
        log.info("standing_order.occurrence_failure_published")
