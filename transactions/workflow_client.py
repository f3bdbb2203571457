"""The service's side of the transfer saga in Temporal: start it, signal it, update it.

Connects lazily, so the service starts and answers /healthz while Temporal is still
starting; the first request that needs Temporal connects (one connection, under a lock).
"""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Final

import structlog
from pydantic import BaseModel
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.converter import DataConverter
from temporalio.envconfig import ClientConnectConfig
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from contracts.money import Money
from contracts.reversals import (
    ORIGINAL_TRANSFER_ID_ATTRIBUTE,
    REVERSAL_WORKFLOW_NAME,
    ReversalWorkflowInput,
    reversal_workflow_id,
)
from contracts.transfers import (
    SEARCH_ATTRIBUTES,
    SIGNAL_REVIEW_DECISION,
    UPDATE_CANCEL,
    WORKFLOW_NAME,
    CancelRequest,
    CancelResult,
    ReviewDecision,
    TransferCreate,
    TransferStatus,
    TransferWorkflowInput,
    initial_status,
    workflow_id,
)
from kit.temporal_connection import described
from kit.tracing import current_trace_id
from transactions.errors import ExecuteAtTooFar, WorkflowServiceUnavailable

log = structlog.get_logger()

STATUS_KEY: Final = SearchAttributeKey.for_keyword("TransferStatus")
SOURCE_ACCOUNT_KEY: Final = SearchAttributeKey.for_keyword("SourceAccountId")
TARGET_ACCOUNT_KEY: Final = SearchAttributeKey.for_keyword("TargetAccountId")
AMOUNT_MINOR_KEY: Final = SearchAttributeKey.for_int("AmountMinor")
CURRENCY_KEY: Final = SearchAttributeKey.for_keyword("Currency")
ORIGINAL_TRANSFER_KEY: Final = SearchAttributeKey.for_keyword(ORIGINAL_TRANSFER_ID_ATTRIBUTE)
assert ORIGINAL_TRANSFER_KEY.name in SEARCH_ATTRIBUTES
for _key in (STATUS_KEY, SOURCE_ACCOUNT_KEY, TARGET_ACCOUNT_KEY, AMOUNT_MINOR_KEY, CURRENCY_KEY):
    assert _key.name in SEARCH_ATTRIBUTES, f"{_key.name} is not a registered search attribute"

_RETRY_AFTER_SECONDS: Final = 5
EXECUTE_AT_AHEAD_MAX_SECONDS_DEFAULT: Final = 90 * 86400
# One update id per transfer: a retried cancel (after a timeout, say) joins the first
# instead of asking twice, and once accepted every later cancel gets the same answer.
CANCEL_UPDATE_ID: Final = "cancel"


class CancelRefused(Exception):
    """The saga refused the cancel (posting has begun) or has already finished."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransferWorkflows:
    """Starts and signals `TransferWorkflow` executions; connects with `data_converter`
    (kit.payloads: the worker's), unless handed a connected `client`."""

    def __init__(
        self,
        *,
        client: Client | None,
        data_converter: DataConverter,
        connection: ClientConnectConfig,
        task_queue: str,
        review_timeout_seconds: int,
        hold_timeout_seconds: int,
        start_deadline_seconds: int,
        rpc_timeout_seconds: float,
        cancel_timeout_seconds: float,
        trace_url_template: str | None = None,
        execute_at_ahead_max_seconds: int = EXECUTE_AT_AHEAD_MAX_SECONDS_DEFAULT,
    ) -> None:
        assert review_timeout_seconds > 0
        assert hold_timeout_seconds > review_timeout_seconds, "a hold outlives the review"
        assert start_deadline_seconds > 0
        assert rpc_timeout_seconds > 0
        assert cancel_timeout_seconds > 0
        self._cancel_timeout_seconds = cancel_timeout_seconds
        self._trace_url_template = trace_url_template
        self._client = client
        self._data_converter = data_converter
        self._connection = connection
        self._task_queue = task_queue
        self._review_timeout_seconds = review_timeout_seconds
        self._hold_timeout_seconds = hold_timeout_seconds
        self._start_deadline = timedelta(seconds=start_deadline_seconds)
        self._rpc_timeout = timedelta(seconds=rpc_timeout_seconds)
        self._connect_lock = asyncio.Lock()
        assert execute_at_ahead_max_seconds > 0
        self._execute_at_ahead_max = timedelta(seconds=execute_at_ahead_max_seconds)

    async def _connected(self) -> Client:
        if self._client is not None:
            return self._client
        async with self._connect_lock:
            if self._client is None:
                try:
                    self._client = await Client.connect(
                        **self._connection,
                        data_converter=self._data_converter,
                        connect_timeout=self._rpc_timeout,
                        # StartWorkflow joins the request's trace and hands it to the saga.
                        interceptors=[TracingInterceptor()],
                    )
                except Exception as error:
                    log.warning("temporal.connect_failed", error=str(error)[:500])
                    raise _unavailable() from error
                log.info("temporal.connected", temporal=described(self._connection))
            return self._client

    async def connected(self) -> Client:
        """The Temporal client, connected on first use (503 while Temporal is away)."""
        return await self._connected()

    def start_deadline_of(self, requested_at: datetime) -> datetime:
        """When the saga of a transfer recorded at `requested_at` must have started."""
        return requested_at + self._start_deadline

    def check_execute_at(self, transfer: TransferCreate, now: datetime) -> None:
        """Refuse a future-dated transfer further ahead than the service allows."""
        if transfer.execute_at is None:
            return
        if transfer.execute_at > now + self._execute_at_ahead_max:
            days = self._execute_at_ahead_max.total_seconds() / 86400
            raise ExecuteAtTooFar(f"execute_at may be at most {days:g} days ahead")

    async def start(
        self,
        *,
        transfer_id: uuid.UUID,
        transfer: TransferCreate,
        source_customer_id: str | None,
        requested_at: datetime,
    ) -> None:
        """Start the saga of a transfer; starting it again is harmless (same workflow id).
        `source_customer_id` is the customer who asked (from their token), if one did;
        `requested_at` is when the transfer was recorded (its start deadline counts from it)."""
        assert requested_at.tzinfo is not None, "the transfer's time is timezone-aware"
        # A future-dated saga starts at `execute_at`, and its start deadline counts from
        # then: counted from the request, every transfer dated further ahead than the
        # deadline would end `not-started`.
        due_at = max(requested_at, transfer.execute_at or requested_at)
        start_delay = transfer.execute_at - datetime.now(UTC) if transfer.execute_at else None
        arguments = TransferWorkflowInput(
            transfer_id=transfer_id,
            source_account_id=transfer.source_account_id,
            target_account_id=transfer.target_account_id,
            amount_minor=transfer.amount_minor,
            currency=transfer.currency,
            description=transfer.description,
            review_timeout_seconds=self._review_timeout_seconds,
            source_customer_id=source_customer_id,
            hold_timeout_seconds=self._hold_timeout_seconds,
            start_deadline=self.start_deadline_of(due_at),
        )
        search_attributes = TypedSearchAttributes(
            [
                SearchAttributePair(STATUS_KEY, initial_status(transfer).value),
                SearchAttributePair(SOURCE_ACCOUNT_KEY, str(arguments.source_account_id)),
                SearchAttributePair(TARGET_ACCOUNT_KEY, str(arguments.target_account_id)),
                SearchAttributePair(AMOUNT_MINOR_KEY, arguments.amount_minor),
                SearchAttributePair(CURRENCY_KEY, arguments.currency),
            ]
        )
        try:
            client = await self._connected()
        except WorkflowServiceUnavailable as error:
            raise _unavailable(_START_FAILED) from error
        try:
            await client.start_workflow(
                WORKFLOW_NAME,
                arguments,
                id=workflow_id(arguments.transfer_id),
                task_queue=self._task_queue,
                # A transfer's saga runs once: a duplicate start while it runs joins it,
                # and one after it closed is refused (and ignored below), never rerun.
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=search_attributes,
                memo={"description": transfer.description},
                static_summary=transfer_summary(transfer),
                static_details=trace_details(current_trace_id(), self._trace_url_template),
                rpc_timeout=self._rpc_timeout,
                # Temporal starts the first workflow task then (a past time: at once).
                start_delay=start_delay if start_delay and start_delay > timedelta(0) else None,
            )
        except WorkflowAlreadyStartedError:
            log.info("transfer.workflow_already_closed")
        except RPCError as error:
            log.warning("temporal.start_failed", error=error.message[:500])
            raise _unavailable(_START_FAILED) from error
        log.info("transfer.workflow_started", task_queue=self._task_queue)

    async def start_reversal(
        self,
        *,
        reversal_id: uuid.UUID,
        original_transfer_id: uuid.UUID,
        transfer: TransferCreate,
        reason: str | None,
        source_customer_id: str | None,
        requested_at: datetime,
    ) -> None:
        """Start the saga of a reversal (`transfer`: its terms, payee to payer) as `start`
        starts a transfer's: again is harmless, and it runs once."""
        assert requested_at.tzinfo is not None, "the reversal's time is timezone-aware"
        arguments = ReversalWorkflowInput(
            reversal_id=reversal_id,
            original_transfer_id=original_transfer_id,
            source_account_id=transfer.source_account_id,
            target_account_id=transfer.target_account_id,
            amount_minor=transfer.amount_minor,
            currency=transfer.currency,
            reason=reason,
            source_customer_id=source_customer_id,
            hold_timeout_seconds=self._hold_timeout_seconds,
            start_deadline=self.start_deadline_of(requested_at),
        )
        search_attributes = TypedSearchAttributes(
            [
                SearchAttributePair(STATUS_KEY, TransferStatus.pending.value),
                SearchAttributePair(ORIGINAL_TRANSFER_KEY, str(original_transfer_id)),
                SearchAttributePair(SOURCE_ACCOUNT_KEY, str(transfer.source_account_id)),
                SearchAttributePair(TARGET_ACCOUNT_KEY, str(transfer.target_account_id)),
                SearchAttributePair(AMOUNT_MINOR_KEY, transfer.amount_minor),
                SearchAttributePair(CURRENCY_KEY, transfer.currency),
            ]
        )
        try:
            client = await self._connected()
        except WorkflowServiceUnavailable as error:
            raise _unavailable(_START_FAILED) from error
        try:
            await client.start_workflow(
                REVERSAL_WORKFLOW_NAME,
                arguments,
                id=reversal_workflow_id(reversal_id),
                task_queue=self._task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=search_attributes,
                static_summary=f"Reversal of transfer {original_transfer_id}: "
                + transfer_summary(transfer),
                static_details=trace_details(current_trace_id(), self._trace_url_template),
                rpc_timeout=self._rpc_timeout,
            )
        except WorkflowAlreadyStartedError:
            log.info("reversal.workflow_already_closed")
        except RPCError as error:
            log.warning("temporal.start_failed", error=error.message[:500])
            raise _unavailable(_START_FAILED) from error
        log.info("reversal.workflow_started", task_queue=self._task_queue)

    async def request_cancel(
        self, *, transfer_id: uuid.UUID, request: CancelRequest
    ) -> CancelResult:
        """Ask the saga to cancel and wait for its answer (the `request_cancel` update).

        Raises CancelRefused when the saga's validator refuses (posting has begun), when
        it answers not accepted, or when its workflow has closed; 503 when no answer
        comes within the cancel timeout (retrying joins the same update).
        """
        client = await self._connected()
        handle = client.get_workflow_handle(workflow_id(transfer_id))
        try:
            async with asyncio.timeout(self._cancel_timeout_seconds):
                result: CancelResult = await handle.execute_update(
                    UPDATE_CANCEL,
                    request,
                    id=CANCEL_UPDATE_ID,
                    result_type=CancelResult,
                    rpc_timeout=self._rpc_timeout,
                )
        except WorkflowUpdateFailedError as error:
            reason = str(getattr(error.cause, "message", "") or error.cause)[:500]
            log.info("transfer.cancel_refused", reason=reason)
            raise CancelRefused(reason or "the transfer's saga refused the cancel") from error
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                raise CancelRefused("the transfer's workflow has already finished") from error
            log.warning("temporal.update_failed", update=UPDATE_CANCEL, error=error.message[:500])
            raise _unavailable() from error
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError) as error:
            # The update may still be delivered when a worker picks the workflow up; a
            # retry with the same update id then learns its outcome.
            log.warning("temporal.update_timed_out", update=UPDATE_CANCEL)
            raise _unavailable() from error
        if not result.accepted:
            raise CancelRefused(f"the transfer's saga did not accept it ({result.status.value})")
        log.info("transfer.cancel_accepted", status=result.status.value)
        return result

    async def signal_review_decision(
        self, *, transfer_id: uuid.UUID, decision: ReviewDecision
    ) -> bool:
        """Hand a reviewer's verdict to the saga; False if its workflow is no longer running."""
        return await self._signal(transfer_id, SIGNAL_REVIEW_DECISION, decision)

    async def _signal(self, transfer_id: uuid.UUID, signal: str, payload: BaseModel) -> bool:
        client = await self._connected()
        handle = client.get_workflow_handle(workflow_id(transfer_id))
        try:
            await handle.signal(signal, payload, rpc_timeout=self._rpc_timeout)
        except RPCError as error:
            # Temporal answers NOT_FOUND for a workflow that has already closed.
            if error.status == RPCStatusCode.NOT_FOUND:
                return False
            log.warning("temporal.signal_failed", signal=signal, error=error.message[:500])
            raise _unavailable() from error
        log.info("transfer.signalled", signal=signal)
        return True


def transfer_summary(transfer: TransferCreate) -> str:
    """The workflow's one-line summary in the Temporal UI: who pays whom how much."""
    money = Money(amount_minor=transfer.amount_minor, currency=transfer.currency)
    return (
        f"Transfer {money.format()} from {transfer.source_account_id} "
        f"to {transfer.target_account_id}"
    )


def trace_details(trace_id: str | None, url_template: str | None) -> str | None:
    """The workflow's details in the Temporal UI (Markdown): its trace, linked when a trace
    URL template is configured; None when the start ran outside any trace (the reconciler)."""
    if trace_id is None:
        return None
    if url_template is None:
        return f"Trace: {trace_id}"
    return f"Trace: [{trace_id}]({url_template.replace('{trace_id}', trace_id)})"


# The transfer is recorded by then, and the reconciler starts its saga when Temporal is
# back: the customer learns its fate by retrying with the same key (a replay, never a twin).
_START_FAILED: Final = (
    "Temporal did not answer; the transfer is recorded and may still go ahead. Retry with "
    "the same Idempotency-Key to learn its outcome."
)


def _unavailable(
    detail: str = "Temporal did not answer; retry later.",
) -> WorkflowServiceUnavailable:
    return WorkflowServiceUnavailable(detail, retry_after_seconds=_RETRY_AFTER_SECONDS)
