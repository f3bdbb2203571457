"""An order whose schedule was never created is never stranded: the reconciler creates the
schedule within the start deadline, and past it ends the order cancelled (`not-scheduled`)."""

import asyncio
import time
import uuid
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import text
from temporalio.client import Client

from contracts.standing_orders import STANDING_ORDERS_PATH
from kit.db import database_of
from kit.resources import resources_of
from kit.testing import assert_problem
from sagabank.localstack.postgres import free_port
from transactions.config import Settings
from transactions.resources import TransactionsResources
from transactions.standing_orders import reconcile_unscheduled_orders
from transactions.tests.support import build_app, client_of, count_rows, key_header
from transactions.tests.test_standing_orders import order_body, schedule_exists

WAIT_SECONDS_MAX = 10.0


async def order_whose_schedule_failed(settings: Settings, body: dict[str, Any], key: str) -> str:
    """POST an order while Temporal is unreachable (503), and never retry: its id."""
    unreachable = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    cut_off = build_app(unreachable)
    async with client_of(cut_off) as client:
        failed = await client.post(STANDING_ORDERS_PATH, json=body, headers=key_header(key))
        assert_problem(failed, 503, "workflow-service-unavailable")
        async with cut_off.state.database.engine.connect() as connection:
            rows = await connection.execute(text("SELECT id FROM standing_orders"))
            (order_id,) = [str(row[0]) for row in rows]
    return order_id


async def reconcile(app: FastAPI) -> int:
    resources = resources_of(app, TransactionsResources)
    return await reconcile_unscheduled_orders(
        database_of(app),
        resources.workflows,
        resources.standing_order_schedules,
        after=timedelta(0),
        batch_size=10,
    )


async def age_order(app: FastAPI, order_id: str, *, hours: int) -> None:
    """Move the order's creation back: its start deadline has passed."""
    async with app.state.database.engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE standing_orders SET created_at = created_at"
                " - make_interval(hours => :hours) WHERE id = :id"
            ),
            {"hours": hours, "id": uuid.UUID(order_id)},
        )


async def order_of(client: httpx.AsyncClient, order_id: str) -> dict[str, Any]:
    response = await client.get(f"{STANDING_ORDERS_PATH}/{order_id}")
    assert response.status_code == 200, response.text
    order: dict[str, Any] = response.json()
    return order


class TestReconcileUnscheduled:
    async def test_creates_the_schedule_within_the_deadline(
        self, client: httpx.AsyncClient, app: FastAPI, settings: Settings, temporal: Client
    ) -> None:
        order_id = await order_whose_schedule_failed(settings, order_body(), "key-late")
        assert not await schedule_exists(temporal, order_id)

        assert await reconcile(app) == 1

        assert await schedule_exists(temporal, order_id)
        order = await order_of(client, order_id)
        assert order["status"] == "active"
        assert order["next_run_at"]
        # Once scheduled, never looked at again.
        assert await reconcile(app) == 0

    async def test_past_the_deadline_the_order_ends_cancelled(
        self, client: httpx.AsyncClient, app: FastAPI, settings: Settings, temporal: Client
    ) -> None:
        body = order_body()
        order_id = await order_whose_schedule_failed(settings, body, "key-too-late")
        await age_order(app, order_id, hours=1)

        assert await reconcile(app) == 1

        assert not await schedule_exists(temporal, order_id)
        order = await order_of(client, order_id)
        assert (order["status"], order["cancellation_reason"]) == ("cancelled", "not-scheduled")
        # A retry with the key afterwards answers that end, and creates no schedule.
        retry = await client.post(
            STANDING_ORDERS_PATH, json=body, headers=key_header("key-too-late")
        )
        assert retry.status_code == 201, retry.text
        assert (retry.json()["id"], retry.json()["status"]) == (order_id, "cancelled")
        assert not await schedule_exists(temporal, order_id)
        assert await reconcile(app) == 0

    async def test_a_schedule_created_before_a_crash_is_kept(
        self, client: httpx.AsyncClient, app: FastAPI, temporal: Client
    ) -> None:
        """The process died after creating the schedule and before recording it: past the
        deadline, the schedule that exists is the truth and the order carries on."""
        created = await client.post(STANDING_ORDERS_PATH, json=order_body(), headers=key_header())
        order_id = created.json()["id"]
        async with app.state.database.engine.begin() as connection:
            await connection.execute(text("UPDATE standing_orders SET schedule_created_at = NULL"))
        await age_order(app, order_id, hours=1)

        assert await reconcile(app) == 1

        assert await schedule_exists(temporal, order_id)
        assert (await order_of(client, order_id))["status"] == "active"
        assert await reconcile(app) == 0

    async def test_a_late_retry_racing_the_reconciler(
        self, client: httpx.AsyncClient, app: FastAPI, settings: Settings, temporal: Client
    ) -> None:
        """At most one schedule, never a second order."""
        body = order_body()
        order_id = await order_whose_schedule_failed(settings, body, "key-race")

        retried, reconciled = await asyncio.gather(
            client.post(STANDING_ORDERS_PATH, json=body, headers=key_header("key-race")),
            reconcile(app),
        )

        assert retried.status_code == 201, retried.text
        assert (retried.json()["id"], retried.json()["status"]) == (order_id, "active")
        assert reconciled in (0, 1)
        assert await schedule_exists(temporal, order_id)
        assert await count_rows(app, "standing_orders") == 1
        assert await reconcile(app) == 0

    async def test_a_late_retry_racing_the_reconciler_past_the_deadline(
        self, client: httpx.AsyncClient, app: FastAPI, settings: Settings, temporal: Client
    ) -> None:
        """Past the deadline, whichever acts first ends the order; nobody creates a schedule."""
        body = order_body()
        order_id = await order_whose_schedule_failed(settings, body, "key-race-late")
        await age_order(app, order_id, hours=1)

        retried, _ = await asyncio.gather(
            client.post(STANDING_ORDERS_PATH, json=body, headers=key_header("key-race-late")),
            reconcile(app),
        )

        assert retried.status_code == 201, retried.text
        assert (retried.json()["id"], retried.json()["status"]) == (order_id, "cancelled")
        assert not await schedule_exists(temporal, order_id)
        assert await count_rows(app, "standing_orders") == 1

    async def test_an_order_cancelled_before_its_schedule_never_gets_one(
        self, client: httpx.AsyncClient, app: FastAPI, settings: Settings, temporal: Client
    ) -> None:
        order_id = await order_whose_schedule_failed(settings, order_body(), "key-cancelled")
        deleted = await client.delete(f"{STANDING_ORDERS_PATH}/{order_id}")
        assert deleted.status_code == 200, deleted.text
        assert deleted.json()["status"] == "cancelled"

        assert await reconcile(app) == 0
        assert not await schedule_exists(temporal, order_id)


class TestInTheBackground:
    async def test_the_reconciler_job_schedules_a_stranded_order(
        self, settings: Settings, temporal: Client
    ) -> None:
        """Nobody retries: the service's own reconciler round creates the schedule."""
        eager = settings.model_copy(
            update={"reconcile_interval_seconds": 0.05, "reconcile_after_seconds": 0}
        )
        order_id = await order_whose_schedule_failed(settings, order_body(), "key-background")
        async with client_of(build_app(eager, temporal_client=temporal)):
            deadline = time.monotonic() + WAIT_SECONDS_MAX
            while not await schedule_exists(temporal, order_id):
                assert time.monotonic() < deadline, "the reconciler never created the schedule"
                await asyncio.sleep(0.05)
