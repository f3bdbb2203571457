"""Webhook signing secrets sealed at rest under the key ring (kit.sealing): no plain text
in the database, bound to their row, opened under older keys, re-sealed by rotation."""

import base64
import secrets
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from contracts.secrets import SECRETS_RESEAL_PATH
from kit.db import Database
from kit.settings import to_asyncpg_url
from kit.testing import app_client
from notifications.tests.conftest import DEV, AppFactory
from notifications.tests.support import (
    Clock,
    as_customer,
    as_operator,
    as_worker,
    dispatcher_of,
    running_receiver,
    transfer_event,
)
from notifications.tests.test_delivery import verify

OLD_KEY = base64.b64encode(secrets.token_bytes(32)).decode()
NEW_KEY = base64.b64encode(secrets.token_bytes(32)).decode()
OLD_RING = f"old:{OLD_KEY}"
ROTATED_RING = f"new:{NEW_KEY},old:{OLD_KEY}"
# The columns a secret row keeps besides its own identity and lifetime.
_IDENTITY_COLUMNS = ("id", "endpoint_id", "created_at", "expires_at")


def _database(database_url: str) -> Database:
    return Database(to_asyncpg_url(database_url), pool_size=2)


async def _register(client: httpx.AsyncClient, url: str, customer_id: str) -> dict[str, Any]:
    response = await client.post(
        "/v1/webhook-endpoints",
        headers=as_customer(customer_id),
        json={"url": url, "event_types": ["transfer.completed"]},
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _secret_rows(database_url: str) -> list[dict[str, Any]]:
    database = _database(database_url)
    try:
        async with database.sessions() as session:
            rows = (await session.execute(text("SELECT * FROM webhook_secrets"))).mappings()
            return [dict(row) for row in rows]
    finally:
        await database.dispose()


async def _sealed_columns(database_url: str) -> list[str]:
    database = _database(database_url)
    try:
        async with database.sessions() as session:
            names = await session.execute(
                text(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = 'webhook_secrets' ORDER BY ordinal_position"
                )
            )
            return [name for name in names.scalars() if name not in _IDENTITY_COLUMNS]
    finally:
        await database.dispose()


async def _copy_secret(database_url: str, *, source: str, target: str) -> None:
    """Overwrite the target endpoint's secret columns with the source's (an attacker with
    write access to the table moving a secret to a row they read deliveries of)."""
    columns = await _sealed_columns(database_url)
    assignments = ", ".join(f"{name} = source.{name}" for name in columns)
    database = _database(database_url)
    try:
        async with database.sessions() as session, session.begin():
            await session.execute(
                text(
                    f"UPDATE webhook_secrets AS target SET {assignments} "  # noqa: S608 - column names from the catalog
                    "FROM webhook_secrets AS source "
                    "WHERE source.endpoint_id = :source AND target.endpoint_id = :target"
                ),
                {"source": uuid.UUID(source), "target": uuid.UUID(target)},
            )
    finally:
        await database.dispose()


async def _reseal_all(client: httpx.AsyncClient, *, limit: int) -> list[dict[str, Any]]:
    """Every batch of `POST /v1/admin/secrets/reseal`, following `next_after`."""
    batches: list[dict[str, Any]] = []
    after: str | None = None
    for _ in range(100):
        response = await client.post(
            SECRETS_RESEAL_PATH, headers=as_operator(), json={"after": after, "limit": limit}
        )
        assert response.status_code == 200, response.text
        batches.append(response.json())
        after = batches[-1]["next_after"]
        if after is None:
            return batches
    raise AssertionError("the re-sealing did not end within 100 batches")


class TestSealedAtRest:
    async def test_a_secret_row_holds_no_plain_text(
        self, make_app: AppFactory, database_url: str
    ) -> None:
        async with app_client(make_app(**DEV, dispatcher_enabled=False)) as client:
            endpoint = await _register(client, "http://127.0.0.1:9/hook", "alice")
        shown = endpoint["secret"]
        key_bytes = base64.b64decode(shown.removeprefix("whsec_"))
        [row] = await _secret_rows(database_url)
        for name, value in row.items():
            if isinstance(value, bytes):
                assert key_bytes not in value, f"column {name} holds the secret's bytes"
                assert shown.encode() not in value, f"column {name} holds the secret"
            else:
                assert shown.removeprefix("whsec_") not in str(value), f"column {name}: {value}"

    async def test_a_secret_copied_to_another_row_does_not_sign(
        self, make_app: AppFactory, database_url: str, clock: Clock
    ) -> None:
        async with running_receiver() as receiver:
            app = make_app(**DEV, dispatcher_enabled=False)
            async with app_client(app) as client:
                alice = await _register(client, receiver.url("/alice"), "alice")
                bob = await _register(client, receiver.url("/bob"), "bob")
                await _copy_secret(database_url, source=alice["id"], target=bob["id"])
                event = transfer_event(source_customer_id="carol", target_customer_id="bob")
                published = await client.post("/v1/events", json=event, headers=as_worker())
                assert published.status_code == 201, published.text
                await dispatcher_of(app).run_once()
        for request in receiver.requests:
            assert request.path == "/bob"
            with pytest.raises(Exception):  # noqa: B017, PT011 - any refusal will do
                verify(alice["secret"], request, now=clock.now)


class TestKeyRing:
    async def test_a_secret_sealed_under_an_old_key_still_signs_after_a_new_key(
        self, make_app: AppFactory, clock: Clock
    ) -> None:
        async with running_receiver() as receiver:
            async with app_client(make_app(**DEV, secrets_keys=OLD_RING)) as client:
                endpoint = await _register(client, receiver.url(), "alice")
            app = make_app(**DEV, dispatcher_enabled=False, secrets_keys=ROTATED_RING)
            async with app_client(app) as client:
                published = await client.post(
                    "/v1/events", json=transfer_event(), headers=as_worker()
                )
                assert published.status_code == 201, published.text
                assert await dispatcher_of(app).run_once() == 1
        [request] = receiver.requests
        verify(endpoint["secret"], request, now=clock.now)

    async def test_resealing_leaves_every_row_under_the_newest_key_and_signatures_verify(
        self, make_app: AppFactory, database_url: str, clock: Clock
    ) -> None:
        async with running_receiver() as receiver:
            async with app_client(make_app(**DEV, secrets_keys=OLD_RING)) as client:
                endpoints = [await _register(client, receiver.url(), "alice") for _ in range(3)]
                rotated = await client.post(
                    f"/v1/webhook-endpoints/{endpoints[0]['id']}/rotate-secret",
                    headers=as_customer("alice"),
                    json={"grace_seconds": 3600},
                )
                assert rotated.status_code == 200, rotated.text
            app = make_app(**DEV, dispatcher_enabled=False, secrets_keys=ROTATED_RING)
            async with app_client(app) as client:
                batches = await _reseal_all(client, limit=2)
                assert [batch["key_id"] for batch in batches] == ["new"] * len(batches)
                assert sum(batch["resealed"] for batch in batches) == 4
                assert all(batch["unreadable_ids"] == [] for batch in batches)
                again = await _reseal_all(client, limit=2)
                assert sum(batch["resealed"] for batch in again) == 0, "idempotent"
            rows = await _secret_rows(database_url)
            assert len(rows) == 4
            assert all(bytes(row["secret_sealed"]).startswith(b"sbk1\x03new") for row in rows)
            assert all(row["secret"] is None for row in rows)
            # The old key gone: everything still opens and signs.
            app = make_app(**DEV, dispatcher_enabled=False, secrets_keys=f"new:{NEW_KEY}")
            async with app_client(app) as client:
                published = await client.post(
                    "/v1/events", json=transfer_event(), headers=as_worker()
                )
                assert published.status_code == 201, published.text
                assert await dispatcher_of(app).run_once() == 3
        by_secret = {endpoint["secret"] for endpoint in endpoints[1:]}
        by_secret.add(rotated.json()["secret"])
        for request in receiver.requests:
            assert any(_verifies(secret, request, clock) for secret in by_secret)
        assert len(receiver.requests) == 3


def _verifies(secret: str, request: Any, clock: Clock) -> bool:
    try:
        verify(secret, request, now=clock.now)
    except Exception:
        return False
    return True


class TestPlainTextBeforeSealing:
    async def test_a_plain_text_secret_is_sealed_when_the_service_starts(
        self, make_app: AppFactory, database_url: str, clock: Clock
    ) -> None:
        async with running_receiver() as receiver:
            async with app_client(make_app(**DEV, dispatcher_enabled=False)) as client:
                endpoint = await _register(client, receiver.url(), "alice")
            # The row as a release before sealing wrote it.
            database = _database(database_url)
            try:
                async with database.sessions() as session, session.begin():
                    await session.execute(
                        text("UPDATE webhook_secrets SET secret = :plain, secret_sealed = NULL"),
                        {"plain": endpoint["secret"]},
                    )
            finally:
                await database.dispose()
            app = make_app(**DEV, dispatcher_enabled=False)
            async with app_client(app) as client:
                [row] = await _secret_rows(database_url)
                assert row["secret"] is None, "no plain text once the service has started"
                assert row["secret_sealed"] is not None
                published = await client.post(
                    "/v1/events", json=transfer_event(), headers=as_worker()
                )
                assert published.status_code == 201, published.text
                assert await dispatcher_of(app).run_once() == 1
        [request] = receiver.requests
        verify(endpoint["secret"], request, now=clock.now)
