"""Replay: the current StandingOrderOccurrenceWorkflow must reproduce the commands of the
recorded histories in `histories/standing-orders/` (one per path). To record them again,
run this module with SAGABANK_RECORD_HISTORIES=1 and commit what it writes."""

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from contracts.standing_orders import OCCURRENCE_WORKFLOW_NAME, OccurrenceWorkflowResult
from contracts.transfers import TransferStatus
from kit.testing import converter_for_tests
from workflows.standing_order import StandingOrderOccurrenceWorkflow
from workflows.tests.saga import business_failure
from workflows.tests.test_standing_order_workflow import (
    FakeOccurrenceServices,
    occurrence_input,
    occurrence_worker,
)

HISTORIES_PATH = Path(__file__).parent / "histories" / "standing-orders"
COMMITTED_HISTORIES = sorted(HISTORIES_PATH.glob("*.json"))
PATHS: dict[str, dict[str, Any]] = {
    "occurrence_completed": {},
    "occurrence_insufficient_funds": {
        "end_status": TransferStatus.rejected,
        "failure_reason": "insufficient-funds",
    },
    "occurrence_order_cancelled": {
        "create_failure": business_failure("standing-order-cancelled", "cancelled")
    },
    "occurrence_created_after_outages": {"create_transient_failures": 2},
    "occurrence_refused": {"refused_reason": "account-not-found"},
}


def replayer() -> Replayer:
    return Replayer(
        workflows=[StandingOrderOccurrenceWorkflow], data_converter=converter_for_tests()
    )


async def record(env: WorkflowEnvironment, task_queue: str, name: str) -> WorkflowHistory:
    fakes = FakeOccurrenceServices(**PATHS[name])
    occurrence = occurrence_input()
    async with occurrence_worker(env, task_queue, fakes):
        handle = await env.client.start_workflow(
            OCCURRENCE_WORKFLOW_NAME,
            occurrence,
            id=f"standing-order-{occurrence.standing_order_id}-occurrence-{uuid.uuid4()}",
            task_queue=task_queue,
            result_type=OccurrenceWorkflowResult,
        )
        await handle.result()
        return await handle.fetch_history()


class TestReplay:
    @pytest.mark.parametrize("name", sorted(PATHS))
    async def test_fresh_history_replays(
        self, saga_env: WorkflowEnvironment, task_queue: str, name: str
    ) -> None:
        history = await record(saga_env, task_queue, name)
        await replayer().replay_workflow(history)
        if os.environ.get("SAGABANK_RECORD_HISTORIES") == "1":
            target = HISTORIES_PATH / f"{name}.json"
            await asyncio.to_thread(target.write_text, history.to_json() + "\n")

    def test_every_path_has_a_committed_history(self) -> None:
        assert {path.stem for path in COMMITTED_HISTORIES} == set(PATHS)

    @pytest.mark.parametrize("path", COMMITTED_HISTORIES, ids=lambda path: path.stem)
    async def test_committed_history_replays(self, path: Path) -> None:
        history = WorkflowHistory.from_json(
            f"standing-order-{path.stem}", await asyncio.to_thread(path.read_text)
        )
        await replayer().replay_workflow(history)
