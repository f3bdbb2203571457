"""Steps the system tests share: a funded pair of customers, a transfer, waiting on it."""

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

import httpx

from contracts.notifications import WEBHOOK_ENDPOINTS_PATH
from tests.bank import Bank, Customer

TERMINAL = {"completed", "rejected", "declined", "expired", "cancelled"}
STATUS_TIMEOUT_SECONDS = 60.0


async def balances(
    http: httpx.AsyncClient, bank: Bank, owner: Customer, account_id: str
) -> dict[str, int]:
    response = await http.get(
        f"{bank.url('accounts')}/v1/accounts/{account_id}", headers=owner.headers
    )
    assert response.status_code == 200, response.text
    found: dict[str, int] = response.json()["balances"]
    return found


async def funded_pair(
    http: httpx.AsyncClient, bank: Bank, funded_minor: int
) -> tuple[Customer, str, Customer, str]:
    """A funded source and an empty target, both brand new, in EUR, of two new customers."""
    payer = await bank.register_customer(http, "payer")
    payee = await bank.register_customer(http, "payee")
    source = await bank.open_account(http, payer)
    target = await bank.open_account(http, payee)
    await bank.deposit(http, source, funded_minor)
    return payer, source, payee, target


async def request_transfer(
    http: httpx.AsyncClient,
    bank: Bank,
    payer: Customer,
    source: str,
    target: str,
    amount_minor: int,
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
        headers={**payer.headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 202, response.text
    transfer_id: str = response.json()["id"]
    return transfer_id


async def wait_for_status(
    http: httpx.AsyncClient, bank: Bank, payer: Customer, transfer_id: str, statuses: set[str]
) -> dict[str, Any]:
    """Poll the transfer until its status is one of `statuses` (or terminal), bounded."""
    deadline = time.monotonic() + STATUS_TIMEOUT_SECONDS
    while True:
        response = await http.get(
            f"{bank.url('transactions')}/v1/transfers/{transfer_id}", headers=payer.headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["status"] in statuses | TERMINAL:
            return body
        assert time.monotonic() < deadline, f"transfer never reached {statuses}: {body}"
        await asyncio.sleep(0.2)


async def released_balances(
    http: httpx.AsyncClient, bank: Bank, owner: Customer, account_id: str
) -> dict[str, int]:
    """The account's balances once nothing is pending on it, bounded: a saga reports its end
    before its compensations run (workflows/transfer.py, `_end`), so a void may follow."""
    deadline = time.monotonic() + STATUS_TIMEOUT_SECONDS
    while True:
        found = await balances(http, bank, owner, account_id)
        if found["debits_pending_minor"] == 0 and found["credits_pending_minor"] == 0:
            return found
        assert time.monotonic() < deadline, f"{account_id} still holds money: {found}"
        await asyncio.sleep(0.2)


async def register_webhook(
    http: httpx.AsyncClient,
    bank: Bank,
    customer: Customer,
    url: str,
    *,
    event_types: Sequence[str] = ("transfer.completed",),
) -> None:
    """The customer registers `url` for `event_types` (`transfer.completed` unless told)."""
    response = await http.post(
        f"{bank.url('notifications')}{WEBHOOK_ENDPOINTS_PATH}",
        json={"url": url, "event_types": list(event_types)},
        headers=customer.headers,
    )
    assert response.status_code == 201, response.text
