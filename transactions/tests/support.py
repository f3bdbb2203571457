"""Helpers of the transactions tests: request bodies, step reports, Temporal lookups."""

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from fastapi import FastAPI
from temporalio.client import Client, WorkflowHandle

from contracts.transfers import workflow_id


def transfer_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source_account_id": str(uuid.uuid4()),
        "target_account_id": str(uuid.uuid4()),
        "amount_minor": 1250,
        "currency": "EUR",
        "description": "Rent, November",
        "metadata": {"invoice": "2026-11"},
    }
    body.update(overrides)
    return body


def key_header(key: str | None = None) -> dict[str, str]:
    return {"Idempotency-Key": key or f"key-{uuid.uuid4()}"}


async def create(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    """Create a transfer through the API and return its body."""
    response = await client.post(
        "/v1/transfers", json=transfer_body(**overrides), headers=key_header()
    )
    assert response.status_code == 202, response.text
    created: dict[str, Any] = response.json()
    return created


async def report(client: httpx.AsyncClient, transfer_id: str, **fields: Any) -> httpx.Response:
    """Report a saga step, as the workflow's `record_step` activity does."""
    body: dict[str, Any] = {"occurred_at": "2026-11-28T10:00:00+00:00", **fields}
    return await client.post(f"/v1/internal/transfers/{transfer_id}/steps", json=body)


async def workflow_count(temporal: Client, query: str, *, expected: int) -> int:
    """The number of workflows matching a visibility query, waiting (bounded) until it is
    `expected`: visibility trails the start by a moment, so one look could be too early."""
    deadline = time.monotonic() + 10
    while True:
        count = (await temporal.count_workflows(query)).count
        if count == expected or time.monotonic() > deadline:
            return count
        await asyncio.sleep(0.1)


def workflow_handle(temporal: Client, transfer_id: str) -> WorkflowHandle[Any, Any]:
    return temporal.get_workflow_handle(workflow_id(uuid.UUID(transfer_id)))


async def signals(
    temporal: Client, transfer_id: str, payload_type: type[Any]
) -> list[tuple[str, Any]]:
    """The signals a transfer's workflow received, with their decoded payloads."""
    history = await workflow_handle(temporal, transfer_id).fetch_history()
    received: list[tuple[str, Any]] = []
    for event in history.events:
        if event.HasField("workflow_execution_signaled_event_attributes"):
            attributes = event.workflow_execution_signaled_event_attributes
            (payload,) = await temporal.data_converter.decode(
                list(attributes.input.payloads), [payload_type]
            )
            received.append((attributes.signal_name, payload))
    return received


async def count_rows(app: FastAPI, table: str) -> int:
    """Rows of one table of the service's database (tests look below the API here)."""
    assert table in ("transfers", "transfer_steps", "idempotency_keys")
    async with app.state.database.engine.connect() as connection:
        result = await connection.exec_driver_sql(f"SELECT count(*) FROM {table}")  # noqa: S608
        count: int = result.scalar_one()
        return count


async def eventually(
    condition: Callable[[], bool], what: str, *, timeout_seconds: float = 10
) -> None:
    """Wait (bounded) until `condition()` holds; fail naming `what` if it never does."""
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.01)
