"""Test doubles for the saga's activities and helpers that start transfers as transactions does.

The fakes stand in for the HTTP services, not for Temporal: the workflow under test is the
real `TransferWorkflow` on the real (time-skipping) test server.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
)
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts.accounts import LedgerTransfer, LedgerTransferKind, TransferValidation
from contracts.fraud import FraudDecision, Score, ScoreReason
from contracts.transfers import (
    QUERY_STATUS,
    StepRecord,
    TransferStatus,
    TransferWorkflowInput,
    TransferWorkflowResult,
    step_id,
    workflow_id,
)
from workflows.activities import HOLD_ATTEMPTS
from workflows.models import EventPublication, HoldAction, OutcomeNotice, StepReport, StepsReport
from workflows.transfer import TransferWorkflow
from workflows.worker import WORKFLOW_RUNNER

WAIT_SECONDS_MAX = 10.0
POLL_INTERVAL_SECONDS = 0.05
# Polling a remote server has no event to wait on; the bound is the number of polls.
POLLS_MAX = int(WAIT_SECONDS_MAX / POLL_INTERVAL_SECONDS)
FAKE_TIME = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
_SIGNALLED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
_TASK_COMPLETED = EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED


def new_transfer(**overrides: Any) -> TransferWorkflowInput:
    values: dict[str, Any] = {
        "transfer_id": uuid.uuid4(),
        "source_account_id": uuid.uuid4(),
        "target_account_id": uuid.uuid4(),
        "amount_minor": 125_000,
        "currency": "EUR",
        "description": "rent",
    }
    values.update(overrides)
    return TransferWorkflowInput(**values)


def business_failure(slug: str, detail: str) -> ApplicationError:
    """What an activity raises for a 4xx problem answer."""
    return ApplicationError(detail, type=slug, non_retryable=True)


def transient_failure() -> ApplicationError:
    """What an activity raises for a 5xx answer, a timeout or a refused connection."""
    return ApplicationError("service unavailable", type="http-503")


@dataclass
class Gate:
    """Holds an activity inside its call until the test releases it."""

    entered: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class FakeServices:
    """The saga's activities, registered under their real names, answering as told.

    `calls` lists every attempt in order (step reports apart, in `records`).
    """

    transfer: TransferWorkflowInput
    validation_failure: ApplicationError | None = None
    # Attempts of the hold that fail retryably (a timeout) before `hold_failure` or success.
    hold_transient_failures: int = 0
    hold_failure: ApplicationError | None = None
    score_failure: ApplicationError | None = None
    decision: FraudDecision = FraudDecision.approve
    post_transient_failures: int = 0
    # A final answer to the post, e.g. the hold expired before it.
    post_failure: ApplicationError | None = None
    void_transient_failures: int = 0
    publish_always_fails: bool = False
    outcome_always_fails: bool = False
    # The owners accounts names in its validation answer.
    source_customer_id: str | None = "customer-source"
    target_customer_id: str | None = "customer-target"
    calls: list[str] = field(default_factory=list)
    holds_posted: list[HoldAction] = field(default_factory=list)
    holds_voided: list[HoldAction] = field(default_factory=list)
    hold_inputs: list[TransferWorkflowInput] = field(default_factory=list)
    publications: list[EventPublication] = field(default_factory=list)
    outcomes: list[OutcomeNotice] = field(default_factory=list)
    records: list[StepRecord] = field(default_factory=list)
    # The steps of each `record_steps` call, in order.
    record_batches: list[list[str]] = field(default_factory=list)
    gates: dict[str, Gate] = field(default_factory=dict)

    def activities(self) -> Sequence[Callable[..., Any]]:
        return [
            self.validate_transfer,
            self.place_hold,
            self.score_transfer,
            self.post_hold,
            self.void_hold,
            self.publish_event,
            self.record_step,
            self.record_steps,
            self.report_outcome,
        ]

    def gate(self, activity_name: str) -> Gate:
        return self.gates.setdefault(activity_name, Gate())

    def calls_of(self, activity_name: str) -> int:
        return self.calls.count(activity_name)

    def steps(self) -> list[tuple[str, str, TransferStatus]]:
        return [(record.step, record.outcome, record.status) for record in self.records]

    async def _enter(self, activity_name: str) -> None:
        self.calls.append(activity_name)
        gate = self.gates.get(activity_name)
        if gate is not None:
            gate.entered.set()
            await asyncio.wait_for(gate.released.wait(), WAIT_SECONDS_MAX)

    def _ledger_transfer(self, step: str, kind: LedgerTransferKind) -> LedgerTransfer:
        return LedgerTransfer(
            id=step_id(self.transfer.transfer_id, step),
            kind=kind,
            debit_account_id=self.transfer.source_account_id,
            credit_account_id=self.transfer.target_account_id,
            amount_minor=self.transfer.amount_minor,
            currency=self.transfer.currency,
            pending_id=None if step == "hold" else step_id(self.transfer.transfer_id, "hold"),
            timeout_seconds=None,
            expires_at=None,
            reference=None,
            created_at=FAKE_TIME,
        )

    @activity.defn(name="validate_transfer")
    async def validate_transfer(self, transfer: TransferWorkflowInput) -> TransferValidation:
        await self._enter("validate_transfer")
        if self.validation_failure is not None:
            raise self.validation_failure
        return TransferValidation(
            transfer_id=transfer.transfer_id,
            valid=True,
            source_customer_id=self.source_customer_id,
            target_customer_id=self.target_customer_id,
        )

    @activity.defn(name="place_hold")
    async def place_hold(self, transfer: TransferWorkflowInput) -> LedgerTransfer:
        await self._enter("place_hold")
        self.hold_inputs.append(transfer)
        if self.hold_transient_failures > 0:
            self.hold_transient_failures -= 1
            raise transient_failure()
        failure = self.hold_failure
        if failure is not None:
            # As the real activity says it: a refusal after earlier attempts names them.
            attempt = activity.info().attempt
            if attempt > 1:
                raise ApplicationError(
                    failure.message, {HOLD_ATTEMPTS: attempt}, type=failure.type, non_retryable=True
                )
            raise failure
        return self._ledger_transfer("hold", LedgerTransferKind.pending)

    @activity.defn(name="score_transfer")
    async def score_transfer(self, transfer: TransferWorkflowInput) -> Score:
        await self._enter("score_transfer")
        if self.score_failure is not None:
            raise self.score_failure
        points = {FraudDecision.approve: 120, FraudDecision.review: 540, FraudDecision.decline: 910}
        return Score(
            transfer_id=transfer.transfer_id,
            score=points[self.decision],
            decision=self.decision,
            reasons=[
                ScoreReason(code="new_payee", text="First transfer to this payee", points=120)
            ],
            ruleset_version="test-1",
            created_at=FAKE_TIME,
        )

    @activity.defn(name="post_hold")
    async def post_hold(self, action: HoldAction) -> LedgerTransfer:
        await self._enter("post_hold")
        if self.post_failure is not None:
            raise self.post_failure
        if self.post_transient_failures > 0:
            self.post_transient_failures -= 1
            raise transient_failure()
        self.holds_posted.append(action)
        return self._ledger_transfer("post", LedgerTransferKind.post_pending)

    @activity.defn(name="void_hold")
    async def void_hold(self, action: HoldAction) -> None:
        await self._enter("void_hold")
        if self.void_transient_failures > 0:
            self.void_transient_failures -= 1
            raise transient_failure()
        self.holds_voided.append(action)

    @activity.defn(name="publish_event")
    async def publish_event(self, publication: EventPublication) -> None:
        await self._enter("publish_event")
        if self.publish_always_fails:
            raise transient_failure()
        self.publications.append(publication)

    @activity.defn(name="report_outcome")
    async def report_outcome(self, notice: OutcomeNotice) -> None:
        await self._enter("report_outcome")
        if self.outcome_always_fails:
            raise transient_failure()
        self.outcomes.append(notice)

    @activity.defn(name="record_step")
    async def record_step(self, report: StepReport) -> None:
        assert report.transfer_id == self.transfer.transfer_id
        self.records.append(report.record)

    @activity.defn(name="record_steps")
    async def record_steps(self, report: StepsReport) -> None:
        assert report.transfer_id == self.transfer.transfer_id
        self.record_batches.append([record.step for record in report.records])
        self.records.extend(report.records)


@asynccontextmanager
async def saga_worker(
    env: WorkflowEnvironment, task_queue: str, fakes: FakeServices
) -> AsyncIterator[Worker]:
    """A worker running the real TransferWorkflow with the fake activities."""
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[TransferWorkflow],
        activities=fakes.activities(),
        workflow_runner=WORKFLOW_RUNNER,
    ) as worker:
        yield worker


async def start_transfer(
    env: WorkflowEnvironment,
    task_queue: str,
    transfer: TransferWorkflowInput,
    *,
    start_delay: timedelta | None = None,
) -> WorkflowHandle[TransferWorkflow, TransferWorkflowResult]:
    """Start the saga the way the transactions service does (id, search attributes, memo;
    a future-dated transfer's `start_delay`)."""
    return await env.client.start_workflow(
        TransferWorkflow.run,
        transfer,
        id=workflow_id(transfer.transfer_id),
        task_queue=task_queue,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(SearchAttributeKey.for_keyword("TransferStatus"), "pending"),
                SearchAttributePair(
                    SearchAttributeKey.for_keyword("SourceAccountId"),
                    str(transfer.source_account_id),
                ),
                SearchAttributePair(
                    SearchAttributeKey.for_keyword("TargetAccountId"),
                    str(transfer.target_account_id),
                ),
                SearchAttributePair(
                    SearchAttributeKey.for_int("AmountMinor"), transfer.amount_minor
                ),
                SearchAttributePair(SearchAttributeKey.for_keyword("Currency"), transfer.currency),
            ]
        ),
        memo={"description": transfer.description},
        start_delay=start_delay,
    )


async def wait_for_status(handle: WorkflowHandle[Any, Any], status: TransferStatus) -> None:
    """Poll the status query until it answers `status`, for at most WAIT_SECONDS_MAX."""
    answered = None
    for _ in range(POLLS_MAX):
        answered = await handle.query(QUERY_STATUS, result_type=TransferStatus)
        if answered == status:
            return
        await asyncio.sleep(POLL_INTERVAL_SECONDS)
    raise AssertionError(f"the status stayed {answered}, never {status}")


async def wait_for_signal_seen(handle: WorkflowHandle[Any, Any]) -> None:
    """Poll the history until a workflow task has completed after the last signal."""
    for _ in range(POLLS_MAX):
        history = await handle.fetch_history()
        types = [event.event_type for event in history.events]
        signalled = [i for i, kind in enumerate(types) if kind == _SIGNALLED]
        assert signalled, "no signal in the history"
        if _TASK_COMPLETED in types[signalled[-1] :]:
            return
        await asyncio.sleep(POLL_INTERVAL_SECONDS)
    raise AssertionError("no workflow task completed after the signal")


async def entered(gate: Gate) -> None:
    await asyncio.wait_for(gate.entered.wait(), WAIT_SECONDS_MAX)


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` until it holds, for at most WAIT_SECONDS_MAX; fail naming `what`."""
    for _ in range(POLLS_MAX):
        if condition():
            return
        await asyncio.sleep(POLL_INTERVAL_SECONDS)
    raise AssertionError(f"never: {what}")
