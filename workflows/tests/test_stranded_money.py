"""The saga leaves no money at the edges: its hold carries a deadline, a refused hold whose
earlier attempts may still land is voided anyway, a hold that expired before the post ends the
transfer `expired`, and a saga started past its start deadline moves no money."""

from datetime import timedelta

from temporalio.testing import WorkflowEnvironment

from contracts.accounts import AccountsProblem
from contracts.notifications import EventType
from contracts.transfers import TransferStatus, step_id
from workflows.models import HoldAction
from workflows.tests.saga import (
    FAKE_TIME,
    FakeServices,
    business_failure,
    new_transfer,
    saga_worker,
    start_transfer,
)

pending = TransferStatus.pending
rejected = TransferStatus.rejected


def void_of_the_hold(fakes: FakeServices) -> HoldAction:
    transfer_id = fakes.transfer.transfer_id
    return HoldAction(
        transfer_id=transfer_id, hold_id=step_id(transfer_id, "hold"), transfer=fakes.transfer
    )


class TestHoldDeadline:
    async def test_the_hold_asks_for_the_deadline_transactions_computed(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(new_transfer(hold_timeout_seconds=90_000))
        async with saga_worker(saga_env, task_queue, fakes):
            result = await (await start_transfer(saga_env, task_queue, fakes.transfer)).result()
        assert result.status is TransferStatus.completed
        assert [hold.hold_timeout_seconds for hold in fakes.hold_inputs] == [90_000]


class TestRefusedAfterEarlierAttempts:
    async def test_the_hold_is_voided_anyway(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        """The first attempt timed out and may still commit; the second was refused. The
        saga voids the hold id, so the ledger refuses the late attempt (or releases it)."""
        fakes = FakeServices(
            new_transfer(),
            hold_transient_failures=1,
            hold_failure=business_failure("insufficient-funds", "available 100, needed 125000"),
        )
        async with saga_worker(saga_env, task_queue, fakes):
            result = await (await start_transfer(saga_env, task_queue, fakes.transfer)).result()

        assert result.status is rejected
        assert result.failure_reason == "insufficient-funds: available 100, needed 125000"
        assert fakes.calls_of("place_hold") == 2
        assert fakes.holds_voided == [void_of_the_hold(fakes)]
        assert fakes.steps() == [
            ("validate", "succeeded", pending),
            ("hold", "failed", rejected),
            ("void", "succeeded", rejected),
            ("notify", "succeeded", rejected),
        ]
        void = fakes.records[2]
        assert void.compensates_step == "hold"
        assert fakes.publications[-1].type is EventType.transfer_rejected

    async def test_a_first_refusal_voids_nothing(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        """No attempt came before the refusal, so no hold can land after it."""
        fakes = FakeServices(
            new_transfer(),
            hold_failure=business_failure("insufficient-funds", "available 100, needed 125000"),
        )
        async with saga_worker(saga_env, task_queue, fakes):
            result = await (await start_transfer(saga_env, task_queue, fakes.transfer)).result()
        assert result.status is rejected
        assert fakes.holds_voided == []
        assert fakes.calls_of("void_hold") == 0


class TestHoldExpiredBeforeThePost:
    async def test_ends_expired_and_voids_nothing(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(
            new_transfer(),
            post_failure=business_failure(
                AccountsProblem.pending_transfer_expired, "expired at 12:00"
            ),
        )
        async with saga_worker(saga_env, task_queue, fakes):
            result = await (await start_transfer(saga_env, task_queue, fakes.transfer)).result()

        assert result.status is TransferStatus.expired
        assert result.failure_reason == "pending-transfer-expired: expired at 12:00"
        assert fakes.holds_posted == []
        assert fakes.calls_of("void_hold") == 0
        assert fakes.steps()[-2:] == [
            ("post", "failed", TransferStatus.expired),
            ("notify", "succeeded", TransferStatus.expired),
        ]
        assert fakes.publications[-1].type is EventType.transfer_expired
        assert [outcome.final_status for outcome in fakes.outcomes] == [TransferStatus.expired]


class TestStartDeadline:
    async def test_a_saga_started_too_late_moves_no_money(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        fakes = FakeServices(new_transfer(start_deadline=FAKE_TIME))
        async with saga_worker(saga_env, task_queue, fakes):
            result = await (await start_transfer(saga_env, task_queue, fakes.transfer)).result()

        assert result.status is rejected
        assert result.failure_reason is not None
        assert result.failure_reason.startswith("not-started: ")
        assert fakes.calls == ["publish_event"]
        assert fakes.steps() == [
            ("start", "timed_out", rejected),
            ("notify", "succeeded", rejected),
        ]
        assert fakes.publications[0].type is EventType.transfer_rejected

    async def test_a_saga_started_in_time_goes_ahead(
        self, saga_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        # The time-skipping server's clock runs ahead of ours (other tests skip time).
        in_a_day = await saga_env.get_current_time() + timedelta(days=1)
        fakes = FakeServices(new_transfer(start_deadline=in_a_day))
        async with saga_worker(saga_env, task_queue, fakes):
            result = await (await start_transfer(saga_env, task_queue, fakes.transfer)).result()
        assert result.status is TransferStatus.completed
