"""A standing order through the real services and the dev server, as `sagabank up` runs them:
its Temporal Schedule runs three occurrences, one failing for lack of funds; pause, resume
and delete act on the schedule; every occurrence's money moves once.

The session's bank runs with a standing-order minimum interval of one second (conftest).
A future-dated transfer, the other kind of payment that waits for its time, is here too.
"""

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest
from temporalio.client import Client, ScheduleHandle
from temporalio.service import RPCError, RPCStatusCode

from contracts.standing_orders import (
    OCCURRENCE_WORKFLOW_NAME,
    STANDING_ORDERS_PATH,
    OccurrenceWorkflowInput,
    OccurrenceWorkflowResult,
)
from contracts.transfers import TASK_QUEUE
from notifications.tests.support import Receiver, running_receiver, wait_until
from tests.bank import Bank
from tests.flows import register_webhook
from tests.test_saga_system import Api

pytestmark = pytest.mark.system

INTERVAL_SECONDS = 3
AMOUNT_MINOR = 100_00
# Enough for two occurrences, not three.
FUNDED_MINOR = 250_00
WAIT_SECONDS_MAX = 90.0
POLL_INTERVAL_SECONDS = 0.25
TERMINAL = frozenset({"completed", "rejected", "declined", "expired", "cancelled"})

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T | None]], what: str, timeout_seconds: float = WAIT_SECONDS_MAX
) -> T:
    """Poll `probe` until it answers something, for a bounded time; fail naming `what`."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        answer = await probe()
        if answer is not None:
            return answer
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(POLL_INTERVAL_SECONDS)


class Orders:
    """The standing-order API as the source account's owner uses it."""

    def __init__(self, bank: Bank, http: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.base = f"{bank.url('transactions')}{STANDING_ORDERS_PATH}"
        self.http = http
        self.headers = headers

    async def call(
        self, method: str, path: str = "", *, key: str | None = None, **kwargs: Any
    ) -> Any:
        headers = self.headers if key is None else {**self.headers, "Idempotency-Key": key}
        response = await self.http.request(method, f"{self.base}{path}", headers=headers, **kwargs)
        assert response.is_success, response.text
        return response.json()

    async def occurrences(self, order_id: str) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = await self.call("GET", f"/{order_id}/occurrences")
        return answer


async def schedule_gone(handle: ScheduleHandle) -> bool:
    try:
        await handle.describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return True
        raise
    return False


async def test_standing_order_runs_on_its_schedule(
    bank: Bank, http: httpx.AsyncClient, bank_temporal: Client
) -> None:
    api = Api(bank, http)
    source, target = await api.funded_pair(FUNDED_MINOR)
    orders = Orders(bank, http, api.owners[source].headers)
    start_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    order = await orders.call(
        "POST",
        json={
            "source_account_id": source,
            "target_account_id": target,
            "amount_minor": AMOUNT_MINOR,
            "currency": "EUR",
            "description": "standing order system test",
            "interval": f"PT{INTERVAL_SECONDS}S",
            "start_at": start_at.isoformat(),
            "count": 3,
        },
        key=str(uuid.uuid4()),
    )
    order_id = order["id"]
    assert datetime.fromisoformat(order["next_run_at"][0]) == start_at
    schedule = bank_temporal.get_schedule_handle(order["schedule_id"])

    # The first occurrence runs; then the order is paused, and the schedule takes no action.
    await eventually(lambda: _at_least(orders, order_id, 1), "the first occurrence")
    paused = await orders.call("POST", f"/{order_id}/pause")
    assert paused["status"] == "paused"
    assert (await schedule.describe()).schedule.state.paused
    actions_when_paused = (await schedule.describe()).info.num_actions
    # Proving that nothing happens needs a bounded wait: two intervals.
    await asyncio.sleep(2 * INTERVAL_SECONDS)
    assert (await schedule.describe()).info.num_actions == actions_when_paused

    resumed = await orders.call("POST", f"/{order_id}/resume")
    assert resumed["status"] == "active"
    assert not (await schedule.describe()).schedule.state.paused
    occurrences = await eventually(lambda: _all_ended(orders, order_id, 3), "three occurrences")

    statuses = sorted(occurrence["status"] for occurrence in occurrences)
    assert statuses == ["completed", "completed", "rejected"], occurrences
    failed = next(o for o in occurrences if o["status"] == "rejected")
    assert "insufficient-funds" in (failed["failure_reason"] or ""), failed
    assert failed["failed_at"] is not None
    assert all(o["failed_at"] is None for o in occurrences if o["status"] == "completed")
    assert len({o["scheduled_at"] for o in occurrences}) == 3
    # Every occurrence's money moved once: two payments, no more.
    assert (await api.balances(source))["posted_minor"] == FUNDED_MINOR - 2 * AMOUNT_MINOR
    assert (await api.balances(target))["posted_minor"] == 2 * AMOUNT_MINOR

    # The schedule firing again for a time it already ran makes no second transfer.
    first = min(occurrences, key=lambda o: o["scheduled_at"])
    replayed: OccurrenceWorkflowResult = await bank_temporal.execute_workflow(
        OCCURRENCE_WORKFLOW_NAME,
        OccurrenceWorkflowInput(
            standing_order_id=uuid.UUID(order_id),
            source_account_id=uuid.UUID(source),
            target_account_id=uuid.UUID(target),
            amount_minor=AMOUNT_MINOR,
            currency="EUR",
            scheduled_at=datetime.fromisoformat(first["scheduled_at"]),
        ),
        id=f"{order['schedule_id']}-occurrence-replayed",
        task_queue=TASK_QUEUE,
        result_type=OccurrenceWorkflowResult,
    )
    assert str(replayed.transfer_id) == first["transfer_id"]
    assert len(await orders.occurrences(order_id)) == 3
    assert (await api.balances(source))["posted_minor"] == FUNDED_MINOR - 2 * AMOUNT_MINOR

    deleted = await orders.call("DELETE", f"/{order_id}")
    assert deleted["status"] == "cancelled"
    assert await schedule_gone(schedule)
    assert (await orders.call("GET", f"/{order_id}"))["status"] == "cancelled"


async def _at_least(orders: Orders, order_id: str, count: int) -> list[dict[str, Any]] | None:
    occurrences = await orders.occurrences(order_id)
    return occurrences if len(occurrences) >= count else None


async def _all_ended(orders: Orders, order_id: str, count: int) -> list[dict[str, Any]] | None:
    """The occurrences once there are `count`, each ended, each failure recorded."""
    occurrences = await orders.occurrences(order_id)
    if len(occurrences) < count or any(o["status"] not in TERMINAL for o in occurrences):
        return None
    if any(o["status"] != "completed" and o["failed_at"] is None for o in occurrences):
        return None
    return occurrences


def _webhooks_about(receiver: Receiver, transfer_id: str) -> list[dict[str, Any]]:
    """The webhook bodies the receiver got about `transfer_id`."""
    bodies = [json.loads(request.body) for request in receiver.requests]
    return [body for body in bodies if body["data"].get("transfer_id") == transfer_id]


async def test_future_dated_transfer_waits_for_its_time(
    bank: Bank, http: httpx.AsyncClient, bank_temporal: Client
) -> None:
    """Dated a few seconds ahead: `scheduled`, then moved at its time; a second one,
    cancelled before its time, moves nothing and is announced to the payer's webhook."""
    api = Api(bank, http)
    source, target = await api.funded_pair(FUNDED_MINOR)
    transfers = f"{bank.url('transactions')}/v1/transfers"
    headers = api.owners[source].headers

    async def dated(execute_at: datetime) -> dict[str, Any]:
        response = await http.post(
            transfers,
            json={
                "source_account_id": source,
                "target_account_id": target,
                "amount_minor": AMOUNT_MINOR,
                "currency": "EUR",
                "execute_at": execute_at.isoformat(),
            },
            headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
        )
        assert response.status_code == 202, response.text
        body: dict[str, Any] = response.json()
        assert body["status"] == "scheduled"
        return body

    async def status_of(transfer_id: str) -> str:
        response = await http.get(f"{transfers}/{transfer_id}", headers=headers)
        assert response.status_code == 200, response.text
        status: str = response.json()["status"]
        return status

    execute_at = datetime.now(UTC) + timedelta(seconds=8)
    paid = await dated(execute_at)
    async with running_receiver() as receiver:
        await register_webhook(
            http, bank, api.owners[source], receiver.url(), event_types=["transfer.cancelled"]
        )
        kept = await dated(datetime.now(UTC) + timedelta(hours=1))
        cancelled = await http.post(f"{transfers}/{kept['id']}/cancel", headers=headers)
        assert cancelled.status_code == 202, cancelled.text

        async def ended_cancelled() -> dict[str, Any] | None:
            response = await http.get(f"{transfers}/{kept['id']}", headers=headers)
            body: dict[str, Any] = response.json()
            return body if body["status"] == "cancelled" and len(body["steps"]) == 2 else None

        kept = await eventually(ended_cancelled, "the cancelled transfer's saga to end")
        # Ended by its saga before its first step: nothing validated, held or moved.
        assert [(s["name"], s["outcome"]) for s in kept["steps"]] == [
            ("cancel", "requested"),
            ("notify", "succeeded"),
        ]
        await wait_until(
            lambda: bool(_webhooks_about(receiver, kept["id"])),
            timeout_seconds=WAIT_SECONDS_MAX,
            what="the cancelled transfer's webhook",
        )
    (webhook,) = _webhooks_about(receiver, kept["id"])
    assert webhook["type"] == "transfer.cancelled"
    assert webhook["data"]["status"] == "cancelled"
    assert await status_of(paid["id"]) == "scheduled"
    assert (await api.balances(source))["pending_minor"] == 0

    async def completed() -> str | None:
        return "completed" if await status_of(paid["id"]) == "completed" else None

    await eventually(completed, "the dated transfer to complete")
    transfer = (await http.get(f"{transfers}/{paid['id']}", headers=headers)).json()
    first_step_at = min(datetime.fromisoformat(step["occurred_at"]) for step in transfer["steps"])
    assert first_step_at >= execute_at, transfer["steps"]
    assert (await api.balances(source))["posted_minor"] == FUNDED_MINOR - AMOUNT_MINOR
    assert (await api.balances(target))["posted_minor"] == AMOUNT_MINOR
