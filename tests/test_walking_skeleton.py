"""The walking skeleton: one transfer, end to end, through every service and a real saga."""

import asyncio
import time
import uuid

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from tests.bank import Bank, Customer

pytestmark = pytest.mark.system

TERMINAL = {"completed", "rejected", "declined", "expired", "cancelled"}


async def _balance(http: httpx.AsyncClient, bank: Bank, customer: Customer, account_id: str) -> int:
    response = await http.get(
        f"{bank.url('accounts')}/v1/accounts/{account_id}", headers=customer.headers
    )
    assert response.status_code == 200, response.text
    posted: int = response.json()["balances"]["posted_minor"]
    return posted


async def _wait_terminal(
    http: httpx.AsyncClient,
    bank: Bank,
    customer: Customer,
    transfer_id: str,
    timeout_seconds: float = 60,
) -> dict[str, object]:
    deadline = time.monotonic() + timeout_seconds
    while True:
        response = await http.get(
            f"{bank.url('transactions')}/v1/transfers/{transfer_id}", headers=customer.headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, object] = response.json()
        if body["status"] in TERMINAL:
            return body
        assert time.monotonic() < deadline, f"transfer not terminal in time: {body}"
        await asyncio.sleep(0.2)


async def test_one_transfer_end_to_end(
    bank: Bank, bank_temporal: Client, http: httpx.AsyncClient
) -> None:
    alice_customer = await bank.register_customer(http, "alice")
    bob_customer = await bank.register_customer(http, "bob")
    alice = await bank.open_account(http, alice_customer)
    bob = await bank.open_account(http, bob_customer)
    await bank.deposit(http, alice, 10_000)

    created = await http.post(
        f"{bank.url('transactions')}/v1/transfers",
        json={
            "source_account_id": alice,
            "target_account_id": bob,
            "amount_minor": 2_550,
            "currency": "EUR",
            "description": "rent share",
        },
        headers={**alice_customer.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert created.status_code == 202, created.text
    transfer_id = created.json()["id"]
    assert created.headers["location"].endswith(f"/v1/transfers/{transfer_id}")

    transfer = await _wait_terminal(http, bank, alice_customer, transfer_id)
    assert transfer["status"] == "completed", transfer
    steps = [step["name"] for step in transfer["steps"]]  # type: ignore[attr-defined]
    assert steps[:4] == ["validate", "hold", "score", "post"], steps

    assert await _balance(http, bank, alice_customer, alice) == 10_000 - 2_550
    assert await _balance(http, bank, bob_customer, bob) == 2_550

    # The projection turns terminal one step before the workflow closes (notify and the
    # outcome report still follow), so wait on the workflow's own result, bounded.
    handle = bank_temporal.get_workflow_handle(f"transfer-{transfer_id}")
    await asyncio.wait_for(handle.result(), timeout=30)
    description = await handle.describe()
    assert description.status == WorkflowExecutionStatus.COMPLETED

    invariants = await http.get(
        f"{bank.url('accounts')}/v1/admin/ledger/invariants",
        headers=await bank.operator_headers(http),
    )
    assert invariants.status_code == 200, invariants.text
    assert invariants.json()["ok"] is True
