"""What a transfer costs the transactions database: the statements of the create and of
the saga's step reports, counted on the engine (a budget: a change that adds one shows)."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import event

from kit.db import database_of
from transactions.tests.support import key_header, report_batch, transfer_body

# Claim (1); the transfer and its audit event (1 + lock, chain end and known ids, insert);
# the answer stored (saga started, the transfer, its steps, the key completed and notified).
CREATE_STATEMENTS = 9
# The transfer read, the steps inserted (1), the transfer and its steps read, the audit
# append (3); and per step the projection moved (its end notified in the same statement).
REPORT_STATEMENTS_BASE = 7
REPORT_STATEMENTS_PER_STEP = 1


@contextmanager
def counted_statements(app: FastAPI) -> Iterator[list[str]]:
    """The statements the app's engine runs inside the block."""
    engine = database_of(app).engine.sync_engine
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _records(first_version: int, *steps: tuple[str, str]) -> list[dict[str, Any]]:
    return [
        {"step": step, "outcome": "succeeded", "status": status, "version": version}
        for version, (step, status) in enumerate(steps, start=first_version)
    ]


class TestStatementsPerTransfer:
    async def test_a_create(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        # The first one also opens the pool's connections (the dialect's own queries).
        first = await client.post("/v1/transfers", json=transfer_body(), headers=key_header())
        assert first.status_code == 202, first.text
        with counted_statements(app) as statements:
            response = await client.post(
                "/v1/transfers", json=transfer_body(), headers=key_header()
            )
        assert response.status_code == 202, response.text
        assert len(statements) <= CREATE_STATEMENTS, statements

    async def test_the_step_reports_of_a_happy_saga(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        created = await client.post("/v1/transfers", json=transfer_body(), headers=key_header())
        transfer_id = created.json()["id"]
        batches = [
            _records(1, ("validate", "pending"), ("hold", "pending"), ("score", "pending")),
            _records(4, ("post", "completed"), ("notify", "completed")),
        ]
        for records in batches:
            with counted_statements(app) as statements:
                response = await report_batch(client, transfer_id, records)
            assert response.status_code == 200, response.text
            budget = REPORT_STATEMENTS_BASE + REPORT_STATEMENTS_PER_STEP * len(records)
            assert len(statements) <= budget, statements
        assert response.json()["status"] == "completed"
