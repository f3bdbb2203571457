"""TransferWorkflow on Temporal's time-skipping server, with the services faked per test."""

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType as EventType_
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment

from contracts.fraud import FraudDecision
from contracts.notifications import EventType
from contracts.transfers import (
    SIGNAL_CANCEL,
    SIGNAL_REVIEW_DECISION,
    UPDATE_CANCEL,
    CancelRequest,
    CancelResult,
    ReviewDecision,
    TransferStatus,
    step_id,
)
from workflows.models import HoldAction
from workflows.tests.saga import (
    WAIT_SECONDS_MAX,
    FakeServices,
    business_failure,
    entered,
    eventually,
    new_transfer,
    saga_worker,
    start_transfer,
    transient_failure,
    wait_for_signal_seen,
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


def the_void(fakes: FakeServices) -> HoldAction:
    """The void of the hold names the transfer (its accounts and amount) for the ledger."""
    return the_hold(fakes).model_copy(update={"transfer": fakes.transfer})


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
        assert fakes.calls[:4] == [
            "validate_transfer",
            "place_hold",
            "score_transfer",
            "post_hold",
        ]
        # The event and the outcome report go out side by side, in either order.
        assert sorted(fakes.calls[4:]) == ["publish_event", "report_outcome"]
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
        # Routed to both customers, as accounts named them.
        assert (
            fakes.publications[0].source_customer_id,
            fakes.publications[0].target_customer_id,
        ) == ("customer-source", "customer-target")
        assert all(record.compensates_step is None for record in fakes.records)
        assert [(o.final_status, o.review_decision) for o in fakes.outcomes] == [
            (TransferStatus.completed, None)
        ]
        assert fakes.outcomes[0].transfer == fakes.transfer
        assert fakes.outcomes[0].occurred_at == fakes.records[3].occurred_at  # the posting

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


class TestStepReports:
    """Reports travel in batches: before the pivot, before a wait or a compensation, and at
    the end; never one request per step (BATCHED_STEP_REPORTS)."""

    async def test_completed_in_two_reports(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(new_transfer())
        post = fakes.gate("post_hold")
        async with saga_worker(saga_env, task_queue, fakes):
            handle = await start_transfer(saga_env, task_queue, fakes.transfer)
            await entered(post)
            # Everything before the pivot is reported before the money moves.
            assert fakes.record_batches == [["validate", "hold", "score"]]
            post.released.set()
            await handle.result()

        assert fakes.record_batches == [["validate", "hold", "score"], ["post", "notify"]]
        assert fakes.calls_of("record_step") == 0

    async def test_in_review_reported_before_the_wait(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(new_transfer(), decision=FraudDecision.review)
        async with saga_worker(saga_env, task_queue, fakes):
            handle = await start_transfer(saga_env, task_queue, fakes.transfer)
            await wait_for_status(handle, in_review)
            await eventually(lambda: bool(fakes.record_batches), "the first report")
            assert fakes.record_batches == [["validate", "hold", "score"]]
            assert fakes.records[-1].status is in_review
            await handle.signal(
                SIGNAL_REVIEW_DECISION, ReviewDecision(decision="approve", reviewer_id="r-1")
            )
            await handle.result()

        assert fakes.record_batches[1:] == [["review"], ["post", "notify"]]

    async def test_the_end_reported_before_compensating(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(new_transfer(), decision=FraudDecision.decline)
        void = fakes.gate("void_hold")
        async with saga_worker(saga_env, task_queue, fakes):
            handle = await start_transfer(saga_env, task_queue, fakes.transfer)
            await entered(void)
            # A void may retry for long: the decline is known meanwhile.
            assert fakes.record_batches == [["validate", "hold", "score"]]
            assert fakes.records[-1].status is TransferStatus.declined
            void.released.set()
            await handle.result()

        assert fakes.record_batches[1:] == [["void", "notify"]]

    async def test_nothing_to_compensate_one_report(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(
            new_transfer(), validation_failure=business_failure("account-not-active", "frozen")
        )
        async with saga_worker(saga_env, task_queue, fakes):
            await (await start_transfer(saga_env, task_queue, fakes.transfer)).result()

        assert fakes.record_batches == [["validate", "notify"]]


class TestEventRouting:
    async def test_the_customer_who_asked_wins_over_the_account_owner(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(new_transfer(source_customer_id="customer-from-token"))
        async with saga_worker(saga_env, task_queue, fakes):
            await (await start_transfer(saga_env, task_queue, fakes.transfer)).result()
        [publication] = fakes.publications
        assert (publication.source_customer_id, publication.target_customer_id) == (
            "customer-from-token",
            "customer-target",
        )

    async def test_refused_validation_routes_to_the_customer_who_asked_only(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(
            new_transfer(source_customer_id="customer-from-token"),
            validation_failure=business_failure("account-not-found", "no such account"),
        )
        async with saga_worker(saga_env, task_queue, fakes):
            await (await start_transfer(saga_env, task_queue, fakes.transfer)).result()
        [publication] = fakes.publications
        assert (publication.source_customer_id, publication.target_customer_id) == (
            "customer-from-token",
            None,
        )


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

    @pytest.mark.parametrize(
        ("failing", "activity_name"),
        [("validation_failure", "validate_transfer"), ("hold_failure", "place_hold")],
    )
    async def test_a_ledger_refusal_is_final_even_raised_retryable(
        self, saga_env: WorkflowEnvironment, task_queue: str, failing: str, activity_name: str
    ) -> None:
        # The retry policies, not the activity, keep a refusal final: an activity that
        # forgot `non_retryable` would otherwise retry it (and re-place a refused hold).
        refusal = ApplicationError("sent 5000 of 5000 today", type="daily-outflow-limit-exceeded")
        fakes = FakeServices(new_transfer())
        setattr(fakes, failing, refusal)
        async with saga_worker(saga_env, task_queue, fakes):
            result = await (await start_transfer(saga_env, task_queue, fakes.transfer)).result()

        assert result.status is TransferStatus.rejected
        assert result.failure_reason == "daily-outflow-limit-exceeded: sent 5000 of 5000 today"
        assert fakes.calls_of(activity_name) == 1
        assert fakes.calls_of("void_hold") == 0

    async def test_fraud_service_down_rejects_and_voids(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(new_transfer(), score_failure=transient_failure())
        async with saga_worker(saga_env, task_queue, fakes):
            result = await (await start_transfer(saga_env, task_queue, fakes.transfer)).result()

        assert result.status is TransferStatus.rejected
        assert result.failure_reason == "http-503: service unavailable"
        assert fakes.calls_of("score_transfer") == 10  # bounded: LOOKUP_RETRY.maximum_attempts
        assert fakes.holds_voided == [the_void(fakes)]
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
        assert fakes.calls[:4] == [
            "validate_transfer",
            "place_hold",
            "score_transfer",
            "void_hold",
        ]
        assert sorted(fakes.calls[4:]) == ["publish_event", "report_outcome"]
        assert fakes.holds_voided == [the_void(fakes)]
        assert fakes.steps() == [
            ("validate", "succeeded", pending),
            ("hold", "succeeded", pending),
            ("score", "decline", TransferStatus.declined),
            ("void", "succeeded", TransferStatus.declined),
            ("notify", "succeeded", TransferStatus.declined),
        ]
        assert fakes.records[2].fraud is not None
        assert fakes.records[2].fraud.score == 910
        # The compensation names the step it undoes (the audit trail links the two).
        assert [record.compensates_step for record in fakes.records] == [
            None,
            None,
            None,
            "hold",
            None,
        ]
        assert_versions_strictly_increase(fakes)
        assert fakes.publications[0].type is EventType.transfer_declined
        assert [(o.final_status, o.review_decision) for o in fakes.outcomes] == [
            (TransferStatus.declined, None)
        ]

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
        assert fakes.holds_voided == [the_void(fakes)]
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
        assert [(o.final_status, o.review_decision) for o in fakes.outcomes] == [
            (TransferStatus.completed, "approve")
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
        assert fakes.holds_voided == [the_void(fakes)]
        assert fakes.calls_of("post_hold") == 0
        assert fakes.steps()[2:] == [
            ("score", "review", in_review),
            ("review", "rejected", TransferStatus.declined),
            ("void", "succeeded", TransferStatus.declined),
            ("notify", "succeeded", TransferStatus.declined),
        ]
        assert_versions_strictly_increase(fakes)
        assert [(o.final_status, o.review_decision) for o in fakes.outcomes] == [
            (TransferStatus.declined, "reject")
        ]

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
        assert fakes.holds_voided == [the_void(fakes)]
        assert fakes.calls_of("post_hold") == 0
        assert fakes.steps()[2:] == [
            ("score", "review", in_review),
            ("review", "timed_out", TransferStatus.expired),
            ("void", "succeeded", TransferStatus.expired),
            ("notify", "succeeded", TransferStatus.expired),
        ]
        assert_versions_strictly_increase(fakes)
        assert fakes.publications[-1].type is EventType.transfer_expired
        assert [(o.final_status, o.review_decision) for o in fakes.outcomes] == [
            (TransferStatus.expired, None)
        ]

    async def test_decision_before_review_is_ignored(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(
            new_transfer(review_timeout_seconds=600), decision=FraudDecision.review
        )
        # Gated in an activity, not a local one: the workflow sees the signal at once.
        hold = fakes.gate("place_hold")
        async with saga_worker(saga_env, task_queue, fakes):
            handle = await start_transfer(saga_env, task_queue, fakes.transfer)
            await entered(hold)
            await handle.signal(
                SIGNAL_REVIEW_DECISION, ReviewDecision(decision="approve", reviewer_id="early")
            )
            await wait_for_signal_seen(handle)
            hold.released.set()
            result = await handle.result()

        assert result.status is TransferStatus.expired
        assert fakes.calls_of("post_hold") == 0


class TestCancelSignal:
    async def test_between_steps_voids_the_hold(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(new_transfer())
        hold = fakes.gate("place_hold")
        async with saga_worker(saga_env, task_queue, fakes):
            handle = await start_transfer(saga_env, task_queue, fakes.transfer)
            await entered(hold)
            await handle.signal(SIGNAL_CANCEL, CancelRequest(reason="changed my mind"))
            await wait_for_signal_seen(handle)
            hold.released.set()
            result = await handle.result()
            await assert_search_attributes(handle, TransferStatus.cancelled, None)

        assert result.status is TransferStatus.cancelled
        assert result.failure_reason == "cancelled: changed my mind"
        assert fakes.holds_voided == [the_void(fakes)]
        assert fakes.calls_of("score_transfer") == 0
        assert fakes.calls_of("post_hold") == 0
        # The hold in flight when the cancel arrived finishes and is recorded; the cancel is
        # honoured right after it.
        assert fakes.steps() == [
            ("validate", "succeeded", pending),
            ("hold", "succeeded", pending),
            ("cancel", "requested", TransferStatus.cancelled),
            ("void", "succeeded", TransferStatus.cancelled),
            ("notify", "succeeded", TransferStatus.cancelled),
        ]
        assert_versions_strictly_increase(fakes)
        assert fakes.publications[-1].type is EventType.transfer_cancelled
        assert fakes.outcomes == []  # never scored: nothing for the fraud service to learn

    async def test_before_the_hold_needs_no_void(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(new_transfer())
        # Cancelled before any worker picks the transfer up: the first workflow task sees it.
        handle = await start_transfer(saga_env, task_queue, fakes.transfer)
        await handle.signal(SIGNAL_CANCEL, CancelRequest())
        async with saga_worker(saga_env, task_queue, fakes):
            result = await handle.result()

        assert result.status is TransferStatus.cancelled
        assert result.failure_reason == "cancelled"
        # Seen before the first step (CANCEL_BEFORE_VALIDATE): no service is asked anything.
        assert fakes.calls == ["publish_event"]
        assert fakes.steps() == [
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
        assert fakes.holds_voided == [the_void(fakes)]
        assert fakes.steps()[2:] == [
            ("score", "review", in_review),
            ("cancel", "requested", TransferStatus.cancelled),
            ("void", "succeeded", TransferStatus.cancelled),
            ("notify", "succeeded", TransferStatus.cancelled),
        ]
        assert_versions_strictly_increase(fakes)
        assert [(o.final_status, o.review_decision) for o in fakes.outcomes] == [
            (TransferStatus.cancelled, None)
        ]

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


class TestCancelUpdate:
    """`request_cancel`, behind `POST /v1/transfers/{id}/cancel`: answered synchronously."""

    async def test_during_review_is_accepted_and_honoured(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(new_transfer(), decision=FraudDecision.review)
        async with saga_worker(saga_env, task_queue, fakes):
            handle = await start_transfer(saga_env, task_queue, fakes.transfer)
            await wait_for_status(handle, in_review)
            answer = await handle.execute_update(
                UPDATE_CANCEL, CancelRequest(reason="wrong payee"), result_type=CancelResult
            )
            result = await handle.result()
            await assert_search_attributes(handle, TransferStatus.cancelled, FraudDecision.review)

        assert answer == CancelResult(accepted=True, status=in_review)
        assert result.status is TransferStatus.cancelled
        assert result.failure_reason == "cancelled: wrong payee"
        assert fakes.holds_voided == [the_void(fakes)]
        assert fakes.calls_of("post_hold") == 0
        assert fakes.steps()[2:] == [
            ("score", "review", in_review),
            ("cancel", "requested", TransferStatus.cancelled),
            ("void", "succeeded", TransferStatus.cancelled),
            ("notify", "succeeded", TransferStatus.cancelled),
        ]
        assert_versions_strictly_increase(fakes)

    async def test_while_the_hold_is_placed_voids_it(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(new_transfer())
        hold = fakes.gate("place_hold")
        async with saga_worker(saga_env, task_queue, fakes):
            handle = await start_transfer(saga_env, task_queue, fakes.transfer)
            await entered(hold)
            answer = await handle.execute_update(
                UPDATE_CANCEL, CancelRequest(), result_type=CancelResult
            )
            hold.released.set()
            result = await handle.result()

        assert answer == CancelResult(accepted=True, status=pending)
        assert result.status is TransferStatus.cancelled
        assert fakes.calls == ["validate_transfer", "place_hold", "void_hold", "publish_event"]
        assert fakes.holds_voided == [the_void(fakes)]

    async def test_repeated_gets_the_same_answer_and_cancels_once(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(new_transfer(), decision=FraudDecision.review)
        async with saga_worker(saga_env, task_queue, fakes):
            handle = await start_transfer(saga_env, task_queue, fakes.transfer)
            await wait_for_status(handle, in_review)
            answers = [
                await handle.execute_update(
                    UPDATE_CANCEL, CancelRequest(reason=reason), result_type=CancelResult
                )
                for reason in ("first", "second")
            ]
            result = await handle.result()

        assert answers[0] == CancelResult(accepted=True, status=in_review)
        # The second finds the first being honoured (still in review, or cancelled by now).
        assert answers[1].accepted
        assert answers[1].status in (in_review, TransferStatus.cancelled)
        assert result.failure_reason == "cancelled: first"
        assert fakes.holds_voided == [the_void(fakes)]
        assert [step for step, _, _ in fakes.steps()].count("cancel") == 1

    async def test_after_the_pivot_is_refused(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(new_transfer())
        post = fakes.gate("post_hold")
        async with saga_worker(saga_env, task_queue, fakes):
            handle = await start_transfer(saga_env, task_queue, fakes.transfer)
            await entered(post)
            with pytest.raises(WorkflowUpdateFailedError) as refusal:
                await handle.execute_update(
                    UPDATE_CANCEL, CancelRequest(reason="too late"), result_type=CancelResult
                )
            post.released.set()
            result = await handle.result()
            history = await handle.fetch_history()

        assert isinstance(refusal.value.cause, ApplicationError)
        assert refusal.value.cause.type == "transfer-not-cancellable"
        assert result.status is TransferStatus.completed
        assert fakes.holds_posted == [the_hold(fakes)]
        assert fakes.calls_of("void_hold") == 0
        assert "cancel" not in [step for step, _, _ in fakes.steps()]
        # The validator refused it: the refusal leaves no trace in the workflow's history.
        assert not [
            event
            for event in history.events
            if event.event_type == EventType_.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
        ]

    async def test_after_the_transfer_ended_otherwise_is_not_accepted(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(new_transfer(), decision=FraudDecision.decline)
        void = fakes.gate("void_hold")
        async with saga_worker(saga_env, task_queue, fakes):
            handle = await start_transfer(saga_env, task_queue, fakes.transfer)
            await entered(void)
            answer = await handle.execute_update(
                UPDATE_CANCEL, CancelRequest(), result_type=CancelResult
            )
            void.released.set()
            result = await handle.result()

        assert answer == CancelResult(accepted=False, status=TransferStatus.declined)
        assert result.status is TransferStatus.declined
        assert result.failure_reason is not None
        assert result.failure_reason.startswith("fraud-declined")
        assert fakes.holds_voided == [the_void(fakes)]


class TestCancelBeforeStart:
    """A future-dated transfer's workflow waits out its start delay; the cancel update
    starts it at once, and the saga ends it before its first step, announced."""

    async def test_ends_cancelled_before_validating(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(new_transfer(source_customer_id="customer-source"))
        async with saga_worker(saga_env, task_queue, fakes):
            handle = await start_transfer(
                saga_env, task_queue, fakes.transfer, start_delay=timedelta(hours=1)
            )
            answer = await handle.execute_update(
                UPDATE_CANCEL, CancelRequest(reason="changed my mind"), result_type=CancelResult
            )
            result = await handle.result()
            await assert_search_attributes(handle, TransferStatus.cancelled, None)

        assert answer == CancelResult(accepted=True, status=pending)
        assert result.status is TransferStatus.cancelled
        assert result.failure_reason == "cancelled: changed my mind"
        # No service was asked anything and no money was held: only the announcement.
        assert fakes.calls == ["publish_event"]
        assert fakes.steps() == [
            ("cancel", "requested", TransferStatus.cancelled),
            ("notify", "succeeded", TransferStatus.cancelled),
        ]
        assert_versions_strictly_increase(fakes)
        (publication,) = fakes.publications
        assert publication.type is EventType.transfer_cancelled
        assert publication.failure_reason == "cancelled: changed my mind"
        assert publication.source_customer_id == "customer-source"

    async def test_on_the_dev_server_the_update_starts_the_delayed_workflow(
        self, temporal_dev_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        """What the time-skipping server shows, checked on the real server: an update to a
        workflow inside its start delay is delivered at once, in its first workflow task."""
        fakes = FakeServices(new_transfer())
        async with saga_worker(temporal_dev_env, task_queue, fakes):
            handle = await start_transfer(
                temporal_dev_env, task_queue, fakes.transfer, start_delay=timedelta(hours=1)
            )
            answer = await handle.execute_update(
                UPDATE_CANCEL, CancelRequest(), result_type=CancelResult
            )
            result = await asyncio.wait_for(handle.result(), WAIT_SECONDS_MAX)

        assert answer == CancelResult(accepted=True, status=pending)
        assert result.status is TransferStatus.cancelled
        assert fakes.calls == ["publish_event"]

    async def test_on_the_dev_server_a_signal_does_not_start_it(
        self, temporal_dev_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        """Why the cancel is an update (decision 0034): a signal waits out the delay."""
        fakes = FakeServices(new_transfer())
        async with saga_worker(temporal_dev_env, task_queue, fakes):
            handle = await start_transfer(
                temporal_dev_env, task_queue, fakes.transfer, start_delay=timedelta(hours=1)
            )
            await handle.signal(SIGNAL_CANCEL, CancelRequest())
            history = await handle.fetch_history()
            await handle.terminate(reason="test over")

        assert [event.event_type for event in history.events] == [
            EventType_.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
            EventType_.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
        ]
        assert fakes.calls == []


class TestOutcomeReport:
    async def test_trouble_never_changes_the_outcome(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(new_transfer(), outcome_always_fails=True)
        async with saga_worker(saga_env, task_queue, fakes):
            result = await (await start_transfer(saga_env, task_queue, fakes.transfer)).result()

        assert result.status is TransferStatus.completed
        assert fakes.calls_of("report_outcome") == 5  # bounded: OUTCOME_RETRY.maximum_attempts
        assert fakes.holds_posted == [the_hold(fakes)]
        assert fakes.calls_of("void_hold") == 0
        assert fakes.steps()[-1] == ("notify", "succeeded", TransferStatus.completed)

    async def test_unscored_transfer_reports_nothing(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(
            new_transfer(),
            hold_failure=business_failure("insufficient-funds", "available 100, needed 125000"),
        )
        async with saga_worker(saga_env, task_queue, fakes):
            result = await (await start_transfer(saga_env, task_queue, fakes.transfer)).result()

        assert result.status is TransferStatus.rejected
        assert fakes.calls_of("report_outcome") == 0


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
        assert fakes.holds_voided == [the_void(fakes)]
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
        assert fakes.holds_voided == [the_void(fakes)]
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
