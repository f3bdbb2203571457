"""Standing orders: created like a transfer, run by one Temporal Schedule each."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from temporalio.client import Client, ScheduleOverlapPolicy
from temporalio.service import RPCError, RPCStatusCode

from contracts.standing_orders import STANDING_ORDERS_PATH, StandingOrderCreate, schedule_id
from kit.testing import assert_problem
from transactions.standing_order_schedules import (
    IntervalInvalid,
    StandingOrderSchedules,
    parse_interval,
)
from transactions.tests.support import (
    ALICE,
    BOB,
    FakeAccounts,
    client_of,
    count_rows,
    customer,
    key_header,
    operator,
    worker,
)


def order_body(**overrides: Any) -> dict[str, Any]:
    start_at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    body: dict[str, Any] = {
        "source_account_id": str(uuid.uuid4()),
        "target_account_id": str(uuid.uuid4()),
        "amount_minor": 50_000,
        "currency": "EUR",
        "description": "Rent",
        "interval": "P1M",
        "start_at": start_at.isoformat(),
    }
    body.update(overrides)
    return body


async def create_order(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    response = await client.post(
        STANDING_ORDERS_PATH, json=order_body(**overrides), headers=key_header()
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def schedule_exists(temporal: Client, order_id: str) -> bool:
    try:
        await temporal.get_schedule_handle(schedule_id(uuid.UUID(order_id))).describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def assert_nothing_created(app: FastAPI) -> None:
    assert await count_rows(app, "standing_orders") == 0
    assert await count_rows(app, "idempotency_keys") == 0


class TestInterval:
    @pytest.mark.parametrize(
        ("text", "months", "every"),
        [
            ("P1M", 1, timedelta(0)),
            ("P3M", 3, timedelta(0)),
            ("P1Y", 12, timedelta(0)),
            ("P7D", 0, timedelta(days=7)),
            ("P1W", 0, timedelta(days=7)),
            ("PT12H", 0, timedelta(hours=12)),
            ("PT5S", 0, timedelta(seconds=5)),
        ],
    )
    def test_valid(self, text: str, months: int, every: timedelta) -> None:
        interval = parse_interval(text)
        assert (interval.months, interval.every) == (months, every)

    @pytest.mark.parametrize(
        "text", ["P", "PT", "P1", "1M", "P0D", "P5M", "P1M2D", "P1.5D", "P1DT"]
    )
    def test_invalid(self, text: str) -> None:
        with pytest.raises(IntervalInvalid):
            parse_interval(text)


class TestCreate:
    async def test_anonymous(self, app: FastAPI) -> None:
        async with client_of(app, headers={}) as anonymous:
            response = await anonymous.post(
                STANDING_ORDERS_PATH, json=order_body(), headers=key_header()
            )
        assert_problem(response, 401, "unauthorized")

    async def test_missing_scope(self, app: FastAPI) -> None:
        async with client_of(app, headers=operator()) as operator_client:
            response = await operator_client.post(
                STANDING_ORDERS_PATH, json=order_body(), headers=key_header()
            )
        assert response.status_code == 403, response.text
        await assert_nothing_created(app)

    async def test_idempotency_key_missing(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        response = await client.post(STANDING_ORDERS_PATH, json=order_body())
        assert_problem(response, 400, "idempotency-key-missing")
        await assert_nothing_created(app)

    async def test_not_the_owner_of_the_source(
        self, client: httpx.AsyncClient, app: FastAPI, accounts: FakeAccounts, temporal: Client
    ) -> None:
        body = order_body()
        accounts.own(body["source_account_id"], BOB)
        response = await client.post(STANDING_ORDERS_PATH, json=body, headers=key_header())
        assert_problem(response, 404, "account-not-found")
        await assert_nothing_created(app)

    @pytest.mark.parametrize("interval", ["monthly", "P1X", "P5M", "P1M1D", "P0D"])
    async def test_bad_interval(
        self, client: httpx.AsyncClient, app: FastAPI, interval: str
    ) -> None:
        response = await client.post(
            STANDING_ORDERS_PATH, json=order_body(interval=interval), headers=key_header()
        )
        assert_problem(response, 422, "standing-order-interval-invalid")
        await assert_nothing_created(app)

    @pytest.mark.parametrize("interval", ["PT1H", "PT86399S", "PT5S"])
    async def test_interval_below_the_minimum(
        self, client: httpx.AsyncClient, app: FastAPI, interval: str
    ) -> None:
        response = await client.post(
            STANDING_ORDERS_PATH, json=order_body(interval=interval), headers=key_header()
        )
        assert_problem(response, 422, "standing-order-interval-too-short")
        await assert_nothing_created(app)

    async def test_end_before_start(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        body = order_body()
        start_at = datetime.fromisoformat(body["start_at"])
        body["end_at"] = (start_at - timedelta(days=1)).isoformat()
        response = await client.post(STANDING_ORDERS_PATH, json=body, headers=key_header())
        assert_problem(response, 422, "standing-order-schedule-invalid")
        await assert_nothing_created(app)

    async def test_end_and_count(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        body = order_body(count=3)
        body["end_at"] = (datetime.fromisoformat(body["start_at"]) + timedelta(days=90)).isoformat()
        response = await client.post(STANDING_ORDERS_PATH, json=body, headers=key_header())
        assert_problem(response, 422, "standing-order-schedule-invalid")
        await assert_nothing_created(app)

    async def test_same_account(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        account = str(uuid.uuid4())
        body = order_body(source_account_id=account, target_account_id=account)
        response = await client.post(STANDING_ORDERS_PATH, json=body, headers=key_header())
        assert_problem(response, 422, "same-account")
        await assert_nothing_created(app)

    async def test_valid_creates_the_schedule(
        self, client: httpx.AsyncClient, temporal: Client
    ) -> None:
        order = await create_order(client, count=12)
        assert order["status"] == "active"
        assert order["schedule_id"] == f"standing-order-{order['id']}"
        description = await temporal.get_schedule_handle(order["schedule_id"]).describe()
        assert description.schedule.policy.overlap is ScheduleOverlapPolicy.ALLOW_ALL
        assert description.schedule.state.remaining_actions == 12
        start_at = datetime.fromisoformat(order["start_at"])
        # Monthly, on the start's day and time: the first run is the start itself.
        next_runs = [datetime.fromisoformat(at) for at in order["next_run_at"]]
        assert next_runs[0] == start_at
        assert next_runs[1].day == start_at.day
        assert next_runs[1].month == start_at.month % 12 + 1

    async def test_same_key_replays(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        body, headers = order_body(), key_header()
        first = await client.post(STANDING_ORDERS_PATH, json=body, headers=headers)
        second = await client.post(STANDING_ORDERS_PATH, json=body, headers=headers)
        assert first.status_code == second.status_code == 201
        assert second.headers["Idempotency-Replayed"] == "true"
        assert second.json()["id"] == first.json()["id"]
        assert await count_rows(app, "standing_orders") == 1

    async def test_an_existing_schedule_is_success(self, temporal: Client) -> None:
        """A create retried after a crash between the row and the schedule finishes."""
        schedules = StandingOrderSchedules(task_queue="unpolled", rpc_timeout_seconds=10)
        order_id = uuid.uuid4()
        order = StandingOrderCreate.model_validate(order_body())
        await schedules.create(temporal, standing_order_id=order_id, order=order, customer_id=ALICE)
        await schedules.create(temporal, standing_order_id=order_id, order=order, customer_id=ALICE)
        assert await schedule_exists(temporal, str(order_id))
        await schedules.delete(temporal, order_id)


class TestRead:
    async def test_foreign_order(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        order = await create_order(client)
        async with client_of(app, headers=customer(BOB)) as bob:
            response = await bob.get(f"{STANDING_ORDERS_PATH}/{order['id']}")
            assert_problem(response, 404, "standing-order-not-found")
            listed = await bob.get(STANDING_ORDERS_PATH)
        assert listed.json()["items"] == []

    async def test_list_own(self, client: httpx.AsyncClient) -> None:
        first = await create_order(client)
        second = await create_order(client)
        response = await client.get(STANDING_ORDERS_PATH)
        assert [item["id"] for item in response.json()["items"]] == [second["id"], first["id"]]
        assert all(item["next_run_at"] for item in response.json()["items"])


class TestPauseResumeDelete:
    async def test_pause_and_resume_act_on_the_schedule(
        self, client: httpx.AsyncClient, temporal: Client
    ) -> None:
        order = await create_order(client)
        path = f"{STANDING_ORDERS_PATH}/{order['id']}"
        handle = temporal.get_schedule_handle(order["schedule_id"])
        for _ in range(2):  # idempotent
            paused = await client.post(f"{path}/pause")
            assert paused.status_code == 200, paused.text
            assert paused.json()["status"] == "paused"
            assert paused.json()["next_run_at"] == []
            assert (await handle.describe()).schedule.state.paused
        for _ in range(2):
            resumed = await client.post(f"{path}/resume")
            assert resumed.json()["status"] == "active"
            assert resumed.json()["next_run_at"]
            assert not (await handle.describe()).schedule.state.paused

    async def test_delete_deletes_the_schedule(
        self, client: httpx.AsyncClient, temporal: Client
    ) -> None:
        order = await create_order(client)
        path = f"{STANDING_ORDERS_PATH}/{order['id']}"
        for _ in range(2):  # idempotent
            deleted = await client.delete(path)
            assert deleted.status_code == 200, deleted.text
            assert deleted.json()["status"] == "cancelled"
        assert not await schedule_exists(temporal, order["id"])
        assert_problem(await client.post(f"{path}/resume"), 409, "standing-order-cancelled")
        assert (await client.get(path)).json()["status"] == "cancelled"

    async def test_foreign_order(
        self, client: httpx.AsyncClient, app: FastAPI, temporal: Client
    ) -> None:
        order = await create_order(client)
        async with client_of(app, headers=customer(BOB)) as bob:
            response = await bob.delete(f"{STANDING_ORDERS_PATH}/{order['id']}")
        assert_problem(response, 404, "standing-order-not-found")
        assert await schedule_exists(temporal, order["id"])


class TestOccurrences:
    async def test_one_transfer_per_scheduled_time(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        order = await create_order(client)
        path = f"/v1/internal/standing-orders/{order['id']}/occurrences"
        scheduled_at = order["start_at"]
        async with client_of(app, headers=worker()) as worker_client:
            first = await worker_client.post(path, json={"scheduled_at": scheduled_at})
            second = await worker_client.post(path, json={"scheduled_at": scheduled_at})
        assert first.status_code == second.status_code == 200, first.text
        assert first.json()["transfer_id"] == second.json()["transfer_id"]
        assert await count_rows(app, "transfers") == 1
        transfer = (await client.get(f"/v1/transfers/{first.json()['transfer_id']}")).json()
        assert transfer["metadata"]["standing_order_id"] == order["id"]
        assert transfer["amount_minor"] == order["amount_minor"]
        listed = await client.get(f"{STANDING_ORDERS_PATH}/{order['id']}/occurrences")
        assert [(o["transfer_id"], o["status"]) for o in listed.json()] == [
            (first.json()["transfer_id"], "pending")
        ]

    async def test_customers_cannot_create_occurrences(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        order = await create_order(client)
        path = f"/v1/internal/standing-orders/{order['id']}/occurrences"
        response = await client.post(path, json={"scheduled_at": order["start_at"]})
        assert response.status_code == 403
        assert await count_rows(app, "transfers") == 0

    async def test_a_cancelled_order_creates_none(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        order = await create_order(client)
        await client.delete(f"{STANDING_ORDERS_PATH}/{order['id']}")
        path = f"/v1/internal/standing-orders/{order['id']}/occurrences"
        async with client_of(app, headers=worker()) as worker_client:
            response = await worker_client.post(path, json={"scheduled_at": order["start_at"]})
        assert_problem(response, 409, "standing-order-cancelled")
        assert await count_rows(app, "transfers") == 0

    async def test_a_refused_transfer_is_recorded_once_without_one(
        self, client: httpx.AsyncClient, app: FastAPI, accounts: FakeAccounts
    ) -> None:
        """The source account is gone: a final refusal, recorded on the occurrence (no
        transfer) and answered again to every retry; the order carries on."""
        order = await create_order(client)
        accounts.missing.add(order["source_account_id"])
        path = f"/v1/internal/standing-orders/{order['id']}/occurrences"
        async with client_of(app, headers=worker()) as worker_client:
            first = await worker_client.post(path, json={"scheduled_at": order["start_at"]})
            second = await worker_client.post(path, json={"scheduled_at": order["start_at"]})
        assert first.status_code == second.status_code == 200, first.text
        assert first.json()["transfer_id"] is None
        assert first.json()["status"] is None
        assert first.json()["failure_reason"] == "account-not-found"
        assert first.json()["failed_at"] is not None
        assert second.json() == first.json()
        assert await count_rows(app, "transfers") == 0
        listed = await client.get(f"{STANDING_ORDERS_PATH}/{order['id']}/occurrences")
        assert [(o["transfer_id"], o["failure_reason"]) for o in listed.json()] == [
            (None, "account-not-found")
        ]
        assert (await client.get(f"{STANDING_ORDERS_PATH}/{order['id']}")).json()[
            "status"
        ] == "active"

    async def test_transient_trouble_records_nothing(
        self, client: httpx.AsyncClient, app: FastAPI, accounts: FakeAccounts
    ) -> None:
        """Accounts away: 503, asked again later; nothing recorded."""
        order = await create_order(client)
        accounts.failure = "down"
        path = f"/v1/internal/standing-orders/{order['id']}/occurrences"
        async with client_of(app, headers=worker()) as worker_client:
            response = await worker_client.post(path, json={"scheduled_at": order["start_at"]})
        assert_problem(response, 503, "accounts-unavailable")
        assert await count_rows(app, "standing_order_occurrences") == 0

    async def test_a_failure_is_recorded_once(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        order = await create_order(client)
        base = f"/v1/internal/standing-orders/{order['id']}/occurrences"
        outcome = {
            "scheduled_at": order["start_at"],
            "status": "rejected",
            "failure_reason": "insufficient-funds",
        }
        async with client_of(app, headers=worker()) as worker_client:
            await worker_client.post(base, json={"scheduled_at": order["start_at"]})
            first = await worker_client.post(f"{base}/outcome", json=outcome)
            second = await worker_client.post(f"{base}/outcome", json=outcome)
        assert first.status_code == 200, first.text
        assert first.json()["failed_at"] is not None
        assert second.json()["failed_at"] == first.json()["failed_at"]
        assert first.json()["failure_reason"] == "insufficient-funds"


async def audit_actions(app: FastAPI, order_id: str) -> list[str]:
    """The audit trail's actions about one order, oldest first."""
    async with app.state.database.engine.connect() as connection:
        result = await connection.exec_driver_sql(
            "SELECT action FROM audit_events WHERE subject_id = $1 ORDER BY sequence",
            (order_id,),
        )
        return [row[0] for row in result]


class TestAudit:
    async def test_each_change_is_audited_once(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        order = await create_order(client)
        path = f"{STANDING_ORDERS_PATH}/{order['id']}"
        for action in ("pause", "pause", "resume", "resume"):
            assert (await client.post(f"{path}/{action}")).status_code == 200
        for _ in range(2):
            assert (await client.delete(path)).status_code == 200
        assert await audit_actions(app, order["id"]) == [
            "standing_order.created",
            "standing_order.paused",
            "standing_order.resumed",
            "standing_order.cancelled",
        ]
