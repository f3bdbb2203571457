"""Future-dated transfers: `execute_at` delays the saga's start; `scheduled` until then;
cancellable without waking the delayed workflow."""

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus

from contracts.transfers import TransferCreate, TransferWorkflowInput
from kit.testing import assert_problem
from transactions.config import Settings
from transactions.service import request_hash
from transactions.tests.support import (
    count_rows,
    key_header,
    report,
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
    async def test_cancelled_without_waking_the_workflow(
        self, client: httpx.AsyncClient, temporal: Client
    ) -> None:
        created = await create_dated(client, later(timedelta(hours=1)))
        response = await client.post(
            f"/v1/transfers/{created['id']}/cancel", json={"reason": "changed my mind"}
        )
        assert response.status_code == 202, response.text
        cancelled = response.json()
        assert cancelled["status"] == "cancelled"
        assert cancelled["failure_reason"] == "cancelled: changed my mind"
        assert [(s["name"], s["outcome"]) for s in cancelled["steps"]] == [("cancel", "requested")]

        handle = workflow_handle(temporal, created["id"])
        assert (await handle.describe()).status == WorkflowExecutionStatus.TERMINATED
        history = await handle.fetch_history()
        # Neither a signal nor an update (either would have started it), and no task ran.
        assert [event.event_type for event in history.events] == [
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
        ]

    async def test_cancelled_twice(self, client: httpx.AsyncClient) -> None:
        created = await create_dated(client, later(timedelta(hours=1)))
        path = f"/v1/transfers/{created['id']}/cancel"
        assert (await client.post(path)).status_code == 202
        assert_problem(await client.post(path), 409, "transfer-not-cancellable")
