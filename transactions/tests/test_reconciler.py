"""The reconciler starts the saga of a transfer whose start failed and was never retried, one
replica at a time; a saga that did start is left as it is."""

import asyncio
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import text
from temporalio.client import Client, WorkflowExecutionStatus

from contracts.transfers import TransferWorkflowInput
from kit.db import database_of
from kit.resources import resources_of
from kit.testing import assert_problem
from sagabank.localstack.postgres import free_port
from transactions.config import Settings
from transactions.reconciler import reconcile_unstarted_transfers
from transactions.resources import TransactionsResources
from transactions.tests.support import (
    ALICE,
    build_app,
    client_of,
    key_header,
    operator,
    transfer_body,
    workflow_handle,
)

WAIT_SECONDS_MAX = 10.0


async def transfer_whose_start_failed(settings: Settings, body: dict[str, Any]) -> str:
    """POST a transfer while Temporal is unreachable (503), and never retry: its id."""
    unreachable = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    cut_off = build_app(unreachable)
    async with client_of(cut_off) as client:
        failed = await client.post("/v1/transfers", json=body, headers=key_header())
        assert_problem(failed, 503, "workflow-service-unavailable")
        async with cut_off.state.database.engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT id FROM transfers WHERE source_account_id = :source"),
                {"source": body["source_account_id"]},
            )
            (transfer_id,) = [str(row[0]) for row in rows]
    return transfer_id


async def reconcile(app: FastAPI, *, after: timedelta = timedelta(0)) -> int:
    return await reconcile_unstarted_transfers(
        database_of(app),
        resources_of(app, TransactionsResources).workflows,
        after=after,
        batch_size=10,
    )


async def reconciled_events(client: httpx.AsyncClient, transfer_id: str) -> list[dict[str, Any]]:
    response = await client.get(
        "/v1/admin/audit-events",
        params={"transfer_id": transfer_id, "action": "transfer.saga_reconciled"},
        headers=operator(),
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def saga_started_at(app: FastAPI, transfer_id: str) -> datetime | None:
    async with app.state.database.engine.connect() as connection:
        found = await connection.execute(
            text("SELECT saga_started_at FROM transfers WHERE id = :id"), {"id": transfer_id}
        )
        started: datetime | None = found.scalar_one()
        return started


class TestReconcile:
    async def test_starts_the_saga_of_a_transfer_whose_start_failed(
        self, client: httpx.AsyncClient, app: FastAPI, settings: Settings, temporal: Client
    ) -> None:
        transfer_id = await transfer_whose_start_failed(settings, transfer_body())
        assert await saga_started_at(app, transfer_id) is None

        assert await reconcile(app) == 1

        handle = workflow_handle(temporal, transfer_id)
        description = await handle.describe()
        assert description.status == WorkflowExecutionStatus.RUNNING
        history = await handle.fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes
        (arguments,) = await temporal.data_converter.decode(
            list(started.input.payloads), [TransferWorkflowInput]
        )
        created = (await client.get(f"/v1/transfers/{transfer_id}")).json()
        requested_at = datetime.fromisoformat(created["created_at"])
        assert arguments.start_deadline == requested_at + timedelta(
            seconds=settings.start_deadline_seconds
        )
        assert arguments.source_customer_id == ALICE
        assert await saga_started_at(app, transfer_id) is not None
        (event,) = await reconciled_events(client, transfer_id)
        assert (event["actor_type"], event["actor_id"]) == ("system", "system:saga-reconciler")

        # Once confirmed, never again: no second round, no second event.
        assert await reconcile(app) == 0
        assert len(await reconciled_events(client, transfer_id)) == 1

    async def test_a_saga_that_did_start_is_left_as_it_is(
        self, client: httpx.AsyncClient, app: FastAPI, temporal: Client
    ) -> None:
        """The process died between starting the saga and recording it: starting it again
        joins the execution that runs."""
        created = await client.post("/v1/transfers", json=transfer_body(), headers=key_header())
        transfer_id = created.json()["id"]
        run_id = (await workflow_handle(temporal, transfer_id).describe()).run_id
        async with app.state.database.engine.begin() as connection:
            await connection.execute(text("UPDATE transfers SET saga_started_at = NULL"))

        assert await reconcile(app) == 1
        assert (await workflow_handle(temporal, transfer_id).describe()).run_id == run_id
        assert await saga_started_at(app, transfer_id) is not None

    async def test_a_transfer_being_created_is_left_to_its_request(
        self, client: httpx.AsyncClient, app: FastAPI, settings: Settings
    ) -> None:
        await transfer_whose_start_failed(settings, transfer_body())
        assert await reconcile(app, after=timedelta(hours=1)) == 0

    async def test_temporal_still_away_tries_again_later(
        self, client: httpx.AsyncClient, app: FastAPI, settings: Settings
    ) -> None:
        transfer_id = await transfer_whose_start_failed(settings, transfer_body())
        unreachable = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
        cut_off = build_app(unreachable)
        async with client_of(cut_off):
            assert await reconcile(cut_off) == 0
        assert await saga_started_at(app, transfer_id) is None
        assert await reconcile(app) == 1


class TestInTheBackground:
    async def test_one_of_two_instances_reconciles(
        self, settings: Settings, temporal: Client
    ) -> None:
        """Two replicas on one database: one reconciles, the other stands by; the transfer
        whose start failed gets its saga without anyone retrying the request."""
        eager = settings.model_copy(
            update={"reconcile_interval_seconds": 0.05, "reconcile_after_seconds": 0}
        )
        apps = [build_app(eager, temporal_client=temporal) for _ in range(2)]
        async with client_of(apps[0]), client_of(apps[1]):
            transfer_id = await transfer_whose_start_failed(settings, transfer_body())
            deadline = time.monotonic() + WAIT_SECONDS_MAX
            while await saga_started_at(apps[0], transfer_id) is None:
                assert time.monotonic() < deadline, "the reconciler never started the saga"
                await asyncio.sleep(0.05)
            description = await workflow_handle(temporal, transfer_id).describe()
            assert description.status == WorkflowExecutionStatus.RUNNING
            leaders = [app.state.saga_reconciler.is_leader for app in apps]
            assert leaders.count(True) == 1, leaders
