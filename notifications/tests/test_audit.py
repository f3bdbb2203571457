"""The audit trail: one event per change, written in the change's transaction, with the
actor who made it; none for a change refused or changing nothing; never a secret."""

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import NullPool, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from contracts.auth import PrincipalKind
from kit.settings import to_asyncpg_url
from kit.testing import app_client, assert_problem
from notifications.models import AUDIT_EVENTS
from notifications.tests.conftest import DEV, AppFactory
from notifications.tests.support import (
    PUBLIC_HOST,
    Clock,
    Reply,
    as_customer,
    as_operator,
    as_principal,
    as_worker,
    dispatcher_of,
    running_receiver,
    transfer_event,
)

ALICE = str(uuid.uuid4())
MALLORY = str(uuid.uuid4())
URL = f"https://{PUBLIC_HOST}/hook"
REQUEST_ID = "req-audit-test-1"


@dataclass
class Service:
    app: FastAPI
    client: httpx.AsyncClient

    async def events(self) -> list[dict[str, Any]]:
        """Every stored audit event, oldest first, as the table holds it."""
        async with self.app.state.database.engine.connect() as connection:
            rows = await connection.execute(select(AUDIT_EVENTS).order_by(AUDIT_EVENTS.c.sequence))
            return [dict(row._mapping) for row in rows]

    async def stored_json(self) -> str:
        """The whole trail as PostgreSQL renders it: what a reader of the table would see."""
        async with self.app.state.database.engine.connect() as connection:
            rendered = await connection.execute(
                text("SELECT coalesce(string_agg(to_jsonb(a)::text, '\n'), '') FROM audit_events a")
            )
            return str(rendered.scalar_one())

    async def create(self, customer_id: str = ALICE, url: str = URL, **body: Any) -> dict[str, Any]:
        response = await self.client.post(
            "/v1/webhook-endpoints",
            headers={**as_customer(customer_id), "X-Request-ID": REQUEST_ID},
            json={"url": url, "event_types": ["transfer.completed"], **body},
        )
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created


@pytest.fixture
async def bank(make_app: AppFactory) -> AsyncIterator[Service]:
    """The service in dev mode (a receiver on 127.0.0.1 is allowed), dispatcher by hand."""
    app = make_app(**DEV, dispatcher_enabled=False)
    async with app_client(app) as client:
        yield Service(app, client)


def _only(events: list[dict[str, Any]], action: str) -> dict[str, Any]:
    [event] = [event for event in events if event["action"] == action]
    return event


def _assert_by_alice(event: dict[str, Any]) -> None:
    assert event["actor_id"] == ALICE
    assert event["actor_type"] == "customer"
    assert event["outcome"] == "succeeded"


class TestEveryChangeIsAudited:
    async def test_created(self, bank: Service) -> None:
        endpoint = await bank.create(description="payroll")
        [event] = await bank.events()
        _assert_by_alice(event)
        assert event["action"] == "webhook_endpoint.created"
        assert (event["subject_type"], event["subject_id"]) == ("webhook_endpoint", endpoint["id"])
        assert event["request_id"] == REQUEST_ID
        assert event["before"] is None
        assert event["after"] == {
            "url_origin": f"https://{PUBLIC_HOST}",
            "url_sha256": hashlib.sha256(URL.encode()).hexdigest(),
            "event_types": ["transfer.completed"],
            "description": "payroll",
            "enabled": True,
            "disabled_reason": None,
        }

    async def test_updated_records_what_changed(self, bank: Service) -> None:
        endpoint = await bank.create(description="old")
        new_url = f"https://{PUBLIC_HOST}/other"
        response = await bank.client.patch(
            f"/v1/webhook-endpoints/{endpoint['id']}",
            headers=as_customer(ALICE),
            json={"description": "new", "url": new_url},
        )
        assert response.status_code == 200, response.text
        event = _only(await bank.events(), "webhook_endpoint.updated")
        _assert_by_alice(event)
        assert event["before"] == {
            "description": "old",
            "url_sha256": hashlib.sha256(URL.encode()).hexdigest(),
        }
        assert event["after"] == {
            "description": "new",
            "url_sha256": hashlib.sha256(new_url.encode()).hexdigest(),
        }

    async def test_deleted(self, bank: Service) -> None:
        endpoint = await bank.create()
        path = f"/v1/webhook-endpoints/{endpoint['id']}"
        assert (await bank.client.delete(path, headers=as_customer(ALICE))).status_code == 204
        event = _only(await bank.events(), "webhook_endpoint.deleted")
        _assert_by_alice(event)
        assert event["subject_id"] == endpoint["id"]
        assert event["before"]["enabled"] is True
        assert event["after"] is None

    async def test_disabled_then_enabled(self, bank: Service) -> None:
        endpoint = await bank.create()
        path = f"/v1/webhook-endpoints/{endpoint['id']}"
        await bank.client.post(f"{path}/disable", headers=as_customer(ALICE))
        await bank.client.post(f"{path}/enable", headers=as_customer(ALICE))
        events = await bank.events()
        assert [event["action"] for event in events] == [
            "webhook_endpoint.created",
            "webhook_endpoint.disabled",
            "webhook_endpoint.enabled",
        ]
        assert events[1]["after"] == {"enabled": False, "disabled_reason": "disabled"}
        assert events[2]["before"] == {"enabled": False, "disabled_reason": "disabled"}
        assert events[2]["after"] == {"enabled": True, "disabled_reason": None}

    async def test_rotated(self, bank: Service, clock: Clock) -> None:
        endpoint = await bank.create()
        rotated = await bank.client.post(
            f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret",
            headers=as_customer(ALICE),
            json={"grace_seconds": 3600},
        )
        assert rotated.status_code == 200, rotated.text
        event = _only(await bank.events(), "webhook_endpoint.rotated")
        _assert_by_alice(event)
        assert event["before"] == {"secrets_live": 1}
        assert event["after"]["secrets_live"] == 2
        expire_at = datetime.fromisoformat(event["after"]["previous_secrets_expire_at"])
        assert expire_at == clock.now + timedelta(hours=1)

    async def test_redelivered_names_the_transfer(self, bank: Service) -> None:
        async with running_receiver() as receiver:
            endpoint = await bank.create(url=receiver.url())
            event = transfer_event(source_customer_id=ALICE)
            published = await bank.client.post("/v1/events", json=event, headers=as_worker())
            assert published.status_code == 201
            assert await dispatcher_of(bank.app).run_once() == 1
            listed = await bank.client.get(
                f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=as_customer(ALICE)
            )
            [delivery] = listed.json()["items"]
            response = await bank.client.post(
                f"/v1/deliveries/{delivery['id']}/redeliver", headers=as_customer(ALICE)
            )
            assert response.status_code == 202, response.text
        audited = _only(await bank.events(), "delivery.redelivered")
        _assert_by_alice(audited)
        assert (audited["subject_type"], audited["subject_id"]) == ("delivery", delivery["id"])
        assert str(audited["transfer_id"]) == event["data"]["transfer_id"]
        assert audited["account_ids"] == [
            event["data"]["source_account_id"],
            event["data"]["target_account_id"],
        ]
        assert audited["before"] == {"status": "succeeded", "attempts_made": 1}
        assert audited["after"]["status"] == "pending"

    async def test_redelivered_by_an_operator_names_the_staff_member(self, bank: Service) -> None:
        staff = "staff:6f1c2b1e-8f5a-4c39-9a51-0d3e2f7b9a10"
        async with running_receiver() as receiver:
            endpoint = await bank.create(url=receiver.url())
            event = transfer_event(source_customer_id=ALICE)
            published = await bank.client.post("/v1/events", json=event, headers=as_worker())
            assert published.status_code == 201
            assert await dispatcher_of(bank.app).run_once() == 1
            listed = await bank.client.get(
                f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=as_customer(ALICE)
            )
            [delivery] = listed.json()["items"]
            response = await bank.client.post(
                f"/v1/deliveries/{delivery['id']}/redeliver",
                headers={**as_operator(staff), "X-Request-ID": REQUEST_ID},
            )
            assert response.status_code == 202, response.text
        audited = _only(await bank.events(), "delivery.redelivered")
        assert (audited["actor_id"], audited["actor_type"]) == (staff, "operator")
        assert audited["request_id"] == REQUEST_ID
        assert (audited["subject_type"], audited["subject_id"]) == ("delivery", delivery["id"])
        assert str(audited["transfer_id"]) == event["data"]["transfer_id"]
        assert audited["after"]["endpoint_id"] == endpoint["id"]

    async def test_auto_disabled_by_the_dispatcher_after_410(self, bank: Service) -> None:
        async with running_receiver() as receiver:
            receiver.default = Reply(410)
            endpoint = await bank.create(url=receiver.url())
            event = transfer_event(source_customer_id=ALICE)
            await bank.client.post("/v1/events", json=event, headers=as_worker())
            assert await dispatcher_of(bank.app).run_once() == 1
        audited = _only(await bank.events(), "webhook_endpoint.auto_disabled")
        assert (audited["actor_id"], audited["actor_type"]) == (
            "notifications-dispatcher",
            "system",
        )
        assert audited["subject_id"] == endpoint["id"]
        assert audited["before"] == {"enabled": True}
        assert audited["after"]["enabled"] is False
        assert audited["after"]["disabled_reason"] == "gone"
        assert audited["after"]["event_id"] == event["id"]
        assert audited["request_id"] is None

    async def test_email_contact_changed_and_deleted(self, bank: Service) -> None:
        alice = as_customer(ALICE)
        for address in ("alice@example.test", "alice@work.example.test"):
            response = await bank.client.put(
                "/v1/email-contact", headers=alice, json={"address": address}
            )
            assert response.status_code == 200, response.text
        assert (await bank.client.delete("/v1/email-contact", headers=alice)).status_code == 204
        events = await bank.events()
        assert [event["action"] for event in events] == [
            "email_contact.changed",
            "email_contact.changed",
            "email_contact.deleted",
        ]
        for event in events:
            _assert_by_alice(event)
            assert (event["subject_type"], event["subject_id"]) == ("email_contact", ALICE)
        assert (events[0]["before"], events[0]["after"]) == (
            None,
            {"address": "alice@example.test"},
        )
        assert (events[1]["before"], events[1]["after"]) == (
            {"address": "alice@example.test"},
            {"address": "alice@work.example.test"},
        )
        assert (events[2]["before"], events[2]["after"]) == (
            {"address": "alice@work.example.test"},
            None,
        )


class TestNoEventWithoutAChange:
    async def test_refused_changes_write_nothing(self, make_app: AppFactory) -> None:
        app = make_app(dispatcher_enabled=False, webhook_endpoints_per_customer_max=1)
        async with app_client(app) as client:
            bank = Service(app, client)
            endpoint = await bank.create()
            path = f"/v1/webhook-endpoints/{endpoint['id']}"
            alice, mallory = as_customer(ALICE), as_customer(MALLORY)
            refused = [
                (
                    await client.patch(
                        path, headers=alice, json={"url": "https://169.254.169.254/"}
                    ),
                    400,
                ),
                (await client.patch(path, headers=mallory, json={"description": "mine"}), 404),
                (await client.delete(path, headers=mallory), 404),
                (await client.post(f"{path}/disable", headers=mallory), 404),
                (await client.post(f"{path}/rotate-secret", headers=mallory), 404),
                (
                    await client.post(
                        f"{path}/rotate-secret", headers=alice, json={"grace_seconds": -1}
                    ),
                    422,
                ),
                (
                    await client.post(
                        "/v1/webhook-endpoints",
                        headers=alice,
                        json={"url": URL, "event_types": ["transfer.completed"]},
                    ),
                    409,
                ),
                (await client.delete("/v1/email-contact", headers=alice), 404),
                (
                    await client.put(
                        "/v1/email-contact", headers=alice, json={"address": "not-an-address"}
                    ),
                    422,
                ),
            ]
            assert [response.status_code for response, _ in refused] == [
                status for _, status in refused
            ]
            events = await bank.events()
        assert [event["action"] for event in events] == ["webhook_endpoint.created"]

    async def test_a_redelivery_refused_writes_nothing(self, bank: Service) -> None:
        endpoint = await bank.create()
        await bank.client.post(
            "/v1/events", json=transfer_event(source_customer_id=ALICE), headers=as_worker()
        )
        listed = await bank.client.get(
            f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=as_customer(ALICE)
        )
        [delivery] = listed.json()["items"]
        response = await bank.client.post(
            f"/v1/deliveries/{delivery['id']}/redeliver", headers=as_customer(ALICE)
        )
        assert_problem(response, 409, "delivery-pending")
        assert [event["action"] for event in await bank.events()] == ["webhook_endpoint.created"]

    async def test_asking_for_the_state_it_is_in_writes_nothing(self, bank: Service) -> None:
        endpoint = await bank.create(description="same")
        path = f"/v1/webhook-endpoints/{endpoint['id']}"
        alice = as_customer(ALICE)
        for _ in range(2):
            await bank.client.post(f"{path}/disable", headers=alice)
            await bank.client.put(
                "/v1/email-contact", headers=alice, json={"address": "alice@example.test"}
            )
        unchanged = await bank.client.patch(path, headers=alice, json={"description": "same"})
        assert unchanged.status_code == 200
        assert unchanged.json()["updated_at"] == endpoint["updated_at"]
        assert [event["action"] for event in await bank.events()] == [
            "webhook_endpoint.created",
            "webhook_endpoint.disabled",
            "email_contact.changed",
        ]


class TestNoSecretInTheTrail:
    async def test_neither_signing_secrets_nor_url_tokens_are_stored(self, bank: Service) -> None:
        """Receivers often embed a capability token in the URL (Slack-style paths, query
        tokens): the trail keeps its origin and a fingerprint, never the URL itself."""
        url = f"https://{PUBLIC_HOST}/services/T0001/B0002/pathsecret9?token=querysecret7"
        endpoint = await bank.create(url=url)
        path = f"/v1/webhook-endpoints/{endpoint['id']}"
        alice = as_customer(ALICE)
        secrets = [endpoint["secret"]]
        for _ in range(2):
            rotated = await bank.client.post(f"{path}/rotate-secret", headers=alice)
            secrets.append(rotated.json()["secret"])
        other_url = f"https://{PUBLIC_HOST}/services/T0001/B0002/pathsecret8?token=querysecret6"
        await bank.client.patch(path, headers=alice, json={"url": other_url})
        await bank.client.delete(path, headers=alice)
        stored = await bank.stored_json()
        assert len(await bank.events()) == 5
        assert "whsec_" not in stored
        for secret in secrets:
            assert secret.removeprefix("whsec_") not in stored
        for fragment in ("pathsecret9", "querysecret7", "pathsecret8", "querysecret6"):
            assert fragment not in stored
        assert hashlib.sha256(url.encode()).hexdigest() in stored


class TestAuditEndpoints:
    async def test_an_operator_queries_verifies_and_exports(self, bank: Service) -> None:
        endpoint = await bank.create()
        await bank.client.post(
            f"/v1/webhook-endpoints/{endpoint['id']}/disable", headers=as_customer(ALICE)
        )
        operator = as_operator()
        listed = await bank.client.get(
            "/v1/admin/audit-events", headers=operator, params={"actor_id": ALICE}
        )
        assert listed.status_code == 200, listed.text
        items = listed.json()["items"]
        assert [item["action"] for item in items] == [
            "webhook_endpoint.created",
            "webhook_endpoint.disabled",
        ]
        assert {item["service"] for item in items} == {"notifications"}
        verified = await bank.client.get("/v1/admin/audit-events/verify", headers=operator)
        assert verified.json() == {
            "service": "notifications",
            "events_checked": 2,
            "ok": True,
            "first_broken_event_id": None,
            "first_broken_sequence": None,
            "reason": None,
            # The service under test runs without a checkpoint directory.
            "checkpoint_sequence": None,
            "checkpoint_published_at": None,
            "missing_from_sequence": None,
            "missing_to_sequence": None,
        }
        exported = await bank.client.get("/v1/admin/audit-events/export", headers=operator)
        lines = [json.loads(line) for line in exported.text.splitlines()]
        assert [line["id"] for line in lines] == [item["id"] for item in items]

    @pytest.mark.parametrize(
        "path",
        [
            "/v1/admin/audit-events",
            "/v1/admin/audit-events/verify",
            "/v1/admin/audit-events/export",
        ],
    )
    async def test_customers_and_the_worker_are_forbidden(self, bank: Service, path: str) -> None:
        for headers in (
            as_customer(ALICE),
            as_worker(),
            as_principal("operator-1", PrincipalKind.operator),
        ):
            assert_problem(await bank.client.get(path, headers=headers), 403, "insufficient-scope")

    async def test_the_trail_refuses_update_and_delete(
        self, bank: Service, database_url: str
    ) -> None:
        await bank.create()
        superuser = create_async_engine(to_asyncpg_url(database_url), poolclass=NullPool)
        try:
            for statement in (
                "UPDATE audit_events SET outcome = 'failed'",
                "DELETE FROM audit_events",
            ):
                # The service's role lacks the privilege; the trigger refuses even a superuser.
                async with bank.app.state.database.engine.connect() as connection:
                    with pytest.raises(DBAPIError, match="permission denied"):
                        await connection.execute(text(statement))
                async with superuser.connect() as connection:
                    with pytest.raises(DBAPIError, match="append-only"):
                        await connection.execute(text(statement))
        finally:
            await superuser.dispose()

    async def test_verify_names_an_event_rewritten_behind_the_trigger(
        self, bank: Service, database_url: str
    ) -> None:
        for _ in range(3):
            await bank.create()
        tampered = (await bank.events())[1]
        superuser = create_async_engine(to_asyncpg_url(database_url), poolclass=NullPool)
        try:
            async with superuser.begin() as connection:
                # As a superuser could: switch the trigger off, rewrite, switch it on again.
                await connection.execute(
                    text(
                        "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_or_delete"
                    )
                )
                await connection.execute(
                    text("UPDATE audit_events SET actor_id = 'someone-else' WHERE id = :id"),
                    {"id": tampered["id"]},
                )
                await connection.execute(
                    text("ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update_or_delete")
                )
        finally:
            await superuser.dispose()
        verified = await bank.client.get("/v1/admin/audit-events/verify", headers=as_operator())
        report = verified.json()
        assert report["ok"] is False
        assert report["first_broken_event_id"] == str(tampered["id"])
        assert report["events_checked"] == 1
