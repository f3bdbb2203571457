"""TransferWorkflow: the saga that moves money, validate → hold → score → (review) → post → notify.

Steps are reported to the transactions service (audit trail and status projection) in
batches, and every status change is upserted as the `TransferStatus` search attribute.
Failing after the hold voids it (the compensation); posting the hold is the pivot, after
which nothing is undone and cancellation is refused (`request_cancel` update) or ignored
(`cancel` signal). The ledger's mutations (`place_hold`, `post_hold`, `void_hold`) run as
activities. Every other call is a local activity: idempotent on a deterministic id, sent
again if a worker crash reruns its workflow task, and never moving money. Why, with the
figures: docs/decisions/0006 (local activities) and 0007 (batched reports).

A signal or update that arrives while a workflow task runs local activities is seen when
that task ends. A cancel sent during the score is thus honoured if posting has not begun by
then; the `request_cancel` update answers the caller which of the two happened.
"""

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TypeVar
from uuid import UUID

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError, FailureError
from temporalio.exceptions import TimeoutError as ActivityTimeoutError

with workflow.unsafe.imports_passed_through():
    from contracts.accounts import LEDGER_REFUSALS, TransferValidation
    from contracts.fraud import FraudDecision
    from contracts.notifications import EventType, NotificationsProblem
    from contracts.problem import CommonProblem
    from contracts.transfers import (
        QUERY_STATUS,
        SEARCH_ATTRIBUTES,
        SIGNAL_CANCEL,
        SIGNAL_REVIEW_DECISION,
        UPDATE_CANCEL,
        WORKFLOW_NAME,
        CancelRequest,
        CancelResult,
        FraudAssessment,
        ReviewDecision,
        StepRecord,
        TransactionsProblem,
        TransferStatus,
        TransferWorkflowInput,
        TransferWorkflowResult,
        step_id,
    )
    from workflows.activities import HOLD_ATTEMPTS, TRANSFER_INVALID, TransferActivities
    from workflows.models import (
        TERMINAL_EVENTS,
        EventPublication,
        HoldAction,
        OutcomeNotice,
        Step,
        StepOutcome,
        StepReport,
        StepsReport,
    )

STATUS_ATTRIBUTE = SearchAttributeKey.for_keyword("TransferStatus")
FRAUD_DECISION_ATTRIBUTE = SearchAttributeKey.for_keyword("FraudDecision")
assert SEARCH_ATTRIBUTES[STATUS_ATTRIBUTE.name] == "Keyword"
assert SEARCH_ATTRIBUTES[FRAUD_DECISION_ATTRIBUTE.name] == "Keyword"

# One HTTP call per attempt, whose client times out well before this (config.py).
STEP_TIMEOUT = timedelta(seconds=30)
# A local activity's retry waits in the worker up to this and on a durable timer beyond it.
# Every retry policy below starts at one second: a blip is retried at once, in the worker,
# and every later retry is a timer that survives a worker crash and shows in the history,
# each failed attempt with its error (and that the time-skipping tests can skip).
LOCAL_RETRY_THRESHOLD = timedelta(seconds=1)

# What retrying a validation or a hold cannot change: a malformed request, a bare `valid:
# false` and every refusal of the ledger (LEDGER_REFUSALS, which accounts' tests keep
# complete). The activities already raise them non-retryable; naming them here keeps them
# final even from an activity that forgot to.
ACCOUNT_REFUSALS = (CommonProblem.invalid_request, TRANSFER_INVALID, *LEDGER_REFUSALS)


def _backoff(
    maximum_interval: timedelta, *, maximum_attempts: int, non_retryable: Sequence[str] = ()
) -> RetryPolicy:
    """Retries from one second, doubling up to `maximum_interval` (0 attempts: no end)."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=maximum_interval,
        maximum_attempts=maximum_attempts,
        non_retryable_error_types=list(non_retryable),
    )


# Before the hold there is nothing to undo, and scoring happens while a hold can be voided:
# a service that stays down for minutes ends the transfer rather than stalling it.
LOOKUP_RETRY = _backoff(timedelta(seconds=60), maximum_attempts=10, non_retryable=ACCOUNT_REFUSALS)
# The hold must end in a definite answer: giving up on a request that may have reached the
# ledger would leave a hold nobody voids. Retried until accounts says yes or a final no.
HOLD_RETRY = _backoff(timedelta(minutes=2), maximum_attempts=0, non_retryable=ACCOUNT_REFUSALS)
# The pivot and the compensation retry until they succeed (no maximum attempts): each
# stays visible in the Temporal UI with its attempt count and last failure meanwhile.
UNTIL_DONE_RETRY = _backoff(timedelta(minutes=2), maximum_attempts=0)
# The audit trail must catch up with every step, however long transactions is away.
RECORD_RETRY = _backoff(
    timedelta(minutes=2),
    maximum_attempts=0,
    non_retryable=(CommonProblem.invalid_request, TransactionsProblem.transfer_not_found),
)
# Notification trouble never undoes a transfer: a few tries, then the saga goes on.
NOTIFY_RETRY = _backoff(
    timedelta(seconds=30),
    maximum_attempts=5,
    non_retryable=(CommonProblem.invalid_request, NotificationsProblem.event_id_reused),
)
# Nor does the fraud service's learning: a few tries, then a loud log line.
OUTCOME_RETRY = _backoff(
    timedelta(seconds=30), maximum_attempts=5, non_retryable=(CommonProblem.invalid_request,)
)

TEXT_LENGTH_MAX = 500  # StepRecord.detail and .failure_reason

# Step reports travel in batches (`record_steps`). A transfer started before batching has
# no marker of this patch in its history, so `workflow.patched` answers False and it keeps
# sending one `record_step` per step. Remove that path once no such transfer is open, as
# docs/decisions/0007-batched-step-reports.md describes.
BATCHED_STEP_REPORTS = "batched-step-reports"
# A cancel that arrives before the first step (the update that wakes a future-dated
# transfer's delayed workflow, docs/decisions/0034) ends the saga before `validate`. A
# transfer started before this change has no marker in its history, and `workflow.patched`
# answers False on replay: it validated first, as it did then.
CANCEL_BEFORE_VALIDATE = "cancel-before-validate"


def _truncate(text: str) -> str:
    return text if len(text) <= TEXT_LENGTH_MAX else text[: TEXT_LENGTH_MAX - 1] + "…"


def _failure_reason(error: FailureError) -> str:
    """`<problem slug>: <detail>` of a failed activity, e.g. `insufficient-funds: ...`.

    An activity's failure arrives as an ActivityError around its cause; a local activity's,
    with this SDK, as the cause itself (ApplicationError, TimeoutError). Both read the same.
    """
    cause = error.cause if isinstance(error, ActivityError) else error
    if isinstance(cause, ApplicationError):
        return _truncate(f"{cause.type or 'error'}: {cause.message}")
    if isinstance(cause, ActivityTimeoutError):
        return _truncate(f"timeout: {cause.message}")
    return _truncate(f"{type(cause).__name__}: {cause}")


def _started_too_late(transfer: TransferWorkflowInput) -> str | None:
    """Why the saga must not move money, if its workflow started past the start deadline
    (the reconciler started it long after the customer was told it failed)."""
    started_at = workflow.info().workflow_start_time
    if transfer.start_deadline is None or started_at <= transfer.start_deadline:
        return None
    return _truncate(
        f"not-started: the saga started at {started_at.isoformat()}, past its deadline"
    )


def _earlier_attempts_may_land(error: FailureError) -> bool:
    """Whether a refused hold had earlier attempts, which may still reach the ledger."""
    cause = error.cause if isinstance(error, ActivityError) else error
    if not isinstance(cause, ApplicationError):
        return False
    return any(
        isinstance(detail, dict) and isinstance(detail.get(HOLD_ATTEMPTS), int)
        for detail in cause.details
    )


ReportT = TypeVar("ReportT")
AnswerT = TypeVar("AnswerT")


async def _look_up(
    activity: Callable[[TransferActivities, TransferWorkflowInput], Awaitable[AnswerT]],
    transfer: TransferWorkflowInput,
) -> AnswerT:
    """Ask a service about the transfer before money moves (validation, score), retried
    as LOOKUP_RETRY allows; its final failure rejects the transfer."""
    return await workflow.execute_local_activity_method(
        activity,
        transfer,
        start_to_close_timeout=STEP_TIMEOUT,
        retry_policy=LOOKUP_RETRY,
        local_retry_threshold=LOCAL_RETRY_THRESHOLD,
    )


async def _run_best_effort(
    activity: Callable[[TransferActivities, ReportT], Awaitable[None]],
    report: ReportT,
    *,
    retry_policy: RetryPolicy,
    failure_event: str,
    failure_context: Mapping[str, str],
    summary: str | None = None,
) -> bool:
    """Run a local activity the money path goes on without; False, logged loudly as
    `failure_event` with `failure_context` and the reason, once it fails for good."""
    try:
        await workflow.execute_local_activity_method(
            activity,
            report,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=retry_policy,
            local_retry_threshold=LOCAL_RETRY_THRESHOLD,
            summary=summary,
        )
    except FailureError as error:
        workflow.logger.error(
            failure_event, extra={**failure_context, "reason": _failure_reason(error)}
        )
        return False
    return True


Compensation = Callable[[], Awaitable[None]]


@workflow.defn(name=WORKFLOW_NAME)
class TransferWorkflow:
    @workflow.init
    def __init__(self, transfer: TransferWorkflowInput) -> None:
        self._transfer = transfer
        self._status = TransferStatus.pending
        self._version = 0
        self._fraud: FraudAssessment | None = None
        # Who owns each account, as accounts answered the validation (routes the events).
        self._validation: TransferValidation | None = None
        self._hold_id: UUID | None = None
        self._posting_id: UUID | None = None
        self._failure_reason: str | None = None
        self._review: ReviewDecision | None = None
        self._cancel: CancelRequest | None = None
        self._ended_at: datetime | None = None
        self._workflow_cancelled = False
        self._pivot_started = False
        self._compensations: list[Compensation] = []
        # Reports not sent yet, and whether to batch them (see BATCHED_STEP_REPORTS).
        self._unsent_records: list[StepRecord] = []
        self._batch_reports = False

    @workflow.run
    async def run(self, transfer: TransferWorkflowInput) -> TransferWorkflowResult:
        # A Temporal cancellation must neither abandon an activity whose effect is unknown
        # (a hold being placed) nor interrupt a compensation. So the saga runs as a task of
        # its own, shielded, and a cancellation becomes a cancel request that it honours
        # between steps, compensations included, exactly like the `cancel` signal.
        saga = asyncio.ensure_future(self._saga(transfer))
        # Each pass ends with the saga done or absorbs one cancellation (Temporal delivers
        # one per run; the server deduplicates repeated requests).
        while not saga.done():
            try:
                await asyncio.shield(saga)
            except asyncio.CancelledError:
                self._on_workflow_cancelled()
        result = saga.result()
        if self._workflow_cancelled and result.status is TransferStatus.cancelled:
            # The compensations have run; close as Canceled so Temporal tells the truth too.
            raise asyncio.CancelledError(result.failure_reason)
        return result

    @workflow.signal(name=SIGNAL_REVIEW_DECISION)
    def review_decision(self, decision: ReviewDecision) -> None:
        """A reviewer's verdict; only the first one while the transfer is in review counts."""
        if self._status is not TransferStatus.in_review or self._review is not None:
            workflow.logger.warning(
                "transfer.review_decision_ignored",
                extra={"status": self._status.value, "decision": decision.decision},
            )
            return
        self._review = decision

    @workflow.signal(name=SIGNAL_CANCEL)
    def cancel(self, request: CancelRequest) -> None:
        """A customer's cancel: honoured before the post step begins, ignored after."""
        if self._pivot_started:
            workflow.logger.info("transfer.cancel_ignored_after_pivot")
            return
        if self._cancel is None:
            self._cancel = request

    @workflow.update(name=UPDATE_CANCEL)
    def request_cancel(self, request: CancelRequest) -> CancelResult:
        """A customer's cancel, answered: accepted (honoured at the next step boundary, before
        posting) unless the transfer has already ended otherwise."""
        if self._status.is_terminal and self._status is not TransferStatus.cancelled:
            return CancelResult(accepted=False, status=self._status)
        if self._cancel is None:
            self._cancel = request
        return CancelResult(accepted=True, status=self._status)

    @request_cancel.validator
    def validate_request_cancel(self, request: CancelRequest) -> None:
        """Refuse once posting has begun: the caller learns it at once, nothing is recorded.

        The saga sets `_pivot_started` in the same workflow-task step as its last check of
        `_cancel`, so an update accepted here is always honoured.
        """
        if self._pivot_started:
            raise ApplicationError(
                "posting has begun: the transfer can no longer be cancelled",
                type=TransactionsProblem.transfer_not_cancellable,
                non_retryable=True,
            )

    @workflow.query(name=QUERY_STATUS)
    def status(self) -> TransferStatus:
        return self._status

    def _on_workflow_cancelled(self) -> None:
        if self._pivot_started:
            workflow.logger.warning("transfer.cancellation_ignored_after_pivot")
            return
        self._workflow_cancelled = True
        if self._cancel is None:
            self._cancel = CancelRequest(reason="workflow cancelled")

    async def _saga(self, transfer: TransferWorkflowInput) -> TransferWorkflowResult:
        self._batch_reports = workflow.patched(BATCHED_STEP_REPORTS)
        # Updates and signals in the first workflow task are handled before this runs, so
        # a cancel that woke a delayed workflow is seen here; a customer's cancel accepted
        # before any step wins over the start deadline, as nothing has moved.
        if self._cancel is not None and workflow.patched(CANCEL_BEFORE_VALIDATE):
            return await self._end_cancelled()
        too_late = _started_too_late(transfer)
        if too_late is not None:
            return await self._end(
                TransferStatus.rejected, Step.start, StepOutcome.timed_out, too_late
            )
        try:
            self._validation = await _look_up(TransferActivities.validate_transfer, transfer)
        except FailureError as error:
            return await self._end(
                TransferStatus.rejected, Step.validate, StepOutcome.failed, _failure_reason(error)
            )
        await self._record(Step.validate, StepOutcome.succeeded)
        if self._cancel is not None:
            return await self._end_cancelled()

        refused = await self._place_hold(transfer)
        if refused is not None:
            return refused
        if self._cancel is not None:
            return await self._end_cancelled()

        try:
            score = await _look_up(TransferActivities.score_transfer, transfer)
        except FailureError as error:
            return await self._end(
                TransferStatus.rejected, Step.score, StepOutcome.failed, _failure_reason(error)
            )
        self._fraud = FraudAssessment(
            score=score.score, decision=score.decision, reasons=score.reasons
        )
        workflow.upsert_search_attributes(
            [FRAUD_DECISION_ATTRIBUTE.value_set(score.decision.value)]
        )
        if score.decision is FraudDecision.decline:
            codes = ", ".join(reason.code for reason in score.reasons)
            reason = f"fraud-declined: score {score.score}" + (f" ({codes})" if codes else "")
            return await self._end(
                TransferStatus.declined, Step.score, StepOutcome.decline, _truncate(reason)
            )
        if score.decision is FraudDecision.review:
            ended = await self._review_gate()
            if ended is not None:
                return ended
        else:
            await self._record(Step.score, StepOutcome.approve)
        # Everything before the pivot is reported before the money moves; and before the
        # last look at `_cancel`, which must share a workflow-task step with the pivot.
        await self._send_records()
        if self._cancel is not None:
            return await self._end_cancelled()
        return await self._post(transfer)

    async def _place_hold(self, transfer: TransferWorkflowInput) -> TransferWorkflowResult | None:
        """Place the hold and push its void; None when placed, else how the transfer ended."""
        try:
            hold = await workflow.execute_activity_method(
                TransferActivities.place_hold,
                transfer,
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=HOLD_RETRY,
            )
        except FailureError as error:
            if _earlier_attempts_may_land(error):
                # A slow earlier attempt may still place the hold after this refusal; the
                # void reaches the ledger first or finds the hold: either way none survives.
                unseen_hold_id = step_id(transfer.transfer_id, "hold")
                self._compensations.append(lambda: self._void_hold(unseen_hold_id))
            return await self._end(
                TransferStatus.rejected, Step.hold, StepOutcome.failed, _failure_reason(error)
            )
        self._hold_id = hold.id
        self._compensations.append(lambda: self._void_hold(hold.id))
        await self._record(Step.hold, StepOutcome.succeeded)
        return None

    async def _review_gate(self) -> TransferWorkflowResult | None:
        """Wait for a reviewer or a cancel; None when approved, else how the transfer ended."""
        self._set_status(TransferStatus.in_review)
        await self._record(Step.score, StepOutcome.review)
        # Reviewers and callbacks find the transfer by its projection's `in_review`.
        await self._send_records()
        # Announced alongside the wait, so a slow notifications service delays nothing.
        announcement = asyncio.ensure_future(
            self._publish(self._publication(EventType.transfer_in_review))
        )
        try:
            await workflow.wait_condition(
                lambda: self._review is not None or self._cancel is not None,
                timeout=timedelta(seconds=self._transfer.review_timeout_seconds),
                timeout_summary="review timeout",
            )
        except TimeoutError:
            await announcement
            return await self._end(
                TransferStatus.expired, Step.review, StepOutcome.timed_out, "review-timed-out"
            )
        await announcement
        if self._cancel is not None:
            return await self._end_cancelled()
        decision = self._review
        assert decision is not None, "the wait ends on a decision, a cancel or the timeout"
        detail = _truncate(
            f"reviewer {decision.reviewer_id}" + (f": {decision.note}" if decision.note else "")
        )
        if decision.decision == "reject":
            return await self._end(
                TransferStatus.declined,
                Step.review,
                StepOutcome.rejected,
                "review-rejected",
                detail=detail,
            )
        self._set_status(TransferStatus.pending)
        await self._record(Step.review, StepOutcome.approved, detail=detail)
        return None

    async def _post(self, transfer: TransferWorkflowInput) -> TransferWorkflowResult:
        """The pivot: from here the transfer completes, whatever happens."""
        assert self._hold_id is not None, "posting needs a hold"
        self._pivot_started = True
        try:
            posting = await workflow.execute_activity_method(
                TransferActivities.post_hold,
                HoldAction(transfer_id=transfer.transfer_id, hold_id=self._hold_id),
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=UNTIL_DONE_RETRY,
            )
        except FailureError as error:
            # The one final answer: the ledger released the hold at its deadline (a reset
            # workflow or an outage outlasted it). Nothing moved and nothing is left to void.
            self._compensations.clear()
            return await self._end(
                TransferStatus.expired, Step.post, StepOutcome.failed, _failure_reason(error)
            )
        self._compensations.clear()
        self._posting_id = posting.id
        self._set_status(TransferStatus.completed)
        await self._record(Step.post, StepOutcome.succeeded)
        await self._notify()
        await self._send_records()
        return TransferWorkflowResult(
            transfer_id=transfer.transfer_id, status=TransferStatus.completed
        )

    async def _end(
        self,
        status: TransferStatus,
        step: Step,
        outcome: StepOutcome,
        failure_reason: str,
        *,
        detail: str | None = None,
    ) -> TransferWorkflowResult:
        """End without posting: report the deciding step, compensate, announce."""
        assert status.is_terminal, "a saga ends in a terminal status"
        assert status is not TransferStatus.completed, "only posting completes a transfer"
        self._set_status(status)
        self._failure_reason = failure_reason
        await self._record(step, outcome, detail=detail)
        if self._compensations:
            # A compensation may retry for long: the transfer's end is known meanwhile.
            await self._send_records()
        await self._compensate()
        await self._notify()
        await self._send_records()
        return TransferWorkflowResult(
            transfer_id=self._transfer.transfer_id, status=status, failure_reason=failure_reason
        )

    async def _end_cancelled(self) -> TransferWorkflowResult:
        request = self._cancel
        assert request is not None, "ending as cancelled needs a cancel request"
        reason = "cancelled" + (f": {request.reason}" if request.reason else "")
        return await self._end(
            TransferStatus.cancelled, Step.cancel, StepOutcome.requested, _truncate(reason)
        )

    async def _compensate(self) -> None:
        """Run the compensations pushed so far, newest first."""
        while self._compensations:
            compensation = self._compensations.pop()
            await compensation()

    async def _void_hold(self, hold_id: UUID) -> None:
        await workflow.execute_activity_method(
            TransferActivities.void_hold,
            HoldAction(
                transfer_id=self._transfer.transfer_id, hold_id=hold_id, transfer=self._transfer
            ),
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=UNTIL_DONE_RETRY,
        )
        await self._record(Step.void, StepOutcome.succeeded, compensates_step=Step.hold)

    async def _notify(self) -> None:
        """Publish the terminal event and, for a scored transfer, report the outcome to the
        fraud service, side by side: trouble with either is logged, never undone."""
        outcome_report = (
            None if self._fraud is None else asyncio.ensure_future(self._report_outcome())
        )
        publication = self._publication(TERMINAL_EVENTS[self._status])
        published = await self._publish(publication)
        outcome = StepOutcome.succeeded if published else StepOutcome.failed
        await self._record(Step.notify, outcome, detail=publication.type.value)
        if outcome_report is not None:
            await outcome_report

    async def _report_outcome(self) -> None:
        assert self._ended_at is not None, "only an ended transfer has an outcome"
        notice = OutcomeNotice(
            transfer=self._transfer,
            final_status=self._status,
            review_decision=None if self._review is None else self._review.decision,
            occurred_at=self._ended_at,
        )
        await _run_best_effort(
            TransferActivities.report_outcome,
            notice,
            retry_policy=OUTCOME_RETRY,
            failure_event="transfer.outcome_not_reported",
            failure_context={"final_status": self._status.value},
        )

    def _publication(self, event_type: EventType) -> EventPublication:
        validation = self._validation
        # The token's subject, as transactions passed it on, is the authority on who asked;
        # the source account's owner stands in for transfers started without one.
        source_customer_id = self._transfer.source_customer_id or (
            None if validation is None else validation.source_customer_id
        )
        return EventPublication(
            transfer=self._transfer,
            type=event_type,
            status=self._status,
            occurred_at=workflow.now(),
            failure_reason=self._failure_reason,
            source_customer_id=source_customer_id,
            target_customer_id=None if validation is None else validation.target_customer_id,
        )

    async def _publish(self, publication: EventPublication) -> bool:
        return await _run_best_effort(
            TransferActivities.publish_event,
            publication,
            retry_policy=NOTIFY_RETRY,
            failure_event="transfer.event_not_published",
            failure_context={"event_type": publication.type.value},
        )

    async def _record(
        self,
        step: Step,
        outcome: StepOutcome,
        *,
        detail: str | None = None,
        compensates_step: Step | None = None,
    ) -> None:
        """Report a step with the whole projection, so any later report repairs a lost one.

        Batched (see BATCHED_STEP_REPORTS), the report waits in `_unsent_records` for the
        next `_send_records`: before the pivot, before a wait or a compensation, at the end.
        The activity adds the workflow and run ids, which the audit trail stores.
        """
        self._version += 1
        record = StepRecord(
            step=step.value,
            outcome=outcome.value,
            status=self._status,
            version=self._version,
            occurred_at=workflow.now(),
            detail=detail,
            fraud=self._fraud,
            hold_id=self._hold_id,
            posting_id=self._posting_id,
            failure_reason=self._failure_reason,
            compensates_step=None if compensates_step is None else compensates_step.value,
        )
        if self._batch_reports:
            self._unsent_records.append(record)
            return
        # Only a final refusal fails it (retryable trouble is retried without end). The
        # money path must not stall on the audit trail; the error is logged loudly and the
        # next report, carrying the whole projection, brings it up to date.
        await _run_best_effort(
            TransferActivities.record_step,
            StepReport(transfer_id=self._transfer.transfer_id, record=record),
            retry_policy=RECORD_RETRY,
            failure_event="transfer.step_not_recorded",
            failure_context={"step": step.value},
            summary=f"{step.value}: {outcome.value}",
        )

    async def _send_records(self) -> None:
        """Send the reports `_record` kept, oldest first, in one request."""
        if not self._unsent_records:
            return
        records, self._unsent_records = self._unsent_records, []
        steps = ", ".join(f"{record.step}: {record.outcome}" for record in records)
        # As in `_record`: only a final refusal fails it, and the money path goes on.
        await _run_best_effort(
            TransferActivities.record_steps,
            StepsReport(transfer_id=self._transfer.transfer_id, records=records),
            retry_policy=RECORD_RETRY,
            failure_event="transfer.steps_not_recorded",
            failure_context={"steps": steps},
            summary=_truncate(steps),
        )

    def _set_status(self, status: TransferStatus) -> None:
        if status is self._status:
            return
        self._status = status
        if status.is_terminal:
            self._ended_at = workflow.now()
        workflow.upsert_search_attributes([STATUS_ATTRIBUTE.value_set(status.value)])
