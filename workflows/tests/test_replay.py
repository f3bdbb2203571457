"""Replay: the current TransferWorkflow must reproduce the commands of recorded histories.

`histories/` holds histories recorded from earlier code. A change that would make a running
transfer take a different path on replay (nondeterminism) fails here; make such a change
behind `workflow.patched(...)` and keep these files. To record the current code's histories
as new files, run this module with SAGABANK_RECORD_HISTORIES=1 and commit what it writes.
"""

import asyncio
import os
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from contracts.fraud import FraudDecision
from contracts.transfers import SIGNAL_REVIEW_DECISION, ReviewDecision, TransferStatus
from workflows.tests.saga import (
    FakeServices,
    new_transfer,
    saga_worker,
    start_transfer,
    wait_for_status,
)
from workflows.transfer import TransferWorkflow

HISTORIES_PATH = Path(__file__).parent / "histories"
COMMITTED_HISTORIES = sorted(HISTORIES_PATH.glob("*.json"))


def replayer() -> Replayer:
    return Replayer(workflows=[TransferWorkflow], data_converter=pydantic_data_converter)


async def record(
    env: WorkflowEnvironment, task_queue: str, decision: FraudDecision
) -> tuple[TransferStatus, WorkflowHistory]:
    fakes = FakeServices(new_transfer(), decision=decision)
    async with saga_worker(env, task_queue, fakes):
        handle = await start_transfer(env, task_queue, fakes.transfer)
        if decision is FraudDecision.review:
            await wait_for_status(handle, TransferStatus.in_review)
            await handle.signal(
                SIGNAL_REVIEW_DECISION, ReviewDecision(decision="approve", reviewer_id="r-1")
            )
        result = await handle.result()
        history = await handle.fetch_history()
    return result.status, history


class TestReplay:
    @pytest.mark.parametrize(
        ("name", "decision", "status"),
        [
            ("transfer_completed", FraudDecision.approve, TransferStatus.completed),
            ("transfer_declined", FraudDecision.decline, TransferStatus.declined),
            ("transfer_review_approved", FraudDecision.review, TransferStatus.completed),
        ],
    )
    async def test_fresh_history_replays(
        self,
        saga_env: WorkflowEnvironment,
        task_queue: str,
        name: str,
        decision: FraudDecision,
        status: TransferStatus,
    ) -> None:
        ended, history = await record(saga_env, task_queue, decision)
        assert ended is status
        await replayer().replay_workflow(history)
        if os.environ.get("SAGABANK_RECORD_HISTORIES") == "1":
            path = HISTORIES_PATH / f"{name}.json"
            await asyncio.to_thread(path.write_text, history.to_json() + "\n")

    def test_histories_are_committed(self) -> None:
        names = {path.stem for path in COMMITTED_HISTORIES}
        assert {"transfer_completed", "transfer_declined", "transfer_review_approved"} <= names

    @pytest.mark.parametrize("path", COMMITTED_HISTORIES, ids=lambda path: path.stem)
    async def test_committed_history_replays(self, path: Path) -> None:
        history = WorkflowHistory.from_json(path.stem, await asyncio.to_thread(path.read_text))
        result = await replayer().replay_workflow(history)
        assert result.replay_failure is None
