"""A tiny stand-in of the transfer saga for the service's tests, registered as
"TransferWorkflow": it answers the cancel update like the real one (its validator refuses
once posting has begun) and runs until cancelled."""

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from contracts.transfers import (
    UPDATE_CANCEL,
    WORKFLOW_NAME,
    CancelRequest,
    CancelResult,
    TransferStatus,
    TransferWorkflowInput,
)

BEGIN_POSTING = "begin_posting"
REFUSE_QUIETLY = "refuse_quietly"
CANCELLED_QUERY = "cancelled"


@workflow.defn(name=WORKFLOW_NAME, sandboxed=False)
class StandInTransferWorkflow:
    """Runs until cancelled; refuses a cancel once told that posting has begun."""

    def __init__(self) -> None:
        self._posting = False
        self._refuse_quietly = False
        self._cancel: CancelRequest | None = None

    @workflow.run
    async def run(self, arguments: TransferWorkflowInput) -> None:
        await workflow.wait_condition(lambda: self._cancel is not None)
        # Stays open a moment longer so a repeated cancel can still reach it.
        await workflow.wait_condition(lambda: False, timeout=3600)

    @workflow.signal(name=BEGIN_POSTING)
    def begin_posting(self) -> None:
        self._posting = True

    @workflow.signal(name=REFUSE_QUIETLY)
    def refuse_quietly(self) -> None:
        self._refuse_quietly = True

    @workflow.query(name=CANCELLED_QUERY)
    def cancelled(self) -> bool:
        return self._cancel is not None

    @workflow.query(name=BEGIN_POSTING)
    def posting(self) -> bool:
        return self._posting

    @workflow.query(name=REFUSE_QUIETLY)
    def refusing(self) -> bool:
        return self._refuse_quietly

    @workflow.update(name=UPDATE_CANCEL)
    def request_cancel(self, request: CancelRequest) -> CancelResult:
        if self._refuse_quietly:
            return CancelResult(accepted=False, status=TransferStatus.pending)
        self._cancel = request
        return CancelResult(accepted=True, status=TransferStatus.pending)

    @request_cancel.validator
    def validate_cancel(self, request: CancelRequest) -> None:
        if self._posting:
            raise ApplicationError("posting has begun", non_retryable=True)
