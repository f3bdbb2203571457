"""TransferWorkflow on Temporal's time-skipping server, with the services faked per test."""

from typing import Any

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import CancelledError
from temporalio.testing import WorkflowEnvironment

from contracts.fraud import FraudDecision
from contracts.notifications import EventType
from contracts.transfers import (
    SIGNAL_CANCEL,
    SIGNAL_REVIEW_DECISION,
    CancelRequest,
    ReviewDecision,
    TransferStatus,
    step_id,
)
from workflows.models import HoldAction
from workflows.tests.saga import (
    FakeServices,
    business_failure,
    entered,
    new_transfer,
    saga_worker,
    start_transfer,
    transient_failure,
    wait_for_status,
)
from workflows.transfer import FRAUD_DECISION_ATTRIBUTE, STATUS_ATTRIBUTE

pending = TransferStatus.pending
in_review = TransferStatus.in_review


def assert_versions_strictly_increase(fakes: FakeServices) -> None:
    versions = [record.version for record in fakes.records]
    assert versions == list(range(1, len(versions) + 1))
    instants = [record.occurred_at for record in fakes.records]
    assert instants == sorted(instants)


async def assert_search_attributes(
    handle: WorkflowHandle[Any, Any], status: TransferStatus, decision: FraudDecision | None
) -> None:
    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(STATUS_ATTRIBUTE) == status.value
    assert attributes.get(FRAUD_DECISION_ATTRIBUTE) == (decision.value if decision else None)


def the_hold(fakes: FakeServices) -> HoldAction:
    transfer_id = fakes.transfer.transfer_id
    return HoldAction(transfer_id=transfer_id, hold_id=step_id(transfer_id, "hold"))


class TestCompletion:
    async def test_valid(self, saga_env: WorkflowEnvironment, task_queue: str) -> None:
        fakes = FakeServices(new_transfer())
        async with saga_worker(saga_env, task_queue, fakes):
            handle = await start_transfer(saga_env, task_queue, fakes.transfer)
            result = await handle.result()
            await assert_search_attributes(handle, TransferStatus.completed, FraudDecision.approve)

        assert result.status is TransferStatus.completed
        assert result.failure_reason is None
        assert result.transfer_id == fakes.transfer.transfer_id
        assert fakes.calls == [
            "validate_transfer",
            "place_hold",
            "score_transfer",
            "post_hold",
            "publish_event",
        ]
        assert fakes.holds_posted == [the_hold(fakes)]
        assert fakes.holds_voided == []
        assert fakes.steps() == [
            ("validate", "succeeded", pending),
            ("hold", "succeeded", pending),
            ("score", "approve", pending),
            ("post", "succeeded", TransferStatus.completed),
            ("notify", "succeeded", TransferStatus.completed),
        ]
        assert_versions_strictly_increase(fakes)
        final = fakes.records[-1]
        assert final.hold_id == step_id(fakes.transfer.transfer_id, "hold")
        assert final.posting_id == step_id(fakes.transfer.transfer_id, "post")
        assert final.fraud is not None
        assert final.fraud.decision is FraudDecision.approve
        assert [publication.type for publication in fakes.publications] == [
            EventType.transfer_completed
        ]
        assert fakes.publications[0].status is TransferStatus.completed

    async def test_posting_retries_until_it_succeeds(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(new_transfer(), post_transient_failures=4)
        async with saga_worker(saga_env, task_queue, fakes):
            result = await (await start_transfer(saga_env, task_queue, fakes.transfer)).result()

        assert result.status is TransferStatus.completed
        assert fakes.calls_of("post_hold") == 5
        assert fakes.holds_posted == [the_hold(fakes)]
        assert fakes.calls_of("void_hold") == 0
        assert [step for step, _, _ in fakes.steps()] == [
            "validate",
            "hold",
            "score",
            "post",
            "notify",
        ]
        assert_versions_strictly_increase(fakes)

    async def test_notification_trouble_never_undoes_the_posting(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(new_transfer(), publish_always_fails=True)
        async with saga_worker(saga_env, task_queue, fakes):
            handle = await start_transfer(saga_env, task_queue, fakes.transfer)
            result = await handle.result()
            await assert_search_attributes(handle, TransferStatus.completed, FraudDecision.approve)

        assert result.status is TransferStatus.completed
        assert fakes.calls_of("publish_event") == 5  # bounded: NOTIFY_RETRY.maximum_attempts
        assert fakes.holds_posted == [the_hold(fakes)]
        assert fakes.calls_of("void_hold") == 0
        assert fakes.steps()[-2:] == [
            ("post", "succeeded", TransferStatus.completed),
            ("notify", "failed", TransferStatus.completed),
        ]
        assert fakes.records[-1].detail == "transfer.completed"
        assert_versions_strictly_increase(fakes)


class TestRejection:
    async def test_validation_failure(self, saga_env: WorkflowEnvironment, task_queue: str) -> None:
        fakes = FakeServices(
            new_transfer(),
            validation_failure=business_failure("account-not-active", "the account is frozen"),
        )
        async with saga_worker(saga_env, task_queue, fakes):
            handle = await start_transfer(saga_env, task_queue, fakes.transfer)
            result = await handle.result()
            await assert_search_attributes(handle, TransferStatus.rejected, None)

        assert result.status is TransferStatus.rejected
        assert result.failure_reason == "account-not-active: the account is frozen"
        assert fakes.calls == ["validate_transfer", "publish_event"]
        assert fakes.steps() == [
            ("validate", "failed", TransferStatus.rejected),
            ("notify", "succeeded", TransferStatus.rejected),
        ]
        assert fakes.records[0].failure_reason == result.failure_reason
        assert_versions_strictly_increase(fakes)
        assert fakes.publications[0].type is EventType.transfer_rejected
        assert fakes.publications[0].failure_reason == result.failure_reason

    async def test_insufficient_funds(self, saga_env: WorkflowEnvironment, task_queue: str) -> None:
        fakes = FakeServices(
            new_transfer(),
            hold_failure=business_failure("insufficient-funds", "available 100, needed 125000"),
        )
        async with saga_worker(saga_env, task_queue, fakes):
            result = await (await start_transfer(saga_env, task_queue, fakes.transfer)).result()

        assert result.status is TransferStatus.rejected
        assert result.failure_reason == "insufficient-funds: available 100, needed 125000"
        assert fakes.calls == ["validate_transfer", "place_hold", "publish_event"]
        assert fakes.steps() == [
            ("validate", "succeeded", pending),
            ("hold", "failed", TransferStatus.rejected),
            ("notify", "succeeded", TransferStatus.rejected),
        ]
        assert fakes.records[-1].hold_id is None
        assert_versions_strictly_increase(fakes)

    async def test_fraud_service_down_rejects_and_voids(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(new_transfer(), score_failure=transient_failure())
        async with saga_worker(saga_env, task_queue, fakes):
            result = await (await start_transfer(saga_env, task_queue, fakes.transfer)).result()

        assert result.status is TransferStatus.rejected
        assert result.failure_reason == "http-503: service unavailable"
        assert fakes.calls_of("score_transfer") == 10  # bounded: LOOKUP_RETRY.maximum_attempts
        assert fakes.holds_voided == [the_hold(fakes)]
        assert fakes.calls_of("post_hold") == 0
        assert fakes.steps()[-3:] == [
            ("score", "failed", TransferStatus.rejected),
            ("void", "succeeded", TransferStatus.rejected),
            ("notify", "succeeded", TransferStatus.rejected),
        ]
        assert_versions_strictly_increase(fakes)


class TestFraudDecline:
    async def test_decline_voids_the_hold_once(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(new_transfer(), decision=FraudDecision.decline)
        async with saga_worker(saga_env, task_queue, fakes):
            handle = await start_transfer(saga_env, task_queue, fakes.transfer)
            result = await handle.result()
            await assert_search_attributes(handle, TransferStatus.declined, FraudDecision.decline)

        assert result.status is TransferStatus.declined
        assert result.failure_reason == "fraud-declined: score 910 (new_payee)"
        assert fakes.calls == [
            "validate_transfer",
            "place_hold",
            "score_transfer",
            "void_hold",
            "publish_event",
        ]
        assert fakes.holds_voided == [the_hold(fakes)]
        assert fakes.steps() == [
            ("validate", "succeeded", pending),
            ("hold", "succeeded", pending),
            ("score", "decline", TransferStatus.declined),
            ("void", "succeeded", TransferStatus.declined),
            ("notify", "succeeded", TransferStatus.declined),
        ]
        assert fakes.records[2].fraud is not None
        assert fakes.records[2].fraud.score == 910
        assert_versions_strictly_increase(fakes)
        assert fakes.publications[0].type is EventType.transfer_declined

    async def test_void_retries_until_it_succeeds(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(
            new_transfer(), decision=FraudDecision.decline, void_transient_failures=6
        )
        async with saga_worker(saga_env, task_queue, fakes):
            result = await (await start_transfer(saga_env, task_queue, fakes.transfer)).result()

        assert result.status is TransferStatus.declined
        assert fakes.calls_of("void_hold") == 7
        assert fakes.holds_voided == [the_hold(fakes)]
        assert fakes.steps()[-2:] == [
            ("void", "succeeded", TransferStatus.declined),
            ("notify", "succeeded", TransferStatus.declined),
        ]
        assert_versions_strictly_increase(fakes)


class TestReview:
    async def test_approved(self, saga_env: WorkflowEnvironment, task_queue: str) -> None:
        fakes = FakeServices(new_transfer(), decision=FraudDecision.review)
        async with saga_worker(saga_env, task_queue, fakes):
            handle = await start_transfer(saga_env, task_queue, fakes.transfer)
            await wait_for_status(handle, in_review)
            await handle.signal(
                SIGNAL_REVIEW_DECISION,
                ReviewDecision(decision="approve", reviewer_id="reviewer-7", note="known payee"),
            )
            result = await handle.result()
            await assert_search_attributes(handle, TransferStatus.completed, FraudDecision.review)

        assert result.status is TransferStatus.completed
        assert fakes.holds_posted == [the_hold(fakes)]
        assert fakes.calls_of("void_hold") == 0
        assert fakes.steps() == [
            ("validate", "succeeded", pending),
            ("hold", "succeeded", pending),
            ("score", "review", in_review),
            ("review", "approved", pending),
            ("post", "succeeded", TransferStatus.completed),
            ("notify", "succeeded", TransferStatus.completed),
        ]
        assert fakes.records[3].detail == "reviewer reviewer-7: known payee"
        assert_versions_strictly_increase(fakes)
        assert [(p.type, p.status) for p in fakes.publications] == [
            (EventType.transfer_in_review, in_review),
            (EventType.transfer_completed, TransferStatus.completed),
        ]

    async def test_rejected(self, saga_env: WorkflowEnvironment, task_queue: str) -> None:
        fakes = FakeServices(new_transfer(), decision=FraudDecision.review)
        async with saga_worker(saga_env, task_queue, fakes):
            handle = await start_transfer(saga_env, task_queue, fakes.transfer)
            await wait_for_status(handle, in_review)
            await handle.signal(
                SIGNAL_REVIEW_DECISION, ReviewDecision(decision="reject", reviewer_id="reviewer-7")
            )
            result = await handle.result()

        assert result.status is TransferStatus.declined
        assert result.failure_reason == "review-rejected"
        assert fakes.holds_voided == [the_hold(fakes)]
        assert fakes.calls_of("post_hold") == 0
        assert fakes.steps()[2:] == [
            ("score", "review", in_review),
            ("review", "rejected", TransferStatus.declined),
            ("void", "succeeded", TransferStatus.declined),
            ("notify", "succeeded", TransferStatus.declined),
        ]
        assert_versions_strictly_increase(fakes)

    async def test_timeout_expires_the_transfer(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(new_transfer(), decision=FraudDecision.review)
        async with saga_worker(saga_env, task_queue, fakes):
            handle = await start_transfer(saga_env, task_queue, fakes.transfer)
            started = await saga_env.get_current_time()
            # Awaiting the result lets the server skip the 24 hours of the review timer.
            result = await handle.result()
            waited = await saga_env.get_current_time() - started

        assert fakes.transfer.review_timeout_seconds == 24 * 3600
        assert waited.total_seconds() >= 24 * 3600
        assert result.status is TransferStatus.expired
        assert result.failure_reason == "review-timed-out"
        assert fakes.holds_voided == [the_hold(fakes)]
        assert fakes.calls_of("post_hold") == 0
        assert fakes.steps()[2:] == [
            ("score", "review", in_review),
            ("review", "timed_out", TransferStatus.expired),
            ("void", "succeeded", TransferStatus.expired),
            ("notify", "succeeded", TransferStatus.expired),
        ]
        assert_versions_strictly_increase(fakes)
        assert fakes.publications[-1].type is EventType.transfer_expired

    async def test_decision_before_review_is_ignored(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(
            new_transfer(review_timeout_seconds=600), decision=FraudDecision.review
        )
        score = fakes.gate("score_transfer")
        async with saga_worker(saga_env, task_queue, fakes):
            handle = await start_transfer(saga_env, task_queue, fakes.transfer)
            await entered(score)
            await handle.signal(
                SIGNAL_REVIEW_DECISION, ReviewDecision(decision="approve", reviewer_id="early")
            )
            score.released.set()
            result = await handle.result()

        assert result.status is TransferStatus.expired
        assert fakes.calls_of("post_hold") == 0


class TestCancelSignal:
    async def test_between_steps_voids_the_hold(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(new_transfer())
        score = fakes.gate("score_transfer")
        async with saga_worker(saga_env, task_queue, fakes):
            handle = await start_transfer(saga_env, task_queue, fakes.transfer)
            await entered(score)
            await handle.signal(SIGNAL_CANCEL, CancelRequest(reason="changed my mind"))
            score.released.set()
            result = await handle.result()
            await assert_search_attributes(handle, TransferStatus.cancelled, FraudDecision.approve)

        assert result.status is TransferStatus.cancelled
        assert result.failure_reason == "cancelled: changed my mind"
        assert fakes.holds_voided == [the_hold(fakes)]
        assert fakes.calls_of("post_hold") == 0
        # The score in flight when the cancel arrived finishes and is recorded; the cancel is
        # honoured right after it.
        assert fakes.steps() == [
            ("validate", "succeeded", pending),
            ("hold", "succeeded", pending),
            ("score", "approve", pending),
            ("cancel", "requested", TransferStatus.cancelled),
            ("void", "succeeded", TransferStatus.cancelled),
            ("notify", "succeeded", TransferStatus.cancelled),
        ]
        assert_versions_strictly_increase(fakes)
        assert fakes.publications[-1].type is EventType.transfer_cancelled

    async def test_before_the_hold_needs_no_void(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(new_transfer())
        validation = fakes.gate("validate_transfer")
        async with saga_worker(saga_env, task_queue, fakes):
            handle = await start_transfer(saga_env, task_queue, fakes.transfer)
            await entered(validation)
            await handle.signal(SIGNAL_CANCEL, CancelRequest())
            validation.released.set()
            result = await handle.result()

        assert result.status is TransferStatus.cancelled
        assert result.failure_reason == "cancelled"
        assert fakes.calls == ["validate_transfer", "publish_event"]
        assert fakes.steps() == [
            ("validate", "succeeded", pending),
            ("cancel", "requested", TransferStatus.cancelled),
            ("notify", "succeeded", TransferStatus.cancelled),
        ]

    async def test_during_review(self, saga_env: WorkflowEnvironment, task_queue: str) -> None:
        fakes = FakeServices(new_transfer(), decision=FraudDecision.review)
        async with saga_worker(saga_env, task_queue, fakes):
            handle = await start_transfer(saga_env, task_queue, fakes.transfer)
            await wait_for_status(handle, in_review)
            await handle.signal(SIGNAL_CANCEL, CancelRequest(reason="wrong payee"))
            result = await handle.result()

        assert result.status is TransferStatus.cancelled
        assert fakes.holds_voided == [the_hold(fakes)]
        assert fakes.steps()[2:] == [
            ("score", "review", in_review),
            ("cancel", "requested", TransferStatus.cancelled),
            ("void", "succeeded", TransferStatus.cancelled),
            ("notify", "succeeded", TransferStatus.cancelled),
        ]
        assert_versions_strictly_increase(fakes)

    async def test_after_the_pivot_is_ignored(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(new_transfer())
        post = fakes.gate("post_hold")
        async with saga_worker(saga_env, task_queue, fakes):
            handle = await start_transfer(saga_env, task_queue, fakes.transfer)
            await entered(post)
            await handle.signal(SIGNAL_CANCEL, CancelRequest(reason="too late"))
            post.released.set()
            result = await handle.result()

        assert result.status is TransferStatus.completed
        assert fakes.holds_posted == [the_hold(fakes)]
        assert fakes.calls_of("void_hold") == 0
        assert [step for step, _, _ in fakes.steps()] == [
            "validate",
            "hold",
            "score",
            "post",
            "notify",
        ]
        assert fakes.publications[-1].type is EventType.transfer_completed


class TestWorkflowCancellation:
    async def test_runs_the_compensation(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(new_transfer(), decision=FraudDecision.review)
        async with saga_worker(saga_env, task_queue, fakes):
            handle = await start_transfer(saga_env, task_queue, fakes.transfer)
            await wait_for_status(handle, in_review)
            await handle.cancel()
            with pytest.raises(WorkflowFailureError) as failure:
                await handle.result()
            await assert_search_attributes(handle, TransferStatus.cancelled, FraudDecision.review)

        assert isinstance(failure.value.cause, CancelledError)
        assert fakes.holds_voided == [the_hold(fakes)]
        assert fakes.calls_of("post_hold") == 0
        assert fakes.steps()[2:] == [
            ("score", "review", in_review),
            ("cancel", "requested", TransferStatus.cancelled),
            ("void", "succeeded", TransferStatus.cancelled),
            ("notify", "succeeded", TransferStatus.cancelled),
        ]
        assert fakes.records[-2].failure_reason == "cancelled: workflow cancelled"
        assert_versions_strictly_increase(fakes)

    async def test_while_the_hold_is_placed_still_voids_it(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(new_transfer())
        hold = fakes.gate("place_hold")
        async with saga_worker(saga_env, task_queue, fakes):
            handle = await start_transfer(saga_env, task_queue, fakes.transfer)
            await entered(hold)
            await handle.cancel()
            hold.released.set()
            with pytest.raises(WorkflowFailureError) as failure:
                await handle.result()

        assert isinstance(failure.value.cause, CancelledError)
        assert fakes.calls == ["validate_transfer", "place_hold", "void_hold", "publish_event"]
        assert fakes.holds_voided == [the_hold(fakes)]
        assert fakes.steps() == [
            ("validate", "succeeded", pending),
            ("hold", "succeeded", pending),
            ("cancel", "requested", TransferStatus.cancelled),
            ("void", "succeeded", TransferStatus.cancelled),
            ("notify", "succeeded", TransferStatus.cancelled),
        ]

    async def test_after_the_pivot_completes_the_transfer(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(new_transfer())
        post = fakes.gate("post_hold")
        async with saga_worker(saga_env, task_queue, fakes):
            handle = await start_transfer(saga_env, task_queue, fakes.transfer)
            await entered(post)
            await handle.cancel()
            post.released.set()
            result = await handle.result()

        assert result.status is TransferStatus.completed
        assert fakes.holds_posted == [the_hold(fakes)]
        assert fakes.calls_of("void_hold") == 0
        assert fakes.steps()[-1] == ("notify", "succeeded", TransferStatus.completed)
