"""Delivery: the outbox written with the event, signed requests, retries on the spec's
schedule with the time moved by the test, and nothing lost or sent twice."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import standardwebhooks.webhooks
from fastapi import FastAPI
from prometheus_client import REGISTRY
from standardwebhooks import Webhook, WebhookVerificationError

from contracts.auth import PrincipalKind, Scope
from contracts.notifications import EventType, TransferEventData
from kit.db import Database
from kit.sealing import parse_key_ring
from kit.settings import to_asyncpg_url
from kit.testing import app_client, assert_problem
from notifications import repository
from notifications.dispatcher import Dispatcher, DispatcherOptions
from notifications.models import DeliveryAttemptRow
from notifications.schedule import ATTEMPTS_MAX
from notifications.ssrf import GuardedTransport, TargetPolicy
from notifications.tests.conftest import DEV, SECRETS_KEYS, AppFactory
from notifications.tests.support import (
    Clock,
    LoopbackNetwork,
    ReceivedRequest,
    Reply,
    SenderDied,
    StubResolver,
    as_customer,
    as_principal,
    as_worker,
    dispatcher_of,
    running_receiver,
    transfer_event,
    wait_for,
    wait_until,
)

HOURS = 3600


@contextmanager
def verifier_time(now: datetime) -> Iterator[None]:
    """The library checks the timestamp against its own clock: set it to the test's."""

    class FrozenDatetime(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> "FrozenDatetime":
            moment = now if tz is None else now.astimezone(tz)
            return cls.fromtimestamp(moment.timestamp(), tz=moment.tzinfo)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(standardwebhooks.webhooks, "datetime", FrozenDatetime)
        yield


def verify(secret: str, request: ReceivedRequest, *, now: datetime) -> dict[str, Any]:
    with verifier_time(now):
        payload: dict[str, Any] = Webhook(secret).verify(request.body, request.headers)
    return payload


@asynccontextmanager
async def bank(
    make_app: AppFactory, **overrides: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The service in dev mode (the receiver is on 127.0.0.1), dispatcher driven by hand."""
    app = make_app(**{**DEV, "dispatcher_enabled": False, **overrides})
    async with app_client(app) as client:
        yield app, client


async def register(
    client: httpx.AsyncClient,
    url: str,
    *,
    customer_id: str = "alice",
    event_types: tuple[str, ...] = ("transfer.completed",),
) -> dict[str, Any]:
    response = await client.post(
        "/v1/webhook-endpoints",
        headers=as_customer(customer_id),
        json={"url": url, "event_types": list(event_types)},
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def publish(
    client: httpx.AsyncClient, headers: dict[str, str] | None = None, **kwargs: Any
) -> dict[str, Any]:
    event = transfer_event(**kwargs)
    response = await client.post(
        "/v1/events", json=event, headers={**as_worker(), **(headers or {})}
    )
    assert response.status_code == 201, response.text
    return event


async def deliveries(
    client: httpx.AsyncClient,
    endpoint: dict[str, Any],
    *,
    status: str | None = None,
) -> list[dict[str, Any]]:
    response = await client.get(
        f"/v1/webhook-endpoints/{endpoint['id']}/deliveries",
        headers=as_customer(endpoint["customer_id"]),
        params={} if status is None else {"status": status},
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def only_delivery(client: httpx.AsyncClient, endpoint: dict[str, Any]) -> dict[str, Any]:
    [delivery] = await deliveries(client, endpoint)
    response = await client.get(
        f"/v1/deliveries/{delivery['id']}", headers=as_customer(endpoint["customer_id"])
    )
    assert response.status_code == 200, response.text
    detail: dict[str, Any] = response.json()
    return detail


def _attempts(outcome: str) -> float:
    name = "sagabank_webhook_delivery_attempts_total"
    return REGISTRY.get_sample_value(name, {"outcome": outcome}) or 0.0


class TestOutbox:
    async def test_accepting_an_event_writes_one_delivery_per_subscribed_endpoint(
        self, client: httpx.AsyncClient
    ) -> None:
        url = "https://hooks.example.test/hook"
        subscribed = await register(client, url)
        other_type = await register(client, url, event_types=("transfer.declined",))
        disabled = await register(client, url)
        await client.post(
            f"/v1/webhook-endpoints/{disabled['id']}/disable", headers=as_customer("alice")
        )
        target = await register(client, url, customer_id="bob")
        stranger = await register(client, url, customer_id="mallory")

        event = await publish(client, source_customer_id="alice", target_customer_id="bob")

        [delivery] = await deliveries(client, subscribed)
        assert delivery["event_id"] == event["id"]
        assert delivery["status"] == "pending"
        assert delivery["attempts_made"] == 0
        assert len(await deliveries(client, target)) == 1, "the payee hears of the arrival"
        for endpoint in (other_type, disabled, stranger):
            assert await deliveries(client, endpoint) == []

    async def test_the_target_customer_hears_only_of_completion(
        self, client: httpx.AsyncClient
    ) -> None:
        url = "https://hooks.example.test/hook"
        every_type = tuple(
            f"transfer.{name}"
            for name in ("created", "in_review", "completed", "rejected", "declined")
        )
        source = await register(client, url, event_types=every_type)
        target = await register(client, url, customer_id="bob", event_types=every_type)
        for event_type in ("transfer.created", "transfer.in_review", "transfer.declined"):
            await publish(client, event_type=event_type)
        assert len(await deliveries(client, source)) == 3
        assert await deliveries(client, target) == []

    async def test_the_payer_hears_that_a_reversal_brought_the_money_back(
        self, client: httpx.AsyncClient
    ) -> None:
        """A reversal's event names the payee as source and the payer as target: the payer
        hears of `transfer.reversed` (money arrived) but not of a failed reversal."""
        url = "https://hooks.example.test/hook"
        reversal_types = ("transfer.reversed", "transfer.reversal_failed")
        payee = await register(client, url, event_types=reversal_types)
        payer = await register(client, url, customer_id="bob", event_types=reversal_types)
        for event_type in reversal_types:
            await publish(client, event_type=event_type)
        assert len(await deliveries(client, payee)) == 2
        [delivery] = await deliveries(client, payer)
        assert delivery["event_type"] == "transfer.reversed"

    async def test_routes_by_the_customer_ids_the_saga_sends(
        self, client: httpx.AsyncClient
    ) -> None:
        """Customer ids are token subjects (UUIDs); the saga names the two accounts' owners
        in the event data, shaped as TransferEventData, and only those hear of it."""
        source, target, stranger = (str(uuid.uuid4()) for _ in range(3))
        every_type = tuple(member.value for member in EventType)
        endpoints = {
            customer: await register(
                client, "https://hooks.example.test/hook", customer_id=customer,
                event_types=every_type,
            )
            for customer in (source, target, stranger)
        }  # fmt: skip
        for event_type in (EventType.transfer_created, EventType.transfer_completed):
            data = TransferEventData(
                transfer_id=uuid.uuid4(),
                status=event_type.value.removeprefix("transfer."),
                amount_minor=1999,
                currency="EUR",
                source_account_id=uuid.uuid4(),
                target_account_id=uuid.uuid4(),
                source_customer_id=source,
                target_customer_id=target,
            )
            body = {
                "id": str(uuid.uuid4()),
                "type": event_type.value,
                "timestamp": datetime.now(UTC).isoformat(),
                "data": data.model_dump(mode="json", exclude_none=True),
            }
            response = await client.post("/v1/events", json=body, headers=as_worker())
            assert response.status_code == 201, response.text
        received = {
            customer: sorted(item["event_type"] for item in await deliveries(client, endpoint))
            for customer, endpoint in endpoints.items()
        }
        assert received == {
            source: ["transfer.completed", "transfer.created"],
            target: ["transfer.completed"],
            stranger: [],
        }

    async def test_a_replayed_event_writes_nothing_more(self, client: httpx.AsyncClient) -> None:
        endpoint = await register(client, "https://hooks.example.test/hook")
        event = transfer_event()
        assert (await client.post("/v1/events", json=event, headers=as_worker())).status_code == 201
        assert (await client.post("/v1/events", json=event, headers=as_worker())).status_code == 200
        assert len(await deliveries(client, endpoint)) == 1

    async def test_an_event_naming_no_customer_goes_nowhere(
        self, client: httpx.AsyncClient
    ) -> None:
        endpoint = await register(client, "https://hooks.example.test/hook")
        await publish(client, source_customer_id=None, target_customer_id=None)
        assert await deliveries(client, endpoint) == []


def _gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value(name)


class TestOutboxGauges:
    async def test_each_pass_reports_the_backlog_and_its_oldest_age(
        self, make_app: AppFactory, clock: Clock
    ) -> None:
        async with running_receiver() as receiver, bank(make_app) as (app, client):
            receiver.queue(Reply(503), Reply(503))
            await register(client, receiver.url())
            await publish(client)
            await publish(client)
            clock.advance(30)
            await dispatcher_of(app).run_once()  # both fail: still pending
            assert _gauge("sagabank_outbox_pending_events") == 2
            assert _gauge("sagabank_outbox_oldest_pending_age_seconds") == 30

            clock.advance(HOURS)
            await dispatcher_of(app).run_once()  # both delivered now
            assert _gauge("sagabank_outbox_pending_events") == 0
            assert _gauge("sagabank_outbox_oldest_pending_age_seconds") == 0

    async def test_a_disabled_endpoints_deliveries_are_no_backlog(
        self, make_app: AppFactory
    ) -> None:
        async with running_receiver() as receiver, bank(make_app) as (app, client):
            receiver.queue(Reply(410))
            await register(client, receiver.url())
            await publish(client)
            await dispatcher_of(app).run_once()  # 410: the endpoint is disabled
            await publish(client)  # its delivery waits for the endpoint to come back
            await dispatcher_of(app).run_once()
            assert _gauge("sagabank_outbox_pending_events") == 0


class TestDispatch:
    async def test_signed_payload_verifies_with_standardwebhooks(
        self, make_app: AppFactory, clock: Clock
    ) -> None:
        async with running_receiver() as receiver, bank(make_app) as (app, client):
            endpoint = await register(client, receiver.url())
            event = await publish(client, amount_minor=123456)
            assert await dispatcher_of(app).run_once() == 1
            delivery = await only_delivery(client, endpoint)
        [request] = receiver.requests
        payload = verify(endpoint["secret"], request, now=clock.now)
        assert set(payload) == {"type", "timestamp", "data"}
        assert payload["type"] == "transfer.completed"
        assert datetime.fromisoformat(payload["timestamp"]) == datetime.fromisoformat(
            event["timestamp"]
        )
        assert payload["data"]["amount_minor"] == 123456
        assert "source_customer_id" not in payload["data"], "routing stays inside the bank"
        assert request.headers["webhook-id"] == delivery["webhook_id"]
        assert request.headers["webhook-timestamp"] == str(int(clock.now.timestamp()))
        assert request.headers["content-type"] == "application/json"
        assert delivery["status"] == "succeeded"
        [attempt] = delivery["attempts"]
        assert attempt["status_code"] == 204
        assert attempt["outcome"] == "succeeded"
        assert attempt["latency_ms"] >= 0

    async def test_signatures_verify_during_and_after_a_rotation(
        self, make_app: AppFactory, clock: Clock
    ) -> None:
        async with running_receiver() as receiver, bank(make_app) as (app, client):
            endpoint = await register(client, receiver.url())
            old_secret = endpoint["secret"]
            rotated = await client.post(
                f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret",
                headers=as_customer("alice"),
                json={"grace_seconds": 2 * HOURS},
            )
            new_secret = rotated.json()["secret"]

            await publish(client)
            await dispatcher_of(app).run_once()
            during = receiver.requests[-1]
            assert len(during.headers["webhook-signature"].split(" ")) == 2
            verify(new_secret, during, now=clock.now)
            verify(old_secret, during, now=clock.now)

            clock.advance(2 * HOURS)
            await publish(client)
            await dispatcher_of(app).run_once()
            after = receiver.requests[-1]
            assert len(after.headers["webhook-signature"].split(" ")) == 1
            verify(new_secret, after, now=clock.now)
            with pytest.raises(WebhookVerificationError):
                verify(old_secret, after, now=clock.now)

    async def test_rotating_within_the_grace_keeps_at_most_three_secrets(
        self, make_app: AppFactory
    ) -> None:
        async with running_receiver() as receiver, bank(make_app) as (app, client):
            endpoint = await register(client, receiver.url())
            for _ in range(4):
                await client.post(
                    f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret",
                    headers=as_customer("alice"),
                )
            await publish(client)
            await dispatcher_of(app).run_once()
        assert len(receiver.requests[0].headers["webhook-signature"].split(" ")) == 3

    async def test_retry_after_is_honoured(self, make_app: AppFactory, clock: Clock) -> None:
        async with running_receiver() as receiver, bank(make_app) as (app, client):
            receiver.queue(Reply(429, {"retry-after": "120"}))
            endpoint = await register(client, receiver.url())
            await publish(client)
            await dispatcher_of(app).run_once()
            delivery = await only_delivery(client, endpoint)
            next_attempt_at = datetime.fromisoformat(delivery["next_attempt_at"])
            assert next_attempt_at >= clock.now + timedelta(seconds=120)

            clock.advance(60)  # the schedule alone would have retried after 5 s
            assert await dispatcher_of(app).run_once() == 0
            clock.advance(61)
            assert await dispatcher_of(app).run_once() == 1
            assert (await only_delivery(client, endpoint))["status"] == "succeeded"
        assert len(receiver.requests) == 2

    async def test_410_gone_disables_the_endpoint(self, make_app: AppFactory) -> None:
        gone_before = _attempts("gone")
        async with running_receiver() as receiver, bank(make_app) as (app, client):
            receiver.queue(Reply(410))
            endpoint = await register(client, receiver.url())
            await publish(client)
            await dispatcher_of(app).run_once()
            assert _attempts("gone") - gone_before == 1
            delivery = await only_delivery(client, endpoint)
            assert delivery["status"] == "failed"
            assert delivery["next_attempt_at"] is None
            assert delivery["attempts"][0]["outcome"] == "gone"
            fetched = await client.get(
                f"/v1/webhook-endpoints/{endpoint['id']}", headers=as_customer("alice")
            )
            assert fetched.json()["enabled"] is False
            assert fetched.json()["disabled_reason"] == "gone"

            await publish(client)
            assert len(await deliveries(client, endpoint)) == 1, "nothing new for a gone endpoint"
            await client.post(
                f"/v1/webhook-endpoints/{endpoint['id']}/enable", headers=as_customer("alice")
            )
            await publish(client)
            succeeded_before = _attempts("succeeded")
            assert await dispatcher_of(app).run_once() == 1
            assert _attempts("succeeded") - succeeded_before == 1
        assert len(receiver.requests) == 2

    async def test_after_the_last_attempt_the_delivery_failed_and_the_owner_sees_it(
        self, make_app: AppFactory, clock: Clock
    ) -> None:
        async with running_receiver() as receiver, bank(make_app) as (app, client):
            receiver.default = Reply(500, body=b"database is down")
            endpoint = await register(client, receiver.url())
            await publish(client)
            for attempt in range(ATTEMPTS_MAX):
                assert await dispatcher_of(app).run_once() == 1, f"attempt {attempt + 1}"
                clock.advance(27 * HOURS)  # beyond the longest wait, jitter included
            assert await dispatcher_of(app).run_once() == 0
            [failed] = await deliveries(client, endpoint, status="failed")
            assert await deliveries(client, endpoint, status="pending") == []
            detail = await only_delivery(client, endpoint)
        assert failed["attempts_made"] == ATTEMPTS_MAX
        assert failed["next_attempt_at"] is None
        assert [attempt["number"] for attempt in detail["attempts"]] == list(range(10, 0, -1))
        assert {attempt["status_code"] for attempt in detail["attempts"]} == {500}
        assert detail["attempts"][0]["response_excerpt"] == "database is down"
        assert len(receiver.requests) == ATTEMPTS_MAX
        assert len({request.headers["webhook-id"] for request in receiver.requests}) == 1

    async def test_waits_follow_the_schedule(self, make_app: AppFactory, clock: Clock) -> None:
        async with running_receiver() as receiver, bank(make_app) as (app, client):
            receiver.default = Reply(500)
            endpoint = await register(client, receiver.url())
            await publish(client)
            for nominal_seconds in (5, 300, 1800, 2 * HOURS):
                await dispatcher_of(app).run_once()
                delivery = await only_delivery(client, endpoint)
                wait = datetime.fromisoformat(delivery["next_attempt_at"]) - clock.now
                assert nominal_seconds * 0.9 <= wait.total_seconds() <= nominal_seconds * 1.1
                clock.advance(wait.total_seconds() - 1)
                assert await dispatcher_of(app).run_once() == 0, "not before it is due"
                clock.advance(1)

    async def test_the_response_excerpt_is_bounded(self, make_app: AppFactory) -> None:
        async with running_receiver() as receiver, bank(make_app) as (app, client):
            receiver.queue(Reply(500, body=b"x" * 100_000))
            endpoint = await register(client, receiver.url())
            await publish(client)
            await dispatcher_of(app).run_once()
            [attempt] = (await only_delivery(client, endpoint))["attempts"]
        assert attempt["response_excerpt"] == "x" * 1024

    async def test_a_slow_endpoint_times_out(self, make_app: AppFactory) -> None:
        async with (
            running_receiver() as receiver,
            bank(make_app, webhook_timeout_seconds=0.2) as (app, client),
        ):
            receiver.queue(Reply(200, delay_seconds=0.6))
            endpoint = await register(client, receiver.url())
            await publish(client)
            await dispatcher_of(app).run_once()
            delivery = await only_delivery(client, endpoint)
        assert delivery["status"] == "pending"
        assert delivery["attempts"][0]["error"] == "no answer within 0.2 s"
        assert delivery["attempts"][0]["status_code"] is None

    async def test_an_unreachable_endpoint_is_retried(self, make_app: AppFactory) -> None:
        async with running_receiver() as receiver:
            url = receiver.url()
        async with bank(make_app) as (app, client):  # the receiver has stopped: refused
            endpoint = await register(client, url)
            await publish(client)
            await dispatcher_of(app).run_once()
            delivery = await only_delivery(client, endpoint)
        assert delivery["status"] == "pending"
        assert delivery["attempts"][0]["error"].startswith("ConnectError")

    async def test_a_deleted_endpoint_gets_nothing_more(self, make_app: AppFactory) -> None:
        async with running_receiver() as receiver, bank(make_app) as (app, client):
            endpoint = await register(client, receiver.url())
            await publish(client)
            await client.delete(
                f"/v1/webhook-endpoints/{endpoint['id']}", headers=as_customer("alice")
            )
            assert await dispatcher_of(app).run_once() == 0
        assert receiver.requests == []


class TestBackgroundDispatcher:
    async def test_a_new_event_goes_out_at_once_not_at_the_next_poll(
        self, make_app: AppFactory
    ) -> None:
        """Committing the event wakes the dispatcher; its poll interval here is a minute."""
        async with running_receiver() as receiver:
            app = make_app(**DEV, dispatcher_poll_interval_seconds=60)
            async with app_client(app) as client:
                await register(client, receiver.url())
                await publish(client)
                await wait_until(lambda: len(receiver.requests) == 1, timeout_seconds=5)

    async def test_stopping_waits_for_the_attempt_in_flight(self, make_app: AppFactory) -> None:
        async with running_receiver() as receiver:
            receiver.queue(Reply(200, delay_seconds=0.3))
            app = make_app(**DEV)
            async with app_client(app) as client:
                endpoint = await register(client, receiver.url())
                await publish(client)
                await wait_until(lambda: len(receiver.requests) == 1, what="the attempt to start")
            # The service has stopped: the attempt it had begun was finished and recorded.
            async with bank(make_app) as (_app, client):
                delivery = await only_delivery(client, endpoint)
        assert delivery["status"] == "succeeded"
        assert delivery["attempts"][0]["status_code"] == 200


class TestRedeliver:
    async def test_valid(self, make_app: AppFactory) -> None:
        async with running_receiver() as receiver, bank(make_app) as (app, client):
            endpoint = await register(client, receiver.url())
            await publish(client)
            await dispatcher_of(app).run_once()
            delivery = await only_delivery(client, endpoint)
            response = await client.post(
                f"/v1/deliveries/{delivery['id']}/redeliver", headers=as_customer("alice")
            )
            assert response.status_code == 202, response.text
            assert response.json()["status"] == "pending"
            assert await dispatcher_of(app).run_once() == 1
            again = await only_delivery(client, endpoint)
        assert again["status"] == "succeeded"
        assert again["attempts_made"] == 2
        first, second = receiver.requests
        assert first.headers["webhook-id"] == second.headers["webhook-id"]
        assert first.body == second.body

    async def test_a_failed_delivery_gets_a_fresh_round(
        self, make_app: AppFactory, clock: Clock
    ) -> None:
        async with running_receiver() as receiver, bank(make_app) as (app, client):
            receiver.default = Reply(500)
            endpoint = await register(client, receiver.url())
            await publish(client)
            for _ in range(ATTEMPTS_MAX):
                await dispatcher_of(app).run_once()
                clock.advance(27 * HOURS)
            delivery = await only_delivery(client, endpoint)
            assert delivery["status"] == "failed"
            await client.post(
                f"/v1/deliveries/{delivery['id']}/redeliver", headers=as_customer("alice")
            )
            await dispatcher_of(app).run_once()
            again = await only_delivery(client, endpoint)
        assert again["status"] == "pending", "attempt 11 failed too, and is retried on schedule"
        assert again["attempts_made"] == ATTEMPTS_MAX + 1
        assert again["next_attempt_at"] is not None

    async def test_still_pending(self, client: httpx.AsyncClient) -> None:
        endpoint = await register(client, "https://hooks.example.test/hook")
        await publish(client)
        [delivery] = await deliveries(client, endpoint)
        response = await client.post(
            f"/v1/deliveries/{delivery['id']}/redeliver", headers=as_customer("alice")
        )
        assert_problem(response, 409, "delivery-pending")

    async def test_endpoint_disabled(self, make_app: AppFactory) -> None:
        async with running_receiver() as receiver, bank(make_app) as (app, client):
            endpoint = await register(client, receiver.url())
            await publish(client)
            await dispatcher_of(app).run_once()
            [delivery] = await deliveries(client, endpoint)
            await client.post(
                f"/v1/webhook-endpoints/{endpoint['id']}/disable", headers=as_customer("alice")
            )
            response = await client.post(
                f"/v1/deliveries/{delivery['id']}/redeliver", headers=as_customer("alice")
            )
        assert_problem(response, 409, "webhook-endpoint-disabled")

    async def test_foreign_object(self, client: httpx.AsyncClient) -> None:
        endpoint = await register(client, "https://hooks.example.test/hook")
        await publish(client)
        [delivery] = await deliveries(client, endpoint)
        for path in (
            f"/v1/deliveries/{delivery['id']}",
            f"/v1/deliveries/{delivery['id']}/redeliver",
        ):
            method = client.get if path.endswith(delivery["id"]) else client.post
            response = await method(path, headers=as_customer("mallory"))
            assert_problem(response, 404, "delivery-not-found")
        listed = await client.get(
            f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=as_customer("mallory")
        )
        assert_problem(listed, 404, "webhook-endpoint-not-found")


STAFF_SUBJECT = "staff:6f1c2b1e-8f5a-4c39-9a51-0d3e2f7b9a10"


def as_staff(*scopes: Scope) -> dict[str, str]:
    """A signed-in staff member's headers (an operator token naming `staff:<id>`)."""
    return as_principal(STAFF_SUBJECT, PrincipalKind.operator, *scopes)


async def finished_delivery(
    app: FastAPI, client: httpx.AsyncClient, url: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Alice's endpoint at `url` and its one delivery, attempted once (and so finished, as
    long as the receiver answered 2xx or 410)."""
    endpoint = await register(client, url)
    await publish(client)
    assert await dispatcher_of(app).run_once() == 1
    return endpoint, await only_delivery(client, endpoint)


class TestOperatorRedeliver:
    """Operators (`accounts:admin`) send any customer's finished delivery again, on call for
    "my webhooks stopped arriving"; the customer's own rule is unchanged."""

    async def test_valid(self, make_app: AppFactory) -> None:
        async with running_receiver() as receiver, bank(make_app) as (app, client):
            endpoint, delivery = await finished_delivery(app, client, receiver.url())
            response = await client.post(
                f"/v1/deliveries/{delivery['id']}/redeliver",
                headers=as_staff(Scope.accounts_admin),
            )
            assert response.status_code == 202, response.text
            assert response.json()["status"] == "pending"
            assert response.json()["id"] == delivery["id"]
            assert await dispatcher_of(app).run_once() == 1
            again = await only_delivery(client, endpoint)
        assert again["status"] == "succeeded"
        assert again["attempts_made"] == 2
        first, second = receiver.requests
        assert first.headers["webhook-id"] == second.headers["webhook-id"]
        assert first.body == second.body

    async def test_asked_twice_sends_once(self, make_app: AppFactory) -> None:
        """Idempotent on the delivery id: the same row is armed again, never a copy; a
        second ask while it is armed is refused, and nothing more goes out."""
        async with running_receiver() as receiver, bank(make_app) as (app, client):
            endpoint, delivery = await finished_delivery(app, client, receiver.url())
            path = f"/v1/deliveries/{delivery['id']}/redeliver"
            first = await client.post(path, headers=as_staff(Scope.accounts_admin))
            assert first.status_code == 202, first.text
            again = await client.post(path, headers=as_staff(Scope.accounts_admin))
            assert_problem(again, 409, "delivery-pending")
            assert await dispatcher_of(app).run_once() == 1
            assert await dispatcher_of(app).run_once() == 0
            listed = await deliveries(client, endpoint)
        assert [item["id"] for item in listed] == [delivery["id"]]
        assert len(receiver.requests) == 2

    async def test_still_pending(self, client: httpx.AsyncClient) -> None:
        endpoint = await register(client, "https://hooks.example.test/hook")
        await publish(client)
        [delivery] = await deliveries(client, endpoint)
        response = await client.post(
            f"/v1/deliveries/{delivery['id']}/redeliver", headers=as_staff(Scope.accounts_admin)
        )
        assert_problem(response, 409, "delivery-pending")

    async def test_unknown(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            f"/v1/deliveries/{uuid.uuid4()}/redeliver", headers=as_staff(Scope.accounts_admin)
        )
        assert_problem(response, 404, "delivery-not-found")

    async def test_endpoint_disabled(self, make_app: AppFactory) -> None:
        """Operators do not send to an endpoint its customer switched off (or that said 410)."""
        async with running_receiver() as receiver, bank(make_app) as (app, client):
            receiver.default = Reply(410)
            _endpoint, delivery = await finished_delivery(app, client, receiver.url())
            assert delivery["status"] == "failed"
            response = await client.post(
                f"/v1/deliveries/{delivery['id']}/redeliver",
                headers=as_staff(Scope.accounts_admin),
            )
        assert_problem(response, 409, "webhook-endpoint-disabled")

    async def test_a_customer_still_reaches_only_their_own(self, make_app: AppFactory) -> None:
        async with running_receiver() as receiver, bank(make_app) as (app, client):
            _endpoint, delivery = await finished_delivery(app, client, receiver.url())
            response = await client.post(
                f"/v1/deliveries/{delivery['id']}/redeliver", headers=as_customer("mallory")
            )
            assert_problem(response, 404, "delivery-not-found")
            assert await dispatcher_of(app).run_once() == 0
        assert len(receiver.requests) == 1

    @pytest.mark.parametrize(
        ("subject", "kind", "scope"),
        [
            (STAFF_SUBJECT, PrincipalKind.operator, Scope.audit_read),
            # webhooks:manage makes a customer an owner; an operator owns no endpoint.
            (STAFF_SUBJECT, PrincipalKind.operator, Scope.webhooks_manage),
            ("alice", PrincipalKind.customer, Scope.transfers_read),
            ("robot", PrincipalKind.service, Scope.notifications_publish),
        ],
        ids=["operator-audit-read", "operator-webhooks-manage", "customer-reader", "worker"],
    )
    async def test_neither_scope(
        self, make_app: AppFactory, subject: str, kind: PrincipalKind, scope: Scope
    ) -> None:
        # Minted when the test runs, not at collection: a token lives 15 minutes, and a
        # whole suite takes longer than that.
        headers = as_principal(subject, kind, scope)
        async with running_receiver() as receiver, bank(make_app) as (app, client):
            _endpoint, delivery = await finished_delivery(app, client, receiver.url())
            response = await client.post(
                f"/v1/deliveries/{delivery['id']}/redeliver", headers=headers
            )
            assert_problem(response, 403, "insufficient-scope")
            assert await dispatcher_of(app).run_once() == 0
        assert len(receiver.requests) == 1
        assert "accounts:admin" in response.json()["detail"]  # what would have let it


PUBLISHER_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PUBLISHER_SPAN_ID = "00f067aa0ba902b7"
PUBLISHER_TRACE = {
    "traceparent": f"00-{PUBLISHER_TRACE_ID}-{PUBLISHER_SPAN_ID}-01",
    "tracestate": "vendor=opaque",
}


def _trace_and_span(request: ReceivedRequest) -> tuple[str, str]:
    version, trace_id, span_id, _flags = request.headers["traceparent"].split("-")
    assert version == "00"
    return trace_id, span_id


class TestTheTraceCrossesTheOutbox:
    """The trace of the request that published the event is stored with it; each delivery
    attempt, redeliveries too, is a span of that trace, named on the webhook request."""

    async def test_deliveries_and_redeliveries_join_the_publishers_trace(
        self, make_app: AppFactory
    ) -> None:
        async with running_receiver() as receiver, bank(make_app) as (app, client):
            endpoint = await register(client, receiver.url())
            await publish(client, headers=PUBLISHER_TRACE)
            assert await dispatcher_of(app).run_once() == 1
            delivery = await only_delivery(client, endpoint)
            response = await client.post(
                f"/v1/deliveries/{delivery['id']}/redeliver", headers=as_customer("alice")
            )
            assert response.status_code == 202, response.text
            assert await dispatcher_of(app).run_once() == 1
        first, second = receiver.requests
        first_trace, first_span = _trace_and_span(first)
        second_trace, second_span = _trace_and_span(second)
        assert first_trace == second_trace == PUBLISHER_TRACE_ID
        assert len({PUBLISHER_SPAN_ID, first_span, second_span}) == 3, "a span per attempt"
        assert first.headers["tracestate"] == "vendor=opaque"

    async def test_only_the_w3c_headers_leave_the_bank(self, make_app: AppFactory) -> None:
        async with running_receiver() as receiver, bank(make_app) as (app, client):
            await register(client, receiver.url())
            await publish(client, headers={**PUBLISHER_TRACE, "X-Request-ID": "inside-only"})
            assert await dispatcher_of(app).run_once() == 1
        [request] = receiver.requests
        assert "x-request-id" not in request.headers
        assert "baggage" not in request.headers
        assert _trace_and_span(request)[0] == PUBLISHER_TRACE_ID


class TestConcurrentDispatchers:
    async def test_two_dispatchers_never_send_the_same_attempt(
        self,
        make_app: AppFactory,
        database_url: str,
        clock: Clock,
        resolver: StubResolver,
        network: LoopbackNetwork,
    ) -> None:
        async with running_receiver() as receiver, bank(make_app) as (_app, client):
            receiver.default = Reply(204, delay_seconds=0.02)  # so the two overlap
            endpoint = await register(client, receiver.url())
            for _ in range(40):
                await publish(client)
            async with (
                _dispatcher(database_url, clock, resolver, network) as first,
                _dispatcher(database_url, clock, resolver, network) as second,
            ):
                handled = await asyncio.gather(_drain(first), _drain(second))
            listed = await client.get(
                f"/v1/webhook-endpoints/{endpoint['id']}/deliveries",
                headers=as_customer("alice"),
                params={"limit": 100},
            )
        assert sum(handled) == 40
        assert all(count > 0 for count in handled), f"both dispatchers worked: {handled}"
        assert len(receiver.requests) == 40
        assert len({request.headers["webhook-id"] for request in receiver.requests}) == 40
        items = listed.json()["items"]
        assert len(items) == 40
        assert {(item["status"], item["attempts_made"]) for item in items} == {("succeeded", 1)}

    async def test_a_locked_row_is_skipped_not_waited_for(
        self, make_app: AppFactory, clock: Clock
    ) -> None:
        async with running_receiver() as receiver, bank(make_app) as (app, client):
            endpoint = await register(client, receiver.url())
            await publish(client)
            await publish(client)
            first, _second = await deliveries(client, endpoint)
            database: Database = app.state.database
            async with database.engine.connect() as holder, holder.begin():
                await holder.exec_driver_sql(
                    "SELECT id FROM webhook_deliveries WHERE id = $1 FOR UPDATE",
                    (uuid.UUID(first["id"]),),
                )
                # Another dispatcher is mid-claim on one row: this one takes the other at once.
                assert await asyncio.wait_for(dispatcher_of(app).run_once(), 5) == 1
            assert await dispatcher_of(app).run_once() == 1
        assert len(receiver.requests) == 2

    async def test_an_attempt_whose_lease_expired_cannot_record_over_the_next(
        self, make_app: AppFactory, clock: Clock
    ) -> None:
        async with (
            running_receiver() as receiver,
            bank(make_app, dispatcher_lease_seconds=60) as (app, client),
        ):
            endpoint = await register(client, receiver.url())
            await publish(client)
            # A dispatcher claims the delivery, then stalls (crash, pause) before sending.
            stale_token = uuid.uuid4()
            async with app.state.database.sessions() as session, session.begin():
                [stalled] = await repository.claim_deliveries(
                    session,
                    now=clock.now,
                    lease_token=stale_token,
                    lease_expires_at=clock.now + timedelta(seconds=60),
                    limit=10,
                )
            assert await dispatcher_of(app).run_once() == 0, "leased: nobody else sends it"
            clock.advance(61)
            # The lease expired: the stalled attempt is written down as abandoned, and the
            # next waits the schedule's delay, as after any failed attempt.
            assert await dispatcher_of(app).run_once() == 1, "the abandoned attempt settled"
            settled = await only_delivery(client, endpoint)
            wait = datetime.fromisoformat(settled["next_attempt_at"]) - clock.now
            assert 5 * 0.9 <= wait.total_seconds() <= 5 * 1.1
            assert receiver.requests == []
            clock.advance(wait.total_seconds())
            assert await dispatcher_of(app).run_once() == 1, "the next attempt is due: sent"
            # The stalled one wakes and tries to record its attempt: refused, nothing written.
            async with app.state.database.sessions() as session, session.begin():
                recorded = await repository.record_attempt(
                    session,
                    lease_token=stale_token,
                    attempt=DeliveryAttemptRow(
                        id=uuid.uuid4(),
                        delivery_id=stalled.delivery_id,
                        number=stalled.number,
                        started_at=clock.now,
                        status_code=500,
                        latency_ms=1,
                        outcome="failed",
                        error=None,
                        response_excerpt=None,
                    ),
                    status="pending",
                    next_attempt_at=clock.now,
                    now=clock.now,
                )
            delivery = await only_delivery(client, endpoint)
        assert recorded is False
        assert delivery["status"] == "succeeded"
        assert [(attempt["number"], attempt["outcome"]) for attempt in delivery["attempts"]] == [
            (2, "succeeded"),
            (1, "abandoned"),
        ]
        assert delivery["attempts"][1]["error"] == ABANDONED_ERROR
        assert len(receiver.requests) == 1


@asynccontextmanager
async def _dispatcher(
    database_url: str, clock: Clock, resolver: StubResolver, network: LoopbackNetwork
) -> AsyncIterator[Dispatcher]:
    """A dispatcher of its own, as another replica of the service would run it."""
    database = Database(to_asyncpg_url(database_url), pool_size=4)
    client = httpx.AsyncClient(
        transport=GuardedTransport(
            policy=TargetPolicy(allow_http=True, allow_loopback=True),
            resolver=resolver,
            network_backend=network,
        ),
        timeout=5,
        trust_env=False,
    )
    options = DispatcherOptions(
        batch_size=5,
        concurrency=4,
        poll_interval_seconds=0.02,
        lease_seconds=60,
        webhook_timeout_seconds=5,
        email_timeout_seconds=5,
    )
    try:
        yield Dispatcher(
            sessions=database.sessions,
            client=client,
            options=options,
            clock=clock,
            key_ring=parse_key_ring(SECRETS_KEYS),
        )
    finally:
        await client.aclose()
        await database.dispose()


async def _drain(dispatcher: Dispatcher) -> int:
    handled = 0
    for _ in range(100):
        count = await dispatcher.run_once()
        if count == 0:
            return handled
        handled += count
    raise AssertionError("still busy after 100 passes")


class DyingTransport(httpx.AsyncBaseTransport):
    """Every request kills its sender before any answer: claimed, never finished."""

    def __init__(self) -> None:
        self.sends = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sends += 1
        raise SenderDied(f"the payload to {request.url} killed its sender")


@asynccontextmanager
async def _dying_dispatcher(
    app: FastAPI, clock: Clock, transport: DyingTransport
) -> AsyncIterator[Dispatcher]:
    """A dispatcher on the app's database whose every webhook send dies."""
    client = httpx.AsyncClient(transport=transport, timeout=5, trust_env=False)
    options = DispatcherOptions(
        batch_size=5,
        concurrency=4,
        poll_interval_seconds=0.02,
        lease_seconds=60,
        webhook_timeout_seconds=5,
        email_timeout_seconds=5,
    )
    try:
        yield Dispatcher(
            sessions=app.state.database.sessions,
            client=client,
            options=options,
            clock=clock,
            key_ring=parse_key_ring(SECRETS_KEYS),
        )
    finally:
        await client.aclose()


async def _let_every_send_die(dispatcher: Dispatcher, clock: Clock) -> None:
    """Pass after pass, each beyond the lease and the schedule's longest wait. Bounded: on
    a dispatcher that never gives up this ends too, and the caller's assertions fail."""
    for _ in range(2 * (ATTEMPTS_MAX + 5)):
        await dispatcher.run_once()
        clock.advance(27 * HOURS)


ABANDONED_ERROR = "the attempt did not finish: its lease expired"


class TestAbandonedAttempts:
    """An attempt that never finishes (its sender died or hung past the lease) counts."""

    async def test_a_delivery_that_kills_its_sender_ends_failed_after_the_schedule(
        self, make_app: AppFactory, clock: Clock
    ) -> None:
        transport = DyingTransport()
        async with (
            bank(make_app) as (app, client),
            _dying_dispatcher(app, clock, transport) as dispatcher,
        ):
            endpoint = await register(client, "http://127.0.0.1:9/hook")
            await publish(client)
            await _let_every_send_die(dispatcher, clock)
            delivery = await only_delivery(client, endpoint)
            due_afterwards = await dispatcher.run_once()
        assert delivery["status"] == "failed", (
            f"{delivery['status']} after {transport.sends} sends that never finished"
        )
        assert due_afterwards == 0, "nothing is due any more"
        assert transport.sends == ATTEMPTS_MAX
        assert delivery["attempts_made"] == ATTEMPTS_MAX
        assert delivery["next_attempt_at"] is None
        attempts = delivery["attempts"]
        assert [attempt["number"] for attempt in attempts] == list(range(ATTEMPTS_MAX, 0, -1))
        assert {attempt["outcome"] for attempt in attempts} == {"abandoned"}
        assert {attempt["error"] for attempt in attempts} == {ABANDONED_ERROR}
        assert {attempt["status_code"] for attempt in attempts} == {None}

    async def test_a_delivery_failed_by_abandoned_attempts_can_be_redelivered(
        self, make_app: AppFactory, clock: Clock
    ) -> None:
        async with (
            running_receiver() as receiver,
            bank(make_app) as (app, client),
            _dying_dispatcher(app, clock, DyingTransport()) as dispatcher,
        ):
            endpoint = await register(client, receiver.url())
            await publish(client)
            await _let_every_send_die(dispatcher, clock)
            delivery = await only_delivery(client, endpoint)
            assert delivery["status"] == "failed"
            response = await client.post(
                f"/v1/deliveries/{delivery['id']}/redeliver", headers=as_customer("alice")
            )
            assert response.status_code == 202, response.text
            assert await dispatcher_of(app).run_once() == 1, "a fresh round, sent at once"
            again = await only_delivery(client, endpoint)
        assert again["status"] == "succeeded"
        assert again["attempts_made"] == ATTEMPTS_MAX + 1
        assert [attempt["outcome"] for attempt in again["attempts"][:2]] == [
            "succeeded",
            "abandoned",
        ]
        assert len(receiver.requests) == 1


async def attempts_logged(client: httpx.AsyncClient, endpoint: dict[str, Any]) -> int:
    items = await deliveries(client, endpoint)
    return 0 if not items else len((await only_delivery(client, endpoint))["attempts"])


class TestExactlyOnceAcrossRestarts:
    async def test_failing_receiver_gets_the_event_once_after_retries_and_a_restart(
        self, make_app: AppFactory, clock: Clock
    ) -> None:
        """The dispatcher runs in the service's lifespan; the test only moves the clock."""

        async def attempt(client: httpx.AsyncClient, endpoint: dict[str, Any], n: int) -> None:
            await wait_until(lambda: len(receiver.requests) == n, what=f"attempt {n} sent")
            await wait_for(
                lambda: _equals(attempts_logged(client, endpoint), n), what=f"attempt {n} logged"
            )

        async with running_receiver() as receiver:
            receiver.queue(Reply(500), Reply(503), Reply(502))
            receiver.default = Reply(200)

            async with app_client(make_app(**DEV)) as client:
                endpoint = await register(client, receiver.url())
                event = await publish(client)
                await attempt(client, endpoint, 1)  # at once
                clock.advance(6)
                await attempt(client, endpoint, 2)  # after 5 s
            # The service stops between attempts; a new one starts on the same database.
            async with app_client(make_app(**DEV)) as client:
                clock.advance(5.5 * 60)
                await attempt(client, endpoint, 3)  # after 5 min
                clock.advance(33 * 60)
                await attempt(client, endpoint, 4)  # after 30 min: 200
                delivered_at = clock.now
                delivery = await only_delivery(client, endpoint)
            # Much later, in a third life: nothing is due any more, nothing is sent again.
            clock.advance(48 * HOURS)
            app = make_app(**DEV, dispatcher_enabled=False)
            async with app_client(app):
                assert await dispatcher_of(app).run_once() == 0

        assert delivery["status"] == "succeeded"
        codes = [attempt["status_code"] for attempt in reversed(delivery["attempts"])]
        assert codes == [500, 503, 502, 200]
        assert len(receiver.requests) == 4
        assert len({request.headers["webhook-id"] for request in receiver.requests}) == 1
        payload = verify(endpoint["secret"], receiver.requests[-1], now=delivered_at)
        assert payload["data"]["transfer_id"] == event["data"]["transfer_id"]


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected
