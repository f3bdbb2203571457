"""StandingOrderOccurrenceWorkflow on the time-skipping server, its activities faked."""

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts.standing_orders import (
    OCCURRENCE_WORKFLOW_NAME,
    OccurrenceWorkflowInput,
    OccurrenceWorkflowResult,
    StandingOrderOccurrence,
)
from contracts.transfers import TransferStatus
from workflows.standing_order import StandingOrderOccurrenceWorkflow
from workflows.standing_order_activities import OccurrenceCall, OccurrenceFailure, TransferEnd
from workflows.tests.saga import business_failure, transient_failure
from workflows.worker import WORKFLOW_RUNNER

SCHEDULED_AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@dataclass
class FakeOccurrenceServices:
    """The occurrence's activities under their real names, answering as told."""

    end_status: TransferStatus = TransferStatus.completed
    failure_reason: str | None = None
    create_failure: ApplicationError | None = None
    create_transient_failures: int = 0
    # Transactions refused the occurrence's transfer for good: recorded, no transfer.
    refused_reason: str | None = None
    transfer_id: uuid.UUID = field(default_factory=uuid.uuid4)
    calls: list[str] = field(default_factory=list)
    created_for: list[OccurrenceCall] = field(default_factory=list)
    failures_recorded: list[OccurrenceFailure] = field(default_factory=list)
    failures_published: list[OccurrenceFailure] = field(default_factory=list)

    def activities(self) -> Sequence[Callable[..., Any]]:
        return [
            self.create_occurrence,
            self.await_transfer_end,
            self.record_occurrence_failed,
            self.publish_occurrence_failed,
        ]

    @activity.defn(name="create_occurrence")
    async def create_occurrence(self, call: OccurrenceCall) -> StandingOrderOccurrence:
        self.calls.append("create_occurrence")
        if self.create_transient_failures > 0:
            self.create_transient_failures -= 1
            raise transient_failure()
        if self.create_failure is not None:
            raise self.create_failure
        self.created_for.append(call)
        if self.refused_reason is not None:
            return StandingOrderOccurrence(
                standing_order_id=call.occurrence.standing_order_id,
                scheduled_at=call.scheduled_at,
                transfer_id=None,
                status=None,
                failure_reason=self.refused_reason,
                failed_at=SCHEDULED_AT,
                created_at=SCHEDULED_AT,
            )
        return StandingOrderOccurrence(
            standing_order_id=call.occurrence.standing_order_id,
            scheduled_at=call.scheduled_at,
            transfer_id=self.transfer_id,
            status=TransferStatus.pending,
            failure_reason=None,
            failed_at=None,
            created_at=SCHEDULED_AT,
        )

    @activity.defn(name="await_transfer_end")
    async def await_transfer_end(self, transfer_id: uuid.UUID) -> TransferEnd:
        self.calls.append("await_transfer_end")
        return TransferEnd(
            transfer_id=transfer_id, status=self.end_status, failure_reason=self.failure_reason
        )

    @activity.defn(name="record_occurrence_failed")
    async def record_occurrence_failed(self, failure: OccurrenceFailure) -> None:
        self.calls.append("record_occurrence_failed")
        self.failures_recorded.append(failure)

    @activity.defn(name="publish_occurrence_failed")
    async def publish_occurrence_failed(self, failure: OccurrenceFailure) -> None:
        self.calls.append("publish_occurrence_failed")
        self.failures_published.append(failure)


def occurrence_input(**overrides: Any) -> OccurrenceWorkflowInput:
    values: dict[str, Any] = {
        "standing_order_id": uuid.uuid4(),
        "source_account_id": uuid.uuid4(),
        "target_account_id": uuid.uuid4(),
        "amount_minor": 50_000,
        "currency": "EUR",
        "source_customer_id": "customer-source",
        "scheduled_at": SCHEDULED_AT,
    }
    values.update(overrides)
    return OccurrenceWorkflowInput(**values)


@asynccontextmanager
async def occurrence_worker(
    env: WorkflowEnvironment, task_queue: str, fakes: FakeOccurrenceServices
) -> AsyncIterator[None]:
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[StandingOrderOccurrenceWorkflow],
        activities=fakes.activities(),
        workflow_runner=WORKFLOW_RUNNER,
    ):
        yield


async def run_occurrence(
    env: WorkflowEnvironment, task_queue: str, occurrence: OccurrenceWorkflowInput
) -> OccurrenceWorkflowResult:
    result: OccurrenceWorkflowResult = await env.client.execute_workflow(
        OCCURRENCE_WORKFLOW_NAME,
        occurrence,
        id=f"standing-order-{occurrence.standing_order_id}-occurrence-test",
        task_queue=task_queue,
        result_type=OccurrenceWorkflowResult,
    )
    return result


class TestOccurrenceWorkflow:
    async def test_completed(self, saga_env: WorkflowEnvironment, task_queue: str) -> None:
        fakes = FakeOccurrenceServices()
        occurrence = occurrence_input()
        async with occurrence_worker(saga_env, task_queue, fakes):
            result = await run_occurrence(saga_env, task_queue, occurrence)
        assert result.status is TransferStatus.completed
        assert result.transfer_id == fakes.transfer_id
        assert fakes.calls == ["create_occurrence", "await_transfer_end"]
        assert [call.scheduled_at for call in fakes.created_for] == [SCHEDULED_AT]

    async def test_insufficient_funds_is_recorded_and_published(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeOccurrenceServices(
            end_status=TransferStatus.rejected, failure_reason="insufficient-funds"
        )
        occurrence = occurrence_input()
        async with occurrence_worker(saga_env, task_queue, fakes):
            result = await run_occurrence(saga_env, task_queue, occurrence)
        assert result.status is TransferStatus.rejected
        assert fakes.calls == [
            "create_occurrence",
            "await_transfer_end",
            "record_occurrence_failed",
            "publish_occurrence_failed",
        ]
        published = fakes.failures_published[0]
        assert published == fakes.failures_recorded[0]
        assert published.end.failure_reason == "insufficient-funds"
        assert published.occurrence == occurrence
        assert published.scheduled_at == SCHEDULED_AT

    async def test_a_refused_occurrence_is_published_once_without_a_transfer(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        """Transactions recorded the refusal itself; the workflow announces it and ends."""
        fakes = FakeOccurrenceServices(refused_reason="account-not-found")
        occurrence = occurrence_input()
        async with occurrence_worker(saga_env, task_queue, fakes):
            result = await run_occurrence(saga_env, task_queue, occurrence)
        assert (result.transfer_id, result.status) == (None, TransferStatus.rejected)
        assert fakes.calls == ["create_occurrence", "publish_occurrence_failed"]
        (published,) = fakes.failures_published
        assert published.end.transfer_id is None
        assert published.end.status is TransferStatus.rejected
        assert published.end.failure_reason == "account-not-found"
        assert (published.occurrence, published.scheduled_at) == (occurrence, SCHEDULED_AT)

    @pytest.mark.parametrize("slug", ["standing-order-cancelled", "standing-order-not-found"])
    async def test_an_order_gone_ends_without_a_transfer(
        self, saga_env: WorkflowEnvironment, task_queue: str, slug: str
    ) -> None:
        fakes = FakeOccurrenceServices(create_failure=business_failure(slug, "gone"))
        async with occurrence_worker(saga_env, task_queue, fakes):
            result = await run_occurrence(saga_env, task_queue, occurrence_input())
        assert result.transfer_id is None
        assert fakes.calls == ["create_occurrence"]

    async def test_creation_retried_through_outages(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeOccurrenceServices(create_transient_failures=3)
        async with occurrence_worker(saga_env, task_queue, fakes):
            result = await run_occurrence(saga_env, task_queue, occurrence_input())
        assert result.status is TransferStatus.completed
        assert fakes.calls.count("create_occurrence") == 4

    async def test_a_run_without_a_scheduled_time_fails(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeOccurrenceServices()
        async with occurrence_worker(saga_env, task_queue, fakes):
            with pytest.raises(WorkflowFailureError):
                await run_occurrence(saga_env, task_queue, occurrence_input(scheduled_at=None))
        assert fakes.calls == []
