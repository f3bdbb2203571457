"""StandingOrderOccurrenceWorkflow: one occurrence of a standing order, started by its
Temporal Schedule.

create the occurrence's transfer (transactions, once per scheduled time: an ordinary
transfer with its own saga) → wait for that saga's end → if it did not complete, record
the failure and publish `standing_order.occurrence_failed`. A transfer refused for good
(transactions answers the occurrence failed, without a transfer, recorded already) is
published and ends the run. The order carries on either way: a failure never pauses the
schedule.
"""

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from contracts.standing_orders import (
        OCCURRENCE_WORKFLOW_NAME,
        SCHEDULED_START_TIME_ATTRIBUTE,
        OccurrenceWorkflowInput,
        OccurrenceWorkflowResult,
    )
    from contracts.transfers import TransactionsProblem, TransferStatus
    from workflows.standing_order_activities import (
        OccurrenceCall,
        OccurrenceFailure,
        StandingOrderActivities,
        TransferEnd,
    )

SCHEDULED_START_TIME = SearchAttributeKey.for_datetime(SCHEDULED_START_TIME_ATTRIBUTE)
# One HTTP call per attempt, whose client times out well before this.
CALL_TIMEOUT = timedelta(seconds=30)
# Transactions, accounts or Temporal away: retried for about half an hour, then the run
# fails and shows in the Temporal UI (the next occurrence is unaffected).
CALL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=40,
)
# The order is gone: the occurrence ends without a transfer.
ORDER_GONE = (
    TransactionsProblem.standing_order_cancelled.value,
    TransactionsProblem.standing_order_not_found.value,
)
# Marks the histories that know a refused occurrence (no transfer); older ones never saw it.
REFUSED_OCCURRENCE_PATCH = "standing-order-occurrence-refused"
# The transfer's own deadlines (its review, at most 30 days) end it well before this.
TRANSFER_WAIT_TIMEOUT = timedelta(days=31)
# The wait heartbeats every 10 s: a worker that died is noticed within this.
TRANSFER_WAIT_HEARTBEAT_TIMEOUT = timedelta(seconds=60)
TRANSFER_WAIT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=60)
)


def _scheduled_time(occurrence: OccurrenceWorkflowInput) -> datetime:
    """The time the schedule was due: Temporal's search attribute, or the input's."""
    scheduled_at = workflow.info().typed_search_attributes.get(SCHEDULED_START_TIME)
    scheduled_at = scheduled_at or occurrence.scheduled_at
    if scheduled_at is None:
        raise ApplicationError(
            f"no {SCHEDULED_START_TIME_ATTRIBUTE} and no scheduled_at: not a scheduled run",
            type="not-scheduled",
            non_retryable=True,
        )
    return scheduled_at


@workflow.defn(name=OCCURRENCE_WORKFLOW_NAME)
class StandingOrderOccurrenceWorkflow:
    @workflow.run
    async def run(self, occurrence: OccurrenceWorkflowInput) -> OccurrenceWorkflowResult:
        scheduled_at = _scheduled_time(occurrence)
        order_id = occurrence.standing_order_id
        try:
            created = await workflow.execute_activity_method(
                StandingOrderActivities.create_occurrence,
                OccurrenceCall(occurrence=occurrence, scheduled_at=scheduled_at),
                start_to_close_timeout=CALL_TIMEOUT,
                retry_policy=CALL_RETRY,
            )
        except ActivityError as error:
            cause = error.cause
            if isinstance(cause, ApplicationError) and cause.type in ORDER_GONE:
                workflow.logger.info("standing order gone: no transfer")
                return OccurrenceWorkflowResult(
                    standing_order_id=order_id,
                    scheduled_at=scheduled_at,
                    transfer_id=None,
                    status=None,
                )
            raise
        if created.transfer_id is None and workflow.patched(REFUSED_OCCURRENCE_PATCH):
            return await self._refused(occurrence, scheduled_at, created.failure_reason)
        assert created.transfer_id is not None, "before the patch, every occurrence had one"
        end = await workflow.execute_activity_method(
            StandingOrderActivities.await_transfer_end,
            created.transfer_id,
            start_to_close_timeout=TRANSFER_WAIT_TIMEOUT,
            heartbeat_timeout=TRANSFER_WAIT_HEARTBEAT_TIMEOUT,
            retry_policy=TRANSFER_WAIT_RETRY,
        )
        if end.status is not TransferStatus.completed:
            failure = OccurrenceFailure(
                occurrence=occurrence,
                scheduled_at=scheduled_at,
                end=end,
                occurred_at=workflow.now(),
            )
            await workflow.execute_activity_method(
                StandingOrderActivities.record_occurrence_failed,
                failure,
                start_to_close_timeout=CALL_TIMEOUT,
                retry_policy=CALL_RETRY,
            )
            await workflow.execute_activity_method(
                StandingOrderActivities.publish_occurrence_failed,
                failure,
                start_to_close_timeout=CALL_TIMEOUT,
                retry_policy=CALL_RETRY,
            )
        return OccurrenceWorkflowResult(
            standing_order_id=order_id,
            scheduled_at=scheduled_at,
            transfer_id=created.transfer_id,
            status=end.status,
        )

    async def _refused(
        self, occurrence: OccurrenceWorkflowInput, scheduled_at: datetime, reason: str | None
    ) -> OccurrenceWorkflowResult:
        """Announce an occurrence whose transfer transactions refused (and recorded) once:
        the event id derives from the order and the time, so a retry sends the same one."""
        end = TransferEnd(transfer_id=None, status=TransferStatus.rejected, failure_reason=reason)
        failure = OccurrenceFailure(
            occurrence=occurrence, scheduled_at=scheduled_at, end=end, occurred_at=workflow.now()
        )
        await workflow.execute_activity_method(
            StandingOrderActivities.publish_occurrence_failed,
            failure,
            start_to_close_timeout=CALL_TIMEOUT,
            retry_policy=CALL_RETRY,
        )
        return OccurrenceWorkflowResult(
            standing_order_id=occurrence.standing_order_id,
            scheduled_at=scheduled_at,
            transfer_id=None,
            status=TransferStatus.rejected,
        )
