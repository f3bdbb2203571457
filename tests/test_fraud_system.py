"""Each fraud decision, reached through the real saga: approve completes, review waits for a
reviewer and then completes, decline voids the hold and leaves every balance as it was."""

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.bank import Bank

pytestmark = pytest.mark.system

TERMINAL = {"completed", "rejected", "declined", "expired", "cancelled"}
STATUS_TIMEOUT_SECONDS = 60.0


async def _account(http: httpx.AsyncClient, bank: Bank, customer_id: str) -> str:
    response = await http.post(
        f"{bank.url('accounts')}/v1/accounts",
        json={"customer_id": customer_id, "currency": "EUR"},
    )
    assert response.status_code == 201, response.text
    account_id: str = response.json()["id"]
    return account_id


async def _fund(http: httpx.AsyncClient, bank: Bank, account_id: str, amount_minor: int) -> None:
    response = await http.post(
        f"{bank.url('accounts')}/v1/accounts/{account_id}/deposits",
        json={"amount_minor": amount_minor, "currency": "EUR"},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 201, response.text


async def _balances(http: httpx.AsyncClient, bank: Bank, account_id: str) -> dict[str, int]:
    response = await http.get(f"{bank.url('accounts')}/v1/accounts/{account_id}")
    assert response.status_code == 200, response.text
    balances: dict[str, int] = response.json()["balances"]
    return balances


async def _pair(http: httpx.AsyncClient, bank: Bank, funded_minor: int) -> tuple[str, str]:
    """A funded source and an empty target, both brand new, in EUR."""
    source = await _account(http, bank, f"payer-{uuid.uuid4().hex[:8]}")
    target = await _account(http, bank, f"payee-{uuid.uuid4().hex[:8]}")
    await _fund(http, bank, source, funded_minor)
    return source, target


async def _transfer(
    http: httpx.AsyncClient, bank: Bank, source: str, target: str, amount_minor: int
) -> str:
    response = await http.post(
        f"{bank.url('transactions')}/v1/transfers",
        json={
            "source_account_id": source,
            "target_account_id": target,
            "amount_minor": amount_minor,
            "currency": "EUR",
            "description": "fraud decision path",
        },
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 202, response.text
    transfer_id: str = response.json()["id"]
    return transfer_id


async def _wait_for(
    http: httpx.AsyncClient, bank: Bank, transfer_id: str, statuses: set[str]
) -> dict[str, Any]:
    """Poll the transfer until its status is one of `statuses` (or terminal), bounded."""
    deadline = time.monotonic() + STATUS_TIMEOUT_SECONDS
    while True:
        response = await http.get(f"{bank.url('transactions')}/v1/transfers/{transfer_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] in statuses | TERMINAL:
            return body
        assert time.monotonic() < deadline, f"transfer never reached {statuses}: {body}"
        await asyncio.sleep(0.2)


async def _fraud_score(http: httpx.AsyncClient, bank: Bank, transfer_id: str) -> dict[str, Any]:
    response = await http.get(f"{bank.url('fraud')}/v1/scores/{transfer_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _codes(assessment: dict[str, Any]) -> list[str]:
    return [reason["code"] for reason in assessment["reasons"]]


async def test_small_amount_is_approved_and_completes(bank: Bank, http: httpx.AsyncClient) -> None:
    source, target = await _pair(http, bank, funded_minor=100_00)
    transfer_id = await _transfer(http, bank, source, target, 25_50)

    transfer = await _wait_for(http, bank, transfer_id, TERMINAL)
    assert transfer["status"] == "completed", transfer
    assert transfer["fraud"]["decision"] == "approve"
    assert (await _fraud_score(http, bank, transfer_id))["decision"] == "approve"
    assert (await _balances(http, bank, source))["posted_minor"] == 100_00 - 25_50
    assert (await _balances(http, bank, target))["posted_minor"] == 25_50


async def test_ten_thousand_euros_wait_for_a_reviewer_then_complete(
    bank: Bank, http: httpx.AsyncClient
) -> None:
    source, target = await _pair(http, bank, funded_minor=12_000_00)
    transfer_id = await _transfer(http, bank, source, target, 10_000_00)

    waiting = await _wait_for(http, bank, transfer_id, {"in_review"})
    assert waiting["status"] == "in_review", waiting
    assert waiting["fraud"]["decision"] == "review"
    assert "large_amount" in _codes(waiting["fraud"])
    # The fraud service's review queue shows it, with the reasons that stopped it.
    queue = await http.get(f"{bank.url('fraud')}/v1/reviews", params={"limit": "500"})
    assert queue.status_code == 200, queue.text
    [queued] = [item for item in queue.json()["items"] if item["transfer_id"] == transfer_id]
    assert queued["reasons"] == waiting["fraud"]["reasons"]
    assert (queued["amount_minor"], queued["source_account_id"]) == (10_000_00, source)
    # The hold is placed while the reviewer looks.
    assert (await _balances(http, bank, source))["available_minor"] == 2_000_00

    review = await http.post(
        f"{bank.url('transactions')}/v1/admin/transfers/{transfer_id}/review",
        json={"decision": "approve", "reviewer_id": "ops-anna", "note": "Called the customer"},
    )
    assert review.status_code == 202, review.text
    transfer = await _wait_for(http, bank, transfer_id, TERMINAL)
    assert transfer["status"] == "completed", transfer
    assert (await _balances(http, bank, source))["posted_minor"] == 2_000_00
    assert (await _balances(http, bank, target))["posted_minor"] == 10_000_00


async def test_fifty_thousand_euros_are_declined_and_the_hold_voided(
    bank: Bank, http: httpx.AsyncClient
) -> None:
    source, target = await _pair(http, bank, funded_minor=60_000_00)
    before = await _balances(http, bank, source)
    transfer_id = await _transfer(http, bank, source, target, 50_000_00)

    transfer = await _wait_for(http, bank, transfer_id, TERMINAL)
    assert transfer["status"] == "declined", transfer
    assert transfer["fraud"]["decision"] == "decline"
    assert _codes(transfer["fraud"])[0] == "very_large_amount"
    assert transfer["posting_id"] is None
    assert (await _fraud_score(http, bank, transfer_id))["decision"] == "decline"
    # The hold was voided: nothing pending, nothing moved.
    after = await _balances(http, bank, source)
    assert after == before
    assert (after["posted_minor"], after["pending_minor"]) == (60_000_00, 0)
    assert (await _balances(http, bank, target))["posted_minor"] == 0
    invariants = await http.get(f"{bank.url('accounts')}/v1/admin/ledger/invariants")
    assert invariants.status_code == 200, invariants.text
    assert invariants.json()["ok"] is True
