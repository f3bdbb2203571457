"""The occurrence's activities: what they send (httpx.MockTransport), and the wait on a
transfer saga's end through the real Temporal dev server."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

from contracts.standing_orders import OccurrenceWorkflowInput
from contracts.transfers import (
    TransferStatus,
    TransferWorkflowInput,
    TransferWorkflowResult,
    workflow_id,
)
from workflows.standing_order_activities import (
    OccurrenceCall,
    OccurrenceFailure,
    StandingOrderActivities,
    TransferEnd,
    failure_event_id,
)
from workflows.tests.test_activities import Services, failure_of, problem, run
from workflows.worker import WORKFLOW_RUNNER

ORDER_ID = uuid.uuid4()
SCHEDULED_AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
OCCURRENCE = OccurrenceWorkflowInput(
    standing_order_id=ORDER_ID,
    source_account_id=uuid.uuid4(),
    target_account_id=uuid.uuid4(),
    amount_minor=50_000,
    currency="EUR",
    source_customer_id="customer-a",
)


@pytest.fixture
async def services() -> AsyncIterator[Services]:
    fakes = Services()
    yield fakes
    await fakes.activities.aclose()


@pytest.fixture
def activities(services: Services, temporal_client: Client) -> StandingOrderActivities:
    return StandingOrderActivities(transfers=services.activities, client=temporal_client)


class TestCreateOccurrence:
    async def test_valid(self, services: Services, activities: StandingOrderActivities) -> None:
        transfer_id = uuid.uuid4()
        services.answer_json(
            200,
            {
                "standing_order_id": str(ORDER_ID),
                "scheduled_at": SCHEDULED_AT.isoformat(),
                "transfer_id": str(transfer_id),
                "status": "pending",
                "failure_reason": None,
                "failed_at": None,
                "created_at": SCHEDULED_AT.isoformat(),
            },
        )
        call = OccurrenceCall(occurrence=OCCURRENCE, scheduled_at=SCHEDULED_AT)
        created = await run(activities.create_occurrence, call)
        assert created.transfer_id == transfer_id
        assert str(services.request.url) == (
            f"http://transactions.test/v1/internal/standing-orders/{ORDER_ID}/occurrences"
        )
        assert services.body() == {"scheduled_at": "2026-12-01T09:00:00Z"}

    async def test_a_cancelled_order_is_final(
        self, services: Services, activities: StandingOrderActivities
    ) -> None:
        services.answer = lambda request: problem(409, "standing-order-cancelled", "cancelled")
        call = OccurrenceCall(occurrence=OCCURRENCE, scheduled_at=SCHEDULED_AT)
        error = await failure_of(activities.create_occurrence, call)
        assert (error.type, error.non_retryable) == ("standing-order-cancelled", True)

    async def test_a_key_in_flight_is_asked_again(
        self, services: Services, activities: StandingOrderActivities
    ) -> None:
        services.answer = lambda request: problem(409, "idempotency-key-in-flight", "wait")
        call = OccurrenceCall(occurrence=OCCURRENCE, scheduled_at=SCHEDULED_AT)
        error = await failure_of(activities.create_occurrence, call)
        assert (error.type, error.non_retryable) == ("idempotency-key-in-flight", False)


class TestPublishOccurrenceFailed:
    async def test_valid(self, services: Services, activities: StandingOrderActivities) -> None:
        services.answer_json(201, {})
        transfer_id = uuid.uuid4()
        failure = OccurrenceFailure(
            occurrence=OCCURRENCE,
            scheduled_at=SCHEDULED_AT,
            end=TransferEnd(
                transfer_id=transfer_id,
                status=TransferStatus.rejected,
                failure_reason="insufficient-funds",
            ),
            occurred_at=SCHEDULED_AT,
        )
        await run(activities.publish_occurrence_failed, failure)
        assert str(services.request.url) == "http://notifications.test/v1/events"
        assert services.body() == {
            "id": str(failure_event_id(ORDER_ID, SCHEDULED_AT)),
            "type": "standing_order.occurrence_failed",
            "timestamp": "2026-12-01T09:00:00Z",
            "data": {
                "transfer_id": str(transfer_id),
                "status": "rejected",
                "amount_minor": 50_000,
                "currency": "EUR",
                "source_account_id": str(OCCURRENCE.source_account_id),
                "target_account_id": str(OCCURRENCE.target_account_id),
                "failure_reason": "insufficient-funds",
                "standing_order_id": str(ORDER_ID),
                "scheduled_at": "2026-12-01T09:00:00+00:00",
                "source_customer_id": "customer-a",
            },
        }

    async def test_a_refusal_names_no_transfer(
        self, services: Services, activities: StandingOrderActivities
    ) -> None:
        services.answer_json(201, {})
        end = TransferEnd(
            transfer_id=None, status=TransferStatus.rejected, failure_reason="account-not-found"
        )
        failure = OccurrenceFailure(
            occurrence=OCCURRENCE, scheduled_at=SCHEDULED_AT, end=end, occurred_at=SCHEDULED_AT
        )
        await run(activities.publish_occurrence_failed, failure)
        sent = services.body()
        assert sent["id"] == str(failure_event_id(ORDER_ID, SCHEDULED_AT))
        assert sent["data"]["transfer_id"] is None
        assert sent["data"]["failure_reason"] == "account-not-found"
        # Routed to the order's owner, as every transfer event of theirs.
        assert sent["data"]["source_customer_id"] == "customer-a"


@workflow.defn(name="TransferWorkflow")
class RejectedTransfer:
    """Stands in for the saga: ends its transfer rejected for lack of funds."""

    @workflow.run
    async def run(self, transfer: TransferWorkflowInput) -> TransferWorkflowResult:
        return TransferWorkflowResult(
            transfer_id=transfer.transfer_id,
            status=TransferStatus.rejected,
            failure_reason="insufficient-funds",
        )


class TestAwaitTransferEnd:
    async def test_learns_how_the_saga_ended(
        self, activities: StandingOrderActivities, temporal_client: Client, task_queue: str
    ) -> None:
        transfer = TransferWorkflowInput(
            transfer_id=uuid.uuid4(),
            source_account_id=uuid.uuid4(),
            target_account_id=uuid.uuid4(),
            amount_minor=50_000,
            currency="EUR",
        )
        await temporal_client.start_workflow(
            "TransferWorkflow",
            transfer,
            id=workflow_id(transfer.transfer_id),
            task_queue=task_queue,
        )
        async with Worker(
            temporal_client,
            task_queue=task_queue,
            workflows=[RejectedTransfer],
            workflow_runner=WORKFLOW_RUNNER,
        ):
            end = await run(activities.await_transfer_end, transfer.transfer_id)
        assert end == TransferEnd(
            transfer_id=transfer.transfer_id,
            status=TransferStatus.rejected,
            failure_reason="insufficient-funds",
        )
