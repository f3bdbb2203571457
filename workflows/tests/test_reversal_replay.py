"""Replay: the current ReversalWorkflow must reproduce the commands of recorded histories.

`histories/reversals/` holds one recorded history per path of the reversal saga. A change
that would make a running reversal take a different path on replay fails here; make it
behind `workflow.patched(...)` and record new histories: run this module with
SAGABANK_RECORD_HISTORIES=1 and commit what it writes (as test_replay.py describes).
"""

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from contracts.transfers import TransferStatus
from kit.testing import converter_for_tests
from workflows.reversal import ReversalWorkflow
from workflows.tests.saga import business_failure
from workflows.tests.test_reversal_workflow import (
    fakes_for,
    new_reversal,
    reversal_worker,
    start_reversal,
)

HISTORIES_PATH = Path(__file__).parent / "histories" / "reversals"
COMMITTED_HISTORIES = sorted(HISTORIES_PATH.glob("*.json"))


@dataclass(frozen=True)
class ReversalPath:
    """One path of the reversal saga: how the fake services answer, and the amount."""

    name: str
    status: TransferStatus
    services: dict[str, Any] = field(default_factory=dict)
    amount_minor: int = 125_000


PATHS = [
    ReversalPath("reversal_full", TransferStatus.completed),
    ReversalPath("reversal_partial", TransferStatus.completed, amount_minor=40_000),
    ReversalPath(
        "reversal_insufficient_funds",
        TransferStatus.rejected,
        {"hold_failure": business_failure("insufficient-funds", "available 100")},
    ),
    ReversalPath(
        "reversal_hold_voided_after_attempts",
        TransferStatus.rejected,
        {
            "hold_transient_failures": 1,
            "hold_failure": business_failure("insufficient-funds", "available 100"),
        },
    ),
    ReversalPath(
        "reversal_posting_retried", TransferStatus.completed, {"post_transient_failures": 3}
    ),
    ReversalPath(
        "reversal_post_expired",
        TransferStatus.expired,
        {"post_failure": business_failure("pending-transfer-expired", "the hold expired")},
    ),
    ReversalPath(
        "reversal_validation_failed",
        TransferStatus.rejected,
        {"validation_failure": business_failure("account-not-active", "frozen")},
    ),
]


def replayer() -> Replayer:
    return Replayer(workflows=[ReversalWorkflow], data_converter=converter_for_tests())


async def record(
    env: WorkflowEnvironment, task_queue: str, path: ReversalPath
) -> tuple[TransferStatus, WorkflowHistory]:
    reversal = new_reversal(amount_minor=path.amount_minor)
    fakes = fakes_for(reversal, **path.services)
    async with reversal_worker(env, task_queue, fakes):
        handle = await start_reversal(env, task_queue, reversal)
        status = (await handle.result()).status
        history = await handle.fetch_history()
    return status, history


class TestReversalReplay:
    @pytest.mark.parametrize("path", PATHS, ids=lambda path: path.name)
    async def test_fresh_history_replays(
        self, saga_env: WorkflowEnvironment, task_queue: str, path: ReversalPath
    ) -> None:
        ended, history = await record(saga_env, task_queue, path)
        assert ended is path.status
        await replayer().replay_workflow(history)
        if os.environ.get("SAGABANK_RECORD_HISTORIES") == "1":
            target = HISTORIES_PATH / f"{path.name}.json"
            await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
            await asyncio.to_thread(target.write_text, history.to_json() + "\n")

    def test_every_path_has_a_committed_history(self) -> None:
        assert {path.stem for path in COMMITTED_HISTORIES} == {path.name for path in PATHS}

    @pytest.mark.parametrize("path", COMMITTED_HISTORIES, ids=lambda path: path.stem)
    async def test_committed_history_replays(self, path: Path) -> None:
        history = WorkflowHistory.from_json(path.stem, await asyncio.to_thread(path.read_text))
        result = await replayer().replay_workflow(history)
        assert result.replay_failure is None
