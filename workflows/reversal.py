"""ReversalWorkflow: money back from a completed transfer's payee, validate → hold → post → notify.

A reversal is a transfer of its own: its id names its ledger movements (`step_id(reversal_id,
"hold")` …) and its step reports, so it runs on the transfer saga's activities unchanged. No
fraud scoring and no review (docs/decisions/0032-reversals.md). A refused hold ends it
`rejected` with nothing moved; a hold refused after earlier attempts is voided anyway, as
the transfer saga does. Posting is the pivot: from there it completes, or ends `expired` if
the ledger released the hold first. A Temporal cancellation is ignored: a reversal is short
and has no cancel of its own, and stopping between hold and post would strand the hold.
"""

import asyncio
from uuid import UUID

from temporalio import workflow
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from contracts.accounts import TransferValidation
    from contracts.notifications import EventType
    from contracts.reversals import (
        ORIGINAL_TRANSFER_ID_ATTRIBUTE,
        REVERSAL_WORKFLOW_NAME,
        ReversalWorkflowInput,
        ReversalWorkflowResult,
    )
    from contracts.transfers import (
        QUERY_STATUS,
        SEARCH_ATTRIBUTES,
        StepRecord,
        TransferStatus,
        TransferWorkflowInput,
        step_id,
    )
    from workflows.activities import TransferActivities
    from workflows.models import EventPublication, HoldAction, Step, StepOutcome, StepsReport
    from workflows.transfer import (
        HOLD_RETRY,
        NOTIFY_RETRY,
        RECORD_RETRY,
        STATUS_ATTRIBUTE,
        STEP_TIMEOUT,
        UNTIL_DONE_RETRY,
        _earlier_attempts_may_land,
        _failure_reason,
        _look_up,
        _run_best_effort,
        _started_too_late,
        _truncate,
    )

ORIGINAL_TRANSFER_KEY = SearchAttributeKey.for_keyword(ORIGINAL_TRANSFER_ID_ATTRIBUTE)
assert SEARCH_ATTRIBUTES[ORIGINAL_TRANSFER_KEY.name] == "Keyword"


@workflow.defn(name=REVERSAL_WORKFLOW_NAME)
class ReversalWorkflow:
    @workflow.init
    def __init__(self, reversal: ReversalWorkflowInput) -> None:
        self._reversal = reversal
        # The reversal as the transfer activities take it (its own id, payee to payer).
        self._transfer: TransferWorkflowInput = reversal.as_transfer()
        self._status = TransferStatus.pending
        self._version = 0
        self._validation: TransferValidation | None = None
        self._hold_id: UUID | None = None
        self._posting_id: UUID | None = None
        self._failure_reason: str | None = None
        self._unsent_records: list[StepRecord] = []

    @workflow.run
    async def run(self, reversal: ReversalWorkflowInput) -> ReversalWorkflowResult:
        saga = asyncio.ensure_future(self._saga())
        # One cancellation per pass; the saga always runs to its end (module docstring).
        while not saga.done():
            try:
                await asyncio.shield(saga)
            except asyncio.CancelledError:
                workflow.logger.warning("reversal.cancellation_ignored")
        return saga.result()

    @workflow.query(name=QUERY_STATUS)
    def status(self) -> TransferStatus:
        return self._status

    async def _saga(self) -> ReversalWorkflowResult:
        transfer = self._transfer
        too_late = _started_too_late(transfer)
        if too_late is not None:
            return await self._end(
                TransferStatus.rejected, Step.start, too_late, outcome=StepOutcome.timed_out
            )
        try:
            self._validation = await _look_up(TransferActivities.validate_transfer, transfer)
        except FailureError as error:
            return await self._end(TransferStatus.rejected, Step.validate, _failure_reason(error))
        self._record(Step.validate, StepOutcome.succeeded)
        try:
            hold = await workflow.execute_activity_method(
                TransferActivities.place_hold,
                transfer,
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=HOLD_RETRY,
            )
        except FailureError as error:
            # A slow earlier attempt may still place the hold: void it, seen or not.
            unseen_hold_id = step_id(transfer.transfer_id, "hold")
            void = _earlier_attempts_may_land(error)
            return await self._end(
                TransferStatus.rejected,
                Step.hold,
                _failure_reason(error),
                void_hold_id=unseen_hold_id if void else None,
            )
        self._hold_id = hold.id
        self._record(Step.hold, StepOutcome.succeeded)
        # The hold is reported before the money moves.
        await self._send_records()
        return await self._post(hold.id)

    async def _post(self, hold_id: UUID) -> ReversalWorkflowResult:
        """The pivot: the reversal completes, or expires if the ledger released the hold."""
        try:
            posting = await workflow.execute_activity_method(
                TransferActivities.post_hold,
                HoldAction(transfer_id=self._transfer.transfer_id, hold_id=hold_id),
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=UNTIL_DONE_RETRY,
            )
        except FailureError as error:
            # The one final answer (the hold's deadline passed): nothing moved, nothing to void.
            return await self._end(TransferStatus.expired, Step.post, _failure_reason(error))
        self._posting_id = posting.id
        self._set_status(TransferStatus.completed)
        self._record(Step.post, StepOutcome.succeeded)
        await self._notify(EventType.transfer_reversed)
        await self._send_records()
        return self._result()

    async def _end(
        self,
        status: TransferStatus,
        step: Step,
        failure_reason: str,
        *,
        void_hold_id: UUID | None = None,
        outcome: StepOutcome = StepOutcome.failed,
    ) -> ReversalWorkflowResult:
        """End without posting: report the deciding step, void a hold that may exist, announce."""
        assert status.is_terminal, "a reversal ends in a terminal status"
        assert status is not TransferStatus.completed, "only posting completes a reversal"
        self._set_status(status)
        self._failure_reason = failure_reason
        self._record(step, outcome)
        if void_hold_id is not None:
            await self._send_records()
            await workflow.execute_activity_method(
                TransferActivities.void_hold,
                HoldAction(
                    transfer_id=self._transfer.transfer_id,
                    hold_id=void_hold_id,
                    transfer=self._transfer,
                ),
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=UNTIL_DONE_RETRY,
            )
            self._record(Step.void, StepOutcome.succeeded, compensates_step=Step.hold)
        await self._notify(EventType.transfer_reversal_failed)
        await self._send_records()
        return self._result()

    def _result(self) -> ReversalWorkflowResult:
        return ReversalWorkflowResult(
            reversal_id=self._reversal.reversal_id,
            original_transfer_id=self._reversal.original_transfer_id,
            status=self._status,
            failure_reason=self._failure_reason,
        )

    async def _notify(self, event_type: EventType) -> None:
        """Publish the reversal's end to both customers; trouble is logged, never undone."""
        validation = self._validation
        publication = EventPublication(
            transfer=self._transfer,
            type=event_type,
            status=self._status,
            occurred_at=workflow.now(),
            failure_reason=self._failure_reason,
            source_customer_id=self._transfer.source_customer_id
            or (None if validation is None else validation.source_customer_id),
            target_customer_id=None if validation is None else validation.target_customer_id,
            original_transfer_id=self._reversal.original_transfer_id,
        )
        published = await _run_best_effort(
            TransferActivities.publish_event,
            publication,
            retry_policy=NOTIFY_RETRY,
            failure_event="reversal.event_not_published",
            failure_context={"event_type": event_type.value},
        )
        outcome = StepOutcome.succeeded if published else StepOutcome.failed
        self._record(Step.notify, outcome, detail=event_type.value)

    def _record(
        self,
        step: Step,
        outcome: StepOutcome,
        *,
        detail: str | None = None,
        compensates_step: Step | None = None,
    ) -> None:
        """Keep a step report, with the whole projection, for the next `_send_records`."""
        self._version += 1
        self._unsent_records.append(
            StepRecord(
                step=step.value,
                outcome=outcome.value,
                status=self._status,
                version=self._version,
                occurred_at=workflow.now(),
                detail=detail,
                hold_id=self._hold_id,
                posting_id=self._posting_id,
                failure_reason=self._failure_reason,
                compensates_step=None if compensates_step is None else compensates_step.value,
            )
        )

    async def _send_records(self) -> None:
        """Send the kept reports, oldest first, in one request (as the transfer saga does)."""
        if not self._unsent_records:
            return
        records, self._unsent_records = self._unsent_records, []
        steps = ", ".join(f"{record.step}: {record.outcome}" for record in records)
        await _run_best_effort(
            TransferActivities.record_steps,
            StepsReport(transfer_id=self._transfer.transfer_id, records=records),
            retry_policy=RECORD_RETRY,
            failure_event="reversal.steps_not_recorded",
            failure_context={"steps": steps},
            summary=_truncate(steps),
        )

    def _set_status(self, status: TransferStatus) -> None:
        if status is self._status:
            return
        self._status = status
        workflow.upsert_search_attributes([STATUS_ATTRIBUTE.value_set(status.value)])
