"""The service around the routes: its schema is its models, its settings fail fast."""

from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pydantic import ValidationError
from sqlalchemy import Connection

from kit.testing import app_client
from notifications.config import Settings
from notifications.models import Base
from notifications.tests.conftest import AppFactory


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


class TestSettings:
    def base(self, **overrides: Any) -> dict[str, Any]:
        return {"database_url": "postgresql://u@127.0.0.1:5432/db", **overrides}

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
