"""The service around the routes: it starts without Temporal, and its schema is its models."""

import asyncio

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi import FastAPI
from sqlalchemy import Connection
from temporalio.testing import WorkflowEnvironment

from kit.temporal_connection import TemporalSettingsError
from kit.testing import assert_problem
from sagabank.localstack.postgres import free_port
from transactions.config import Settings
from transactions.models import Base
from transactions.tests.support import build_app, client_of, transfer_body


class TestService:
    async def test_answers_health_while_temporal_is_away(self, settings: Settings) -> None:
        away = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
        async with client_of(build_app(away)) as client:
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/readyz")).status_code == 200
            # Concurrent first uses share one connection attempt and fail alike.
            responses = await asyncio.gather(
                *(
                    client.post(
                        "/v1/transfers",
                        json=transfer_body(),
                        headers={"Idempotency-Key": f"key-{number}"},
                    )
                    for number in range(3)
                )
            )
        for response in responses:
            assert_problem(response, 503, "workflow-service-unavailable")

    async def test_connects_where_the_standard_temporal_variables_say(
        self,
        settings: Settings,
        temporal_dev_env: WorkflowEnvironment,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        target = temporal_dev_env.client.service_client.config.target_host
        # No profile file: the SDK would otherwise read the user's default one.
        monkeypatch.setenv("TEMPORAL_CONFIG_FILE", "/nonexistent/temporal.toml")
        monkeypatch.setenv("TEMPORAL_ADDRESS", target)
        standard = settings.model_copy(update={"temporal_address": None})
        async with client_of(build_app(standard)) as client:
            response = await client.post(
                "/v1/transfers", json=transfer_body(), headers={"Idempotency-Key": "standard"}
            )
        assert response.status_code == 202, response.text
        started = temporal_dev_env.client.get_workflow_handle(response.json()["workflow_id"])
        assert (await started.describe()).task_queue == settings.task_queue
        await started.terminate("test over")

    async def test_unusable_temporal_settings_stop_the_start(
        self, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TEMPORAL_API_KEY", "would-travel-in-clear")
        monkeypatch.setenv("TEMPORAL_TLS", "false")
        with pytest.raises(TemporalSettingsError, match="in clear"):
            async with client_of(build_app(settings)):
                pass

    async def test_migrations_match_the_models(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        def differences(connection: Connection) -> list[object]:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))

        async with app.state.database.engine.connect() as connection:
            assert await connection.run_sync(differences) == []

    async def test_openapi_lists_the_routes(self, client: httpx.AsyncClient) -> None:
        document = (await client.get("/openapi.json")).json()
        assert document["info"]["title"] == "Sagabank transactions"
        paths = document["paths"]
        assert set(paths) >= {
            "/v1/transfers",
            "/v1/transfers/{transfer_id}",
            "/v1/transfers/{transfer_id}/cancel",
            "/v1/internal/transfers/{transfer_id}/steps",
            "/v1/admin/transfers/{transfer_id}/review",
            "/v1/transfers/batch",
            "/v1/admin/callback-clients",
            "/v1/callbacks/confirmations",
            "/v1/admin/audit-events",
            "/v1/admin/audit-events/verify",
            "/v1/admin/audit-events/export",
        }
        create = paths["/v1/transfers"]["post"]
        assert {"202", "400", "401", "403", "404", "409", "422", "429", "503"} <= set(
            create["responses"]
        )
        # Every route but the signed callback and health asks for a token with its scopes.
        for path, operations in paths.items():
            for operation in operations.values():
                schemes = {name for needs in operation.get("security", []) for name in needs}
                public = path in ("/v1/callbacks/confirmations", "/healthz", "/readyz")
                assert schemes == (set() if public else {"OAuth2"}), path
        headers = [p["name"] for p in create["parameters"] if p["in"] == "header"]
        assert headers == ["Idempotency-Key", "Prefer"]
        confirmations = paths["/v1/callbacks/confirmations"]["post"]
        assert {"200", "401", "404", "409", "422"} <= set(confirmations["responses"])
        signed_headers = {p["name"] for p in confirmations["parameters"]}
        assert signed_headers == {
            "Callback-Client-Id",
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
        }
