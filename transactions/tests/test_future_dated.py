"""Future-dated transfers: `execute_at` delays the saga's start; `scheduled` until then;
cancelled through the saga, which the cancel wakes."""

import asyncio
import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError
from temporalio.worker import Worker

from contracts.transfers import CancelRequest, TransferCreate, TransferWorkflowInput
from kit.testing import assert_problem
from transactions.config import Settings
from transactions.service import request_hash
from transactions.tests.standin import BEGIN_POSTING, CANCELLED_QUERY
from transactions.tests.support import (
    accepted_cancels,
    count_rows,
    key_header,
    report,
    tell,
    transfer_body,
    workflow_handle,
)
from transactions.workflow_client import STATUS_KEY


def later(delta: timedelta) -> str:
    return (datetime.now(UTC).replace(microsecond=0) + delta).isoformat()


async def create_dated(client: httpx.AsyncClient, execute_at: str) -> dict[str, Any]:
    response = await client.post(
        "/v1/transfers", json=transfer_body(execute_at=execute_at), headers=key_header()
    )
    assert response.status_code == 202, response.text
    created: dict[str, Any] = response.json()
    return created


class TestCreate:
    async def test_too_far_ahead(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        body = transfer_body(execute_at=later(timedelta(days=91)))
        response = await client.post("/v1/transfers", json=body, headers=key_header())
        assert_problem(response, 422, "execute-at-too-far")
        assert await count_rows(app, "transfers") == 0
        assert await count_rows(app, "idempotency_keys") == 0

    async def test_scheduled_until_it_starts(
        self, client: httpx.AsyncClient, temporal: Client, settings: Settings
    ) -> None:
        execute_at = later(timedelta(hours=1))
        created = await create_dated(client, execute_at)
        assert created["status"] == "scheduled"
        assert datetime.fromisoformat(created["execute_at"]) == datetime.fromisoformat(execute_at)

        handle = workflow_handle(temporal, created["id"])
        description = await handle.describe()
        assert description.typed_search_attributes[STATUS_KEY] == "scheduled"
        # Temporal starts the workflow's first task at execute_at (its start delay).
        assert description.execution_time is not None
        assert abs(description.execution_time - datetime.fromisoformat(execute_at)) < timedelta(
            seconds=2
        )
        history = await handle.fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes
        (arguments,) = await temporal.data_converter.decode(
            list(started.input.payloads), [TransferWorkflowInput]
        )
        # The start deadline counts from execute_at, not from the request.
        assert arguments.start_deadline == datetime.fromisoformat(execute_at) + timedelta(
            seconds=settings.start_deadline_seconds
        )

    async def test_a_past_time_starts_at_once(
        self, client: httpx.AsyncClient, temporal: Client
    ) -> None:
        created = await create_dated(client, later(-timedelta(minutes=5)))
        description = await workflow_handle(temporal, created["id"]).describe()
        assert description.execution_time is not None
        assert description.execution_time - description.start_time < timedelta(seconds=1)

    async def test_the_sagas_first_report_moves_it_on(self, client: httpx.AsyncClient) -> None:
        created = await create_dated(client, later(timedelta(hours=1)))
        reported = await report(
            client, created["id"], step="validate", outcome="succeeded", status="pending", version=1
        )
        assert reported.status_code == 200, reported.text
        assert reported.json()["status"] == "pending"

    def test_keys_stored_before_keep_their_hash(self) -> None:
        body = transfer_body()
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        expected = hashlib.sha256(canonical.encode()).hexdigest()
        assert request_hash(TransferCreate.model_validate(body)) == expected


class TestCancel:
    """A scheduled transfer is cancelled through its saga, like any other: the update wakes
    the delayed workflow, the saga ends it `cancelled` and announces it (workflows' tests);
    the service records nothing in its stead."""

    async def test_cancelled_through_the_saga(
        self, client: httpx.AsyncClient, temporal: Client, worker: Worker
    ) -> None:
        created = await create_dated(client, later(timedelta(hours=1)))
        response = await client.post(
            f"/v1/transfers/{created['id']}/cancel", json={"reason": "changed my mind"}
        )
        assert response.status_code == 202, response.text
        # The saga reports the cancel step (and publishes `transfer.cancelled`), not this.
        assert response.json()["steps"] == []
        assert await accepted_cancels(temporal, created["id"]) == [
            CancelRequest(reason="changed my mind")
        ]
        handle = workflow_handle(temporal, created["id"])
        assert await handle.query(CANCELLED_QUERY) is True
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING

        reported = await report(
            client,
            created["id"],
            step="cancel",
            outcome="requested",
            status="cancelled",
            version=1,
            failure_reason="cancelled: changed my mind",
        )
        assert reported.status_code == 200, reported.text
        assert reported.json()["status"] == "cancelled"

    async def test_repeated_cancel_is_one_update(
        self, client: httpx.AsyncClient, temporal: Client, worker: Worker
    ) -> None:
        created = await create_dated(client, later(timedelta(hours=1)))
        path = f"/v1/transfers/{created['id']}/cancel"
        first = await client.post(path, json={"reason": "first"})
        again = await client.post(path, json={"reason": "again"})
        assert first.status_code == again.status_code == 202
        assert await accepted_cancels(temporal, created["id"]) == [CancelRequest(reason="first")]

    async def test_due_and_posting_is_refused_and_nothing_changes(
        self, client: httpx.AsyncClient, temporal: Client, worker: Worker
    ) -> None:
        """Its time has come and its saga is posting while the projection still says
        `scheduled`: the saga refuses, and the transfer is not half-cancelled."""
        created = await create_dated(client, later(timedelta(seconds=2)))
        handle = workflow_handle(temporal, created["id"])
        await started(handle)
        await tell(temporal, created["id"], BEGIN_POSTING)
        response = await client.post(f"/v1/transfers/{created['id']}/cancel")
        assert_problem(response, 409, "transfer-not-cancellable")
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        assert await handle.query(CANCELLED_QUERY) is False
        read = await client.get(f"/v1/transfers/{created['id']}")
        assert read.json()["status"] == "scheduled"
        assert read.json()["steps"] == []


async def started(handle: WorkflowHandle[Any, Any], timeout_seconds: float = 15.0) -> None:
    """Wait (bounded) until the delayed workflow has run its first task: before that,
    Temporal refuses a query ("Workflow task is not scheduled yet")."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            await handle.query(CANCELLED_QUERY)
            return
        except RPCError:
            assert time.monotonic() < deadline, "the delayed workflow never started"
            await asyncio.sleep(0.1)
