"""The accounts service as a whole: readiness, its migration history, its OpenAPI document."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

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
            rows = await connection.fetch(
                "SELECT tgname FROM pg_trigger WHERE tgname LIKE 'ledger_%'"
            )
        # The journal and the tombstones refuse UPDATE, DELETE and TRUNCATE again, and the
        # journal's entries are checked to balance.
        assert {row["tgname"] for row in rows} == {
            *(
                f"{table}_{kind}"
                for table in ("ledger_transfers", "ledger_entries", "ledger_hold_tombstones")
                for kind in ("append_only", "no_truncate")
            ),
            "ledger_entries_balanced",
        }


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

    async def test_new_routes_are_documented(self, client: httpx.AsyncClient) -> None:
        paths = (await client.get("/openapi.json")).json()["paths"]
        batch = paths["/v1/ledger/transfers/batch"]["post"]
        assert "linked" in batch["description"]
        assert "LedgerTransferBatchResults" in str(batch["responses"]["200"])
        close = paths["/v1/accounts/{account_id}/close"]["post"]["responses"]
        assert "account-not-empty" in close["409"]["description"]
        limits = paths["/v1/accounts/{account_id}/limits"]["patch"]["responses"]
        assert "overdraft-in-use" in limits["409"]["description"]
        assert "/v1/accounts/{account_id}/entries" in paths
        transfer = paths["/v1/ledger/transfers"]["post"]["responses"]
        assert "daily-outflow-limit-exceeded" in transfer["409"]["description"]
        assert "ledger-busy" in transfer["503"]["description"]


class TestMigrationBackfill:
    async def test_upgrade_fills_running_balances_and_open_holds(self, database_url: str) -> None:
        """A journal written before 0002 gets its running balances and its open holds with
        a deadline, as if the new code had written them."""
        config = alembic_config(MIGRATIONS_PATH, database_url)
        await asyncio.to_thread(command.downgrade, config, "0001")
        alice, bank_account, bob = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        deposit, open_hold, voided_hold, void = (uuid.uuid4() for _ in range(4))
        deadline = datetime.now(UTC) + timedelta(hours=1)
        async with raw_connection(database_url) as connection:
            await connection.execute(
                "INSERT INTO accounts (id, customer_id, kind, currency,"
                " debits_must_not_exceed_credits, credits_must_not_exceed_debits)"
                " VALUES ($1, 'alice', 'customer', 'EUR', true, false),"
                " ($2, NULL, 'system', 'EUR', false, false),"
                " ($3, 'bob', 'customer', 'EUR', true, false)",
                alice,
                bank_account,
                bob,
            )
            transfers = [
                (deposit, "single_phase", bank_account, alice, 1000, None, None, None),
                (open_hold, "pending", alice, bob, 300, None, 3600, deadline),
                (voided_hold, "pending", alice, bob, 200, None, 3600, deadline),
                (void, "void_pending", alice, bob, 200, voided_hold, None, None),
            ]
            await connection.executemany(
                "INSERT INTO ledger_transfers (id, kind, debit_account_id, credit_account_id,"
                " amount_minor, currency, pending_id, timeout_seconds, expires_at)"
                " VALUES ($1, $2, $3, $4, $5, 'EUR', $6, $7, $8)",
                transfers,
            )
            entries = [
                (deposit, bank_account, "debits_posted", 1000),
                (deposit, alice, "credits_posted", 1000),
                (open_hold, alice, "debits_pending", 300),
                (open_hold, bob, "credits_pending", 300),
                (voided_hold, alice, "debits_pending", 200),
                (voided_hold, bob, "credits_pending", 200),
                (void, alice, "debits_pending", -200),
                (void, bob, "credits_pending", -200),
            ]
            await connection.executemany(
                "INSERT INTO ledger_entries (transfer_id, account_id, balance, amount_minor)"
                " VALUES ($1, $2, $3, $4)",
                entries,
            )
            await connection.execute(
                "UPDATE accounts SET credits_posted = 1000, debits_pending = 300 WHERE id = $1",
                alice,
            )
            await connection.execute("UPDATE accounts SET credits_pending = 300 WHERE id = $1", bob)
            await connection.execute(
                "UPDATE accounts SET debits_posted = 1000 WHERE id = $1", bank_account
            )

        await asyncio.to_thread(upgrade_to_head, MIGRATIONS_PATH, database_url)

        async with raw_connection(database_url) as connection:
            running = await connection.fetch(
                "SELECT posted_balance_after_minor, pending_balance_after_minor"
                " FROM ledger_entries WHERE account_id = $1 ORDER BY id",
                alice,
            )
            holds = await connection.fetch(
                "SELECT pending_id, amount_minor, expires_at FROM ledger_expiring_holds"
            )
        assert [tuple(row) for row in running] == [
            (1000, 0),
            (1000, -300),
            (1000, -500),
            (1000, -300),
        ]
        assert [(row["pending_id"], row["amount_minor"]) for row in holds] == [(open_hold, 300)]
        assert holds[0]["expires_at"] == deadline
