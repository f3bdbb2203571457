"""ReversalWorkflow on Temporal's time-skipping server, with the services faked per test.

Which reversals may start (the amount left to reverse, concurrent requests) is the
transactions service's rule, tested there; the saga moves what it is given, once.
"""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts.accounts import AccountsProblem
from contracts.notifications import EventType
from contracts.reversals import (
    ReversalWorkflowInput,
    ReversalWorkflowResult,
    reversal_workflow_id,
)
from contracts.transfers import TransferStatus, step_id
from workflows.models import HoldAction
from workflows.reversal import ORIGINAL_TRANSFER_KEY, ReversalWorkflow
from workflows.tests.saga import FAKE_TIME, FakeServices, business_failure
from workflows.transfer import STATUS_ATTRIBUTE, TransferWorkflow
from workflows.worker import WORKFLOW_RUNNER

PAYEE_ACCOUNT_ID = uuid.uuid4()
PAYER_ACCOUNT_ID = uuid.uuid4()


def new_reversal(**overrides: Any) -> ReversalWorkflowInput:
    values: dict[str, Any] = {
        "reversal_id": uuid.uuid4(),
        "original_transfer_id": uuid.uuid4(),
        "source_account_id": PAYEE_ACCOUNT_ID,
        "target_account_id": PAYER_ACCOUNT_ID,
        "amount_minor": 125_000,
        "currency": "EUR",
        "reason": "refund: goods returned",
        "source_customer_id": "customer-payee",
    }
    values.update(overrides)
    return ReversalWorkflowInput(**values)


@asynccontextmanager
async def reversal_worker(
    env: WorkflowEnvironment, task_queue: str, fakes: FakeServices
) -> AsyncIterator[Worker]:
    """A worker as production runs it (both sagas) with the fake activities."""
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[TransferWorkflow, ReversalWorkflow],
        activities=fakes.activities(),
        workflow_runner=WORKFLOW_RUNNER,
    ) as worker:
        yield worker


async def start_reversal(
    env: WorkflowEnvironment, task_queue: str, reversal: ReversalWorkflowInput
) -> WorkflowHandle[ReversalWorkflow, ReversalWorkflowResult]:
    """Start the reversal saga the way the transactions service does."""
    return await env.client.start_workflow(
        ReversalWorkflow.run,
        reversal,
        id=reversal_workflow_id(reversal.reversal_id),
        task_queue=task_queue,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(STATUS_ATTRIBUTE, "pending"),
                SearchAttributePair(ORIGINAL_TRANSFER_KEY, str(reversal.original_transfer_id)),
            ]
        ),
    )


async def run_reversal(
    env: WorkflowEnvironment, task_queue: str, fakes: FakeServices, reversal: ReversalWorkflowInput
) -> tuple[ReversalWorkflowResult, WorkflowHandle[ReversalWorkflow, ReversalWorkflowResult]]:
    async with reversal_worker(env, task_queue, fakes):
        handle = await start_reversal(env, task_queue, reversal)
        return await handle.result(), handle


def fakes_for(reversal: ReversalWorkflowInput, **overrides: Any) -> FakeServices:
    return FakeServices(reversal.as_transfer(), **overrides)


def the_hold(reversal: ReversalWorkflowInput) -> HoldAction:
    return HoldAction(
        transfer_id=reversal.reversal_id, hold_id=step_id(reversal.reversal_id, "hold")
    )


class TestFullReversal:
    async def test_moves_the_whole_amount_back_from_the_payee(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        reversal = new_reversal()
        fakes = fakes_for(reversal)
        result, handle = await run_reversal(saga_env, task_queue, fakes, reversal)

        assert result.status is TransferStatus.completed
        assert result.original_transfer_id == reversal.original_transfer_id
        assert fakes.calls == ["validate_transfer", "place_hold", "post_hold", "publish_event"]
        # The hold is on the payee's account, in the reversal's own deterministic ids.
        (hold_input,) = fakes.hold_inputs
        assert hold_input.transfer_id == reversal.reversal_id
        assert hold_input.source_account_id == PAYEE_ACCOUNT_ID
        assert hold_input.target_account_id == PAYER_ACCOUNT_ID
        assert hold_input.amount_minor == 125_000
        assert fakes.holds_posted == [the_hold(reversal)]
        assert fakes.steps() == [
            ("validate", "succeeded", TransferStatus.pending),
            ("hold", "succeeded", TransferStatus.pending),
            ("post", "succeeded", TransferStatus.completed),
            ("notify", "succeeded", TransferStatus.completed),
        ]
        (publication,) = fakes.publications
        assert publication.type is EventType.transfer_reversed
        assert publication.original_transfer_id == reversal.original_transfer_id
        assert publication.source_customer_id == "customer-payee"
        attributes = (await handle.describe()).typed_search_attributes
        assert attributes.get(STATUS_ATTRIBUTE) == "completed"
        assert attributes.get(ORIGINAL_TRANSFER_KEY) == str(reversal.original_transfer_id)


class TestPartialReversal:
    async def test_holds_and_posts_only_the_amount_asked(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        reversal = new_reversal(amount_minor=40_000)
        fakes = fakes_for(reversal)
        result, _handle = await run_reversal(saga_env, task_queue, fakes, reversal)

        assert result.status is TransferStatus.completed
        assert [hold.amount_minor for hold in fakes.hold_inputs] == [40_000]

    async def test_several_partials_each_move_their_own_money_once(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        original_transfer_id = uuid.uuid4()
        holds: list[uuid.UUID] = []
        for amount_minor in (50_000, 50_000, 25_000):
            reversal = new_reversal(
                original_transfer_id=original_transfer_id, amount_minor=amount_minor
            )
            fakes = fakes_for(reversal)
            result, _handle = await run_reversal(saga_env, task_queue, fakes, reversal)
            assert result.status is TransferStatus.completed
            holds.extend(action.hold_id for action in fakes.holds_posted)
        # Each partial has its own ledger ids: none is mistaken for a retry of another.
        assert len(set(holds)) == 3


class TestPayeeWithoutFunds:
    async def test_rejected_and_nothing_moves(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        reversal = new_reversal()
        fakes = fakes_for(
            reversal,
            hold_failure=business_failure(AccountsProblem.insufficient_funds, "not enough"),
        )
        result, _handle = await run_reversal(saga_env, task_queue, fakes, reversal)

        assert result.status is TransferStatus.rejected
        assert result.failure_reason is not None
        assert result.failure_reason.startswith("insufficient-funds")
        assert fakes.holds_posted == []
        assert fakes.holds_voided == []
        assert fakes.steps() == [
            ("validate", "succeeded", TransferStatus.pending),
            ("hold", "failed", TransferStatus.rejected),
            ("notify", "succeeded", TransferStatus.rejected),
        ]
        (publication,) = fakes.publications
        assert publication.type is EventType.transfer_reversal_failed
        assert publication.original_transfer_id == reversal.original_transfer_id


class TestCompensation:
    async def test_a_hold_refused_after_earlier_attempts_is_voided(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        reversal = new_reversal()
        fakes = fakes_for(
            reversal,
            hold_transient_failures=1,
            hold_failure=business_failure(AccountsProblem.insufficient_funds, "not enough"),
        )
        result, _handle = await run_reversal(saga_env, task_queue, fakes, reversal)

        assert result.status is TransferStatus.rejected
        # The first attempt may still land: the void names it, and the reversal's terms.
        void = the_hold(reversal).model_copy(update={"transfer": reversal.as_transfer()})
        assert fakes.holds_voided == [void]
        assert ("void", "succeeded", TransferStatus.rejected) in fakes.steps()

    async def test_a_failing_post_is_retried_until_it_posts(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        reversal = new_reversal()
        fakes = fakes_for(reversal, post_transient_failures=3)
        result, _handle = await run_reversal(saga_env, task_queue, fakes, reversal)

        assert result.status is TransferStatus.completed
        assert fakes.calls_of("post_hold") == 4
        assert fakes.holds_posted == [the_hold(reversal)]
        assert fakes.holds_voided == []

    async def test_a_post_refused_for_good_ends_expired_and_announces_the_failure(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        reversal = new_reversal()
        fakes = fakes_for(
            reversal,
            post_failure=business_failure(
                AccountsProblem.pending_transfer_expired, "the hold expired"
            ),
        )
        result, _handle = await run_reversal(saga_env, task_queue, fakes, reversal)

        assert result.status is TransferStatus.expired
        # The ledger released the hold itself: nothing is left to void.
        assert fakes.holds_voided == []
        assert [publication.type for publication in fakes.publications] == [
            EventType.transfer_reversal_failed
        ]


class TestValidation:
    async def test_a_refused_validation_rejects_before_any_hold(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        reversal = new_reversal()
        fakes = fakes_for(
            reversal,
            validation_failure=business_failure(AccountsProblem.account_not_found, "gone"),
        )
        result, _handle = await run_reversal(saga_env, task_queue, fakes, reversal)

        assert result.status is TransferStatus.rejected
        assert "place_hold" not in fakes.calls


class TestStartDeadline:
    async def test_a_reversal_started_too_late_moves_no_money(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        reversal = new_reversal(start_deadline=FAKE_TIME)
        fakes = fakes_for(reversal)
        result, _handle = await run_reversal(saga_env, task_queue, fakes, reversal)

        assert result.status is TransferStatus.rejected
        assert result.failure_reason is not None
        assert result.failure_reason.startswith("not-started: ")
        assert fakes.calls == ["publish_event"]
        assert fakes.steps() == [
            ("start", "timed_out", TransferStatus.rejected),
            ("notify", "succeeded", TransferStatus.rejected),
        ]
