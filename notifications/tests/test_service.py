"""The service around the routes: its schema is its models, its settings fail fast."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pydantic import ValidationError
from sqlalchemy import Connection

from kit.migrations import alembic_config, upgrade_to_head
from kit.settings import to_asyncpg_dsn
from kit.testing import app_client
from notifications.config import Settings
from notifications.main import MIGRATIONS_PATH
from notifications.models import Base
from notifications.tests.conftest import SECRETS_KEYS, AppFactory


class TestService:
    async def test_migrations_match_the_models(self, make_app: AppFactory) -> None:
        def differences(connection: Connection) -> list[object]:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))

        app = make_app(dispatcher_enabled=False)
        async with app_client(app), app.state.database.engine.connect() as connection:
            assert await connection.run_sync(differences) == []

    async def test_ready_at_the_newest_migration(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/readyz")
        assert response.status_code == 200, response.text

    async def test_openapi_lists_the_routes_and_their_problems(
        self, client: httpx.AsyncClient
    ) -> None:
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert set(paths) >= {
            "/v1/events",
            "/v1/events/{event_id}",
            "/v1/webhook-endpoints",
            "/v1/webhook-endpoints/{endpoint_id}",
            "/v1/webhook-endpoints/{endpoint_id}/disable",
            "/v1/webhook-endpoints/{endpoint_id}/enable",
            "/v1/webhook-endpoints/{endpoint_id}/rotate-secret",
            "/v1/webhook-endpoints/{endpoint_id}/deliveries",
            "/v1/deliveries/{delivery_id}",
            "/v1/deliveries/{delivery_id}/redeliver",
            "/v1/email-contact",
            "/v1/admin/audit-events",
            "/v1/admin/audit-events/verify",
            "/v1/admin/audit-events/export",
        }
        assert {"201", "400", "409", "422"} <= set(
            paths["/v1/webhook-endpoints"]["post"]["responses"]
        )
        assert {"202", "404", "409"} <= set(
            paths["/v1/deliveries/{delivery_id}/redeliver"]["post"]["responses"]
        )

    async def test_openapi_shows_every_protected_operation_needs_a_bearer_token(
        self, client: httpx.AsyncClient
    ) -> None:
        paths = (await client.get("/openapi.json")).json()["paths"]
        operations = [
            (method, path, operation)
            for path, by_method in paths.items()
            if path not in {"/healthz", "/readyz"}
            for method, operation in by_method.items()
        ]
        assert [
            (m, path) for m, path, operation in operations if not operation.get("security")
        ] == []
        # The service's own routes also document their 401/403 (the audit routes are kit's).
        undocumented = [
            (method, path)
            for method, path, operation in operations
            if not path.startswith("/v1/admin/")
            and not {"401", "403"} <= set(operation["responses"])
        ]
        assert undocumented == []


class TestMigrations:
    async def test_0004_down_and_up_again_dates_the_leases_held(self, database_url: str) -> None:
        """A row leased under 0003 gets its lease's start (its updated_at) on the way up;
        the way down drops the column and indexes 0004 added."""
        config = alembic_config(MIGRATIONS_PATH, database_url)
        await asyncio.to_thread(command.downgrade, config, "0003")
        claimed_at = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
        delivery_id = uuid.uuid4()
        connection = await asyncpg.connect(to_asyncpg_dsn(database_url), timeout=10)
        try:
            assert await _objects_of_0004(connection) == 0
            event_id, endpoint_id = uuid.uuid4(), uuid.uuid4()
            await connection.execute(
                "INSERT INTO events (id, type, occurred_at, data)"
                " VALUES ($1, 'transfer.completed', $2, '{}')",
                event_id,
                claimed_at,
            )
            await connection.execute(
                "INSERT INTO webhook_endpoints (id, customer_id, url, event_types, enabled,"
                " created_at, updated_at) VALUES ($1, 'alice', 'https://hooks.example.test/',"
                " ARRAY['transfer.completed'], true, $2, $2)",
                endpoint_id,
                claimed_at,
            )
            await connection.execute(
                "INSERT INTO webhook_deliveries (id, event_id, endpoint_id, status,"
                " attempts_made, round_attempts_made, next_attempt_at, lease_token,"
                " lease_expires_at, created_at, updated_at)"
                " VALUES ($1, $2, $3, 'pending', 1, 0, $4, $5, $6, $4, $4)",
                delivery_id,
                event_id,
                endpoint_id,
                claimed_at,
                uuid.uuid4(),
                claimed_at + timedelta(minutes=2),
            )
            await asyncio.to_thread(upgrade_to_head, MIGRATIONS_PATH, database_url)
            leased_at = await connection.fetchval(
                "SELECT leased_at FROM webhook_deliveries WHERE id = $1", delivery_id
            )
            objects_at_head = await _objects_of_0004(connection)
        finally:
            await connection.close()
        assert leased_at == claimed_at
        assert objects_at_head == 3


async def _objects_of_0004(connection: Any) -> int:
    """How many of the column and the two indexes that 0004 adds exist."""
    found: int = await connection.fetchval(
        "SELECT (SELECT count(*) FROM information_schema.columns"
        "  WHERE table_name = 'webhook_deliveries' AND column_name = 'leased_at')"
        " + (SELECT count(*) FROM pg_indexes WHERE indexname IN"
        "  ('ix_webhook_deliveries_leased', 'ix_email_messages_leased'))"
    )
    return found


class TestSettings:
    def base(self, **overrides: Any) -> dict[str, Any]:
        return {
            "database_url": "postgresql://u@127.0.0.1:5432/db",
            "secrets_keys": SECRETS_KEYS,
            **overrides,
        }

    def test_the_secrets_key_ring_is_required_and_checked(self) -> None:
        without = self.base()
        del without["secrets_keys"]
        with pytest.raises(ValidationError, match="secrets_keys"):
            Settings.model_validate(without)
        with pytest.raises(ValidationError, match="must decode to 32 bytes"):
            Settings.model_validate(self.base(secrets_keys="k1:c2hvcnQ="))

    def test_production_defaults_are_strict(self) -> None:
        settings = Settings.model_validate(self.base())
        assert settings.webhook_allow_http is False
        assert settings.webhook_allow_loopback is False
        assert settings.smtp_host is None

    def test_an_smtp_server_needs_a_sender(self) -> None:
        with pytest.raises(ValidationError, match="EMAIL_FROM"):
            Settings.model_validate(self.base(smtp_host="smtp.example.test"))

    def test_the_lease_must_outlast_an_attempt(self) -> None:
        with pytest.raises(ValidationError, match="LEASE"):
            Settings.model_validate(
                self.base(webhook_timeout_seconds=30, dispatcher_lease_seconds=20)
            )

    @pytest.mark.parametrize(
        "sender", ["Sagabank <noreply@example.test>\r\nBcc: x@example.test", "no-at-sign"]
    )
    def test_the_sender_is_one_address(self, sender: str) -> None:
        with pytest.raises(ValidationError):
            Settings.model_validate(self.base(smtp_host="smtp.example.test", email_from=sender))
