"""The accounts service as a whole: readiness, its migration history, its OpenAPI document."""

import asyncio

import httpx
from alembic import command

from accounts.main import MIGRATIONS_PATH
from accounts.tests.helpers import raw_connection
from kit.migrations import alembic_config, upgrade_to_head


class TestReadiness:
    async def test_ready_when_migrated(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/readyz")
        assert response.status_code == 200, response.text
        assert response.json()["service"] == "accounts"


class TestMigrations:
    async def test_downgrade_and_upgrade_again(self, database_url: str) -> None:
        config = alembic_config(MIGRATIONS_PATH, database_url)
        await asyncio.to_thread(command.downgrade, config, "base")
        async with raw_connection(database_url) as connection:
            tables = await connection.fetchval(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename <> 'alembic_version'"
            )
            assert tables == 0
        await asyncio.to_thread(upgrade_to_head, MIGRATIONS_PATH, database_url)
        async with raw_connection(database_url) as connection:
            triggers = await connection.fetchval(
                "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'ledger_%'"
            )
            assert triggers == 4


class TestOpenApi:
    async def test_routes_declare_their_problems(self, client: httpx.AsyncClient) -> None:
        document = (await client.get("/openapi.json")).json()
        assert document["info"]["title"] == "Sagabank accounts"
        responses = document["paths"]["/v1/ledger/transfers"]["post"]["responses"]
        assert set(responses) >= {"200", "201", "404", "409", "422"}
        assert "pending-transfer-already-posted" in responses["409"]["description"]
        assert "invalid-ledger-transfer" in responses["422"]["description"]
        deposit = document["paths"]["/v1/accounts/{account_id}/deposits"]["post"]
        assert "idempotency-key-missing" in deposit["responses"]["400"]["description"]
        assert any(parameter["name"] == "Idempotency-Key" for parameter in deposit["parameters"])
