"""Replay: the current TransferWorkflow must reproduce the commands of recorded histories.

`histories/` holds one recorded history per path of the saga. A change that would make a
running transfer take a different path on replay (nondeterminism) fails here; make such a
change behind `workflow.patched(...)`, move these files to a folder of their own beside
them, which keep replaying on the old path, and record the new ones: run this module with
SAGABANK_RECORD_HISTORIES=1 and commit what it writes. `histories/single-step-reports/`
holds the histories from before BATCHED_STEP_REPORTS.
"""

import asyncio
import base64
import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import (
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowHistory,
    WorkflowUpdateFailedError,
)
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from contracts.fraud import FraudDecision
from contracts.transfers import (
    SIGNAL_CANCEL,
    SIGNAL_REVIEW_DECISION,
    UPDATE_CANCEL,
    CancelRequest,
    CancelResult,
    ReviewDecision,
    TransferStatus,
)
from kit.payloads import ENCODING
from kit.testing import converter_for_tests
from workflows.tests.saga import (
    FakeServices,
    business_failure,
    entered,
    new_transfer,
    saga_worker,
    start_transfer,
    wait_for_signal_seen,
    wait_for_status,
)
from workflows.transfer import BATCHED_STEP_REPORTS, CANCEL_BEFORE_VALIDATE, TransferWorkflow

HISTORIES_PATH = Path(__file__).parent / "histories"
CURRENT_HISTORIES = sorted(HISTORIES_PATH.glob("*.json"))
# Recorded before BATCHED_STEP_REPORTS, by transfers that still replay on the old path.
SINGLE_REPORT_HISTORIES = sorted((HISTORIES_PATH / "single-step-reports").glob("*.json"))
# Recorded before CANCEL_BEFORE_VALIDATE: a cancel that woke a delayed workflow validated first.
VALIDATED_BEFORE_CANCEL_HISTORIES = sorted(
    (HISTORIES_PATH / "validated-before-cancel").glob("*.json")
)
COMMITTED_HISTORIES = (
    CURRENT_HISTORIES + SINGLE_REPORT_HISTORIES + VALIDATED_BEFORE_CANCEL_HISTORIES
)
# Paths added after batching, which have no history from before it.
PATHS_SINCE_BATCHING = frozenset({"transfer_cancelled_before_start"})

Handle = WorkflowHandle[Any, Any]
Drive = Callable[[Handle, FakeServices], Awaitable[None]]


async def no_driving(handle: Handle, fakes: FakeServices) -> None:
    """The services' answers alone decide the path."""


async def approve(handle: Handle, fakes: FakeServices) -> None:
    await wait_for_status(handle, TransferStatus.in_review)
    await handle.signal(
        SIGNAL_REVIEW_DECISION, ReviewDecision(decision="approve", reviewer_id="r-1")
    )


async def reject(handle: Handle, fakes: FakeServices) -> None:
    await wait_for_status(handle, TransferStatus.in_review)
    await handle.signal(
        SIGNAL_REVIEW_DECISION, ReviewDecision(decision="reject", reviewer_id="r-1", note="no")
    )


async def cancel_in_review(handle: Handle, fakes: FakeServices) -> None:
    await wait_for_status(handle, TransferStatus.in_review)
    answer = await handle.execute_update(
        UPDATE_CANCEL, CancelRequest(reason="wrong payee"), result_type=CancelResult
    )
    assert answer.accepted


async def cancel_during_hold(handle: Handle, fakes: FakeServices) -> None:
    hold = fakes.gate("place_hold")
    await entered(hold)
    await handle.signal(SIGNAL_CANCEL, CancelRequest(reason="changed my mind"))
    await wait_for_signal_seen(handle)
    hold.released.set()


async def cancel_after_pivot(handle: Handle, fakes: FakeServices) -> None:
    post = fakes.gate("post_hold")
    await entered(post)
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(UPDATE_CANCEL, CancelRequest(), result_type=CancelResult)
    # The refused update leaves no trace; the signal, ignored, is in the history.
    await handle.signal(SIGNAL_CANCEL, CancelRequest(reason="too late"))
    await wait_for_signal_seen(handle)
    post.released.set()


async def cancel_before_start(handle: Handle, fakes: FakeServices) -> None:
    """The update that wakes a future-dated transfer's delayed workflow."""
    answer = await handle.execute_update(
        UPDATE_CANCEL, CancelRequest(reason="changed my mind"), result_type=CancelResult
    )
    assert answer.accepted


async def cancel_workflow_in_review(handle: Handle, fakes: FakeServices) -> None:
    await wait_for_status(handle, TransferStatus.in_review)
    await handle.cancel()


@dataclass(frozen=True)
class SagaPath:
    """One path of the saga: how the fake services answer and what the test does meanwhile."""

    name: str
    status: TransferStatus
    services: dict[str, Any] = field(default_factory=dict)
    drive: Drive = no_driving
    gates: tuple[str, ...] = ()
    start_delay: timedelta | None = None


PATHS = [
    SagaPath("transfer_completed", TransferStatus.completed),
    SagaPath(
        "transfer_validation_failed",
        TransferStatus.rejected,
        {"validation_failure": business_failure("account-not-active", "frozen")},
    ),
    SagaPath(
        "transfer_insufficient_funds",
        TransferStatus.rejected,
        {"hold_failure": business_failure("insufficient-funds", "available 100")},
    ),
    SagaPath("transfer_declined", TransferStatus.declined, {"decision": FraudDecision.decline}),
    SagaPath(
        "transfer_review_approved",
        TransferStatus.completed,
        {"decision": FraudDecision.review},
        approve,
    ),
    SagaPath(
        "transfer_review_rejected",
        TransferStatus.declined,
        {"decision": FraudDecision.review},
        reject,
    ),
    SagaPath("transfer_review_expired", TransferStatus.expired, {"decision": FraudDecision.review}),
    SagaPath(
        "transfer_cancelled_in_review",
        TransferStatus.cancelled,
        {"decision": FraudDecision.review},
        cancel_in_review,
    ),
    SagaPath(
        "transfer_cancelled_during_hold",
        TransferStatus.cancelled,
        drive=cancel_during_hold,
        gates=("place_hold",),
    ),
    SagaPath(
        "transfer_cancel_refused_after_pivot",
        TransferStatus.completed,
        drive=cancel_after_pivot,
        gates=("post_hold",),
    ),
    SagaPath(
        "transfer_cancelled_before_start",
        TransferStatus.cancelled,
        drive=cancel_before_start,
        start_delay=timedelta(hours=1),
    ),
    SagaPath(
        "transfer_workflow_cancelled",
        TransferStatus.cancelled,
        {"decision": FraudDecision.review},
        cancel_workflow_in_review,
    ),
    SagaPath("transfer_posting_retried", TransferStatus.completed, {"post_transient_failures": 3}),
    SagaPath(
        "transfer_notification_failed", TransferStatus.completed, {"publish_always_fails": True}
    ),
    SagaPath(
        "transfer_void_retried",
        TransferStatus.declined,
        {"decision": FraudDecision.decline, "void_transient_failures": 4},
    ),
    SagaPath(
        "transfer_outcome_unreported", TransferStatus.completed, {"outcome_always_fails": True}
    ),
]


def _is_sealed(payload: dict[str, Any]) -> bool:
    encoding = payload.get("metadata", {}).get("encoding", "")
    return bool(base64.b64decode(encoding) == ENCODING)


def markers(path: Path) -> tuple[set[str], set[str]]:
    """The patch ids and the local activity types a committed history's markers name."""
    patches: set[str] = set()
    local_activities: set[str] = set()
    for event in json.loads(path.read_text())["events"]:
        marker = event.get("markerRecordedEventAttributes")
        if marker is None:
            continue
        for payloads in marker.get("details", {}).values():
            for payload in payloads["payloads"]:
                if "data" not in payload:  # None, encoded as metadata alone
                    continue
                if _is_sealed(payload):  # a local activity's result; its type is in `data`
                    continue
                data = json.loads(base64.b64decode(payload["data"]))
                if marker["markerName"] == "core_patch":
                    patches.add(data["id"])
                elif isinstance(data, dict) and "activity_type" in data:
                    local_activities.add(data["activity_type"])
    return patches, local_activities


def replayer() -> Replayer:
    """The worker's converter, payload codec included: histories recorded before the codec
    replay through it too (it passes unsealed payloads through)."""
    return Replayer(workflows=[TransferWorkflow], data_converter=converter_for_tests())


async def record(
    env: WorkflowEnvironment, task_queue: str, path: SagaPath
) -> tuple[TransferStatus, WorkflowHistory]:
    fakes = FakeServices(new_transfer(), **path.services)
    for gate in path.gates:
        fakes.gate(gate)
    async with saga_worker(env, task_queue, fakes):
        handle = await start_transfer(env, task_queue, fakes.transfer, start_delay=path.start_delay)
        await path.drive(handle, fakes)
        try:
            status = (await handle.result()).status
        except WorkflowFailureError:
            # A Temporal cancellation closes the workflow as Canceled once it has compensated.
            status = TransferStatus.cancelled
        history = await handle.fetch_history()
    return status, history


class TestReplay:
    @pytest.mark.parametrize("path", PATHS, ids=lambda path: path.name)
    async def test_fresh_history_replays(
        self, saga_env: WorkflowEnvironment, task_queue: str, path: SagaPath
    ) -> None:
        ended, history = await record(saga_env, task_queue, path)
        assert ended is path.status
        await replayer().replay_workflow(history)
        if os.environ.get("SAGABANK_RECORD_HISTORIES") == "1":
            target = HISTORIES_PATH / f"{path.name}.json"
            await asyncio.to_thread(target.write_text, history.to_json() + "\n")

    def test_every_path_has_a_committed_history(self) -> None:
        assert {path.stem for path in CURRENT_HISTORIES} == {path.name for path in PATHS}
        assert {path.stem for path in SINGLE_REPORT_HISTORIES} == {
            path.name for path in PATHS if path.name not in PATHS_SINCE_BATCHING
        }
        assert {path.stem for path in VALIDATED_BEFORE_CANCEL_HISTORIES} == {
            "transfer_cancelled_before_start"
        }

    @pytest.mark.parametrize(
        "path", COMMITTED_HISTORIES, ids=lambda path: f"{path.parent.name}/{path.stem}"
    )
    def test_each_history_took_the_report_path_of_its_time(self, path: Path) -> None:
        """The current histories send their reports in batches, the older ones one by one,
        so the replays below cover both sides of `workflow.patched(BATCHED_STEP_REPORTS)`."""
        patches, local_activities = markers(path)
        batched = path not in SINGLE_REPORT_HISTORIES
        assert (BATCHED_STEP_REPORTS in patches) is batched
        assert ("record_steps" in local_activities) is batched
        assert ("record_step" in local_activities) is not batched

    def test_a_cancel_before_start_took_the_path_of_its_time(self) -> None:
        """The current history ends before validating, the older one validated first, so the
        replays below cover both sides of `workflow.patched(CANCEL_BEFORE_VALIDATE)`."""
        (current,) = [p for p in CURRENT_HISTORIES if p.stem == "transfer_cancelled_before_start"]
        (older,) = VALIDATED_BEFORE_CANCEL_HISTORIES
        current_patches, current_local_activities = markers(current)
        older_patches, older_local_activities = markers(older)
        assert CANCEL_BEFORE_VALIDATE in current_patches
        assert "validate_transfer" not in current_local_activities
        assert CANCEL_BEFORE_VALIDATE not in older_patches
        assert "validate_transfer" in older_local_activities

    @pytest.mark.parametrize(
        "path", COMMITTED_HISTORIES, ids=lambda path: f"{path.parent.name}/{path.stem}"
    )
    async def test_committed_history_replays(self, path: Path) -> None:
        history = WorkflowHistory.from_json(path.stem, await asyncio.to_thread(path.read_text))
        result = await replayer().replay_workflow(history)
        assert result.replay_failure is None
