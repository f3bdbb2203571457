"""The walking skeleton: one transfer, end to end, through every service and a real saga."""

import asyncio
import time
import uuid

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from tests.bank import Bank

pytestmark = pytest.mark.system

TERMINAL = {"completed", "rejected", "declined", "expired", "cancelled"}


async def _create_account(http: httpx.AsyncClient, bank: Bank, customer_id: str) -> str:
    response = await http.post(
        f"{bank.url('accounts')}/v1/accounts",
        json={"customer_id": customer_id, "currency": "EUR"},
    )
    assert response.status_code == 201, response.text
    account_id: str = response.json()["id"]
    return account_id


async def _balance(http: httpx.AsyncClient, bank: Bank, account_id: str) -> int:
    response = await http.get(f"{bank.url('accounts')}/v1/accounts/{account_id}")
    assert response.status_code == 200, response.text
    posted: int = response.json()["balances"]["posted_minor"]
    return posted


async def _wait_terminal(
    http: httpx.AsyncClient, bank: Bank, transfer_id: str, timeout_seconds: float = 60
) -> dict[str, object]:
    deadline = time.monotonic() + timeout_seconds
    while True:
        response = await http.get(f"{bank.url('transactions')}/v1/transfers/{transfer_id}")
        assert response.status_code == 200, response.text
        body: dict[str, object] = response.json()
        if body["status"] in TERMINAL:
            return body
        assert time.monotonic() < deadline, f"transfer not terminal in time: {body}"
        await asyncio.sleep(0.2)


async def test_one_transfer_end_to_end(
    bank: Bank, bank_temporal: Client, http: httpx.AsyncClient
) -> None:
    alice = await _create_account(http, bank, "alice")
    bob = await _create_account(http, bank, "bob")
    deposit = await http.post(
        f"{bank.url('accounts')}/v1/accounts/{alice}/deposits",
        json={"amount_minor": 10_000, "currency": "EUR"},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert deposit.status_code == 201, deposit.text

    created = await http.post(
        f"{bank.url('transactions')}/v1/transfers",
        json={
            "source_account_id": alice,
            "target_account_id": bob,
            "amount_minor": 2_550,
            "currency": "EUR",
            "description": "rent share",
        },
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert created.status_code == 202, created.text
    transfer_id = created.json()["id"]
    assert created.headers["location"].endswith(f"/v1/transfers/{transfer_id}")

    transfer = await _wait_terminal(http, bank, transfer_id)
    assert transfer["status"] == "completed", transfer
    steps = [step["name"] for step in transfer["steps"]]  # type: ignore[attr-defined]
    assert steps[:4] == ["validate", "hold", "score", "post"], steps

    assert await _balance(http, bank, alice) == 10_000 - 2_550
    assert await _balance(http, bank, bob) == 2_550

    # The projection turns terminal one step before the workflow closes (notify and the
    # outcome report still follow), so wait on the workflow's own result, bounded.
    handle = bank_temporal.get_workflow_handle(f"transfer-{transfer_id}")
    await asyncio.wait_for(handle.result(), timeout=30)
    description = await handle.describe()
    assert description.status == WorkflowExecutionStatus.COMPLETED

    invariants = await http.get(f"{bank.url('accounts')}/v1/admin/ledger/invariants")
    assert invariants.status_code == 200, invariants.text
    assert invariants.json()["ok"] is True
