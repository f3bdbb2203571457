"""Each fraud decision, reached through the real saga: approve completes, review waits for a
reviewer and then completes, decline voids the hold and leaves every balance as it was."""

from typing import Any

import httpx
import pytest

from tests.bank import Bank
from tests.flows import (
    TERMINAL,
    balances,
    funded_pair,
    released_balances,
    request_transfer,
    wait_for_status,
)

pytestmark = pytest.mark.system


async def _fraud_score(http: httpx.AsyncClient, bank: Bank, transfer_id: str) -> dict[str, Any]:
    response = await http.get(
        f"{bank.url('fraud')}/v1/scores/{transfer_id}", headers=await bank.operator_headers(http)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _codes(assessment: dict[str, Any]) -> list[str]:
    return [reason["code"] for reason in assessment["reasons"]]


async def test_small_amount_is_approved_and_completes(bank: Bank, http: httpx.AsyncClient) -> None:
    payer, source, payee, target = await funded_pair(http, bank, funded_minor=100_00)
    transfer_id = await request_transfer(http, bank, payer, source, target, 25_50)

    transfer = await wait_for_status(http, bank, payer, transfer_id, TERMINAL)
    assert transfer["status"] == "completed", transfer
    assert transfer["fraud"]["decision"] == "approve"
    assert (await _fraud_score(http, bank, transfer_id))["decision"] == "approve"
    assert (await balances(http, bank, payer, source))["posted_minor"] == 100_00 - 25_50
    assert (await balances(http, bank, payee, target))["posted_minor"] == 25_50


async def test_ten_thousand_euros_wait_for_a_reviewer_then_complete(
    bank: Bank, http: httpx.AsyncClient
) -> None:
    payer, source, payee, target = await funded_pair(http, bank, funded_minor=12_000_00)
    transfer_id = await request_transfer(http, bank, payer, source, target, 10_000_00)

    waiting = await wait_for_status(http, bank, payer, transfer_id, {"in_review"})
    assert waiting["status"] == "in_review", waiting
    assert waiting["fraud"]["decision"] == "review"
    assert "large_amount" in _codes(waiting["fraud"])
    # The fraud service's review queue shows it, with the reasons that stopped it.
    operator = await bank.operator_headers(http)
    queue = await http.get(
        f"{bank.url('fraud')}/v1/reviews", params={"limit": "500"}, headers=operator
    )
    assert queue.status_code == 200, queue.text
    [queued] = [item for item in queue.json()["items"] if item["transfer_id"] == transfer_id]
    assert queued["reasons"] == waiting["fraud"]["reasons"]
    assert (queued["amount_minor"], queued["source_account_id"]) == (10_000_00, source)
    # The hold is placed while the reviewer looks.
    assert (await balances(http, bank, payer, source))["available_minor"] == 2_000_00

    review = await http.post(
        f"{bank.url('transactions')}/v1/admin/transfers/{transfer_id}/review",
        json={"decision": "approve", "note": "Called the customer"},
        headers=operator,
    )
    assert review.status_code == 202, review.text
    transfer = await wait_for_status(http, bank, payer, transfer_id, TERMINAL)
    assert transfer["status"] == "completed", transfer
    assert (await balances(http, bank, payer, source))["posted_minor"] == 2_000_00
    assert (await balances(http, bank, payee, target))["posted_minor"] == 10_000_00


async def test_fifty_thousand_euros_are_declined_and_the_hold_voided(
    bank: Bank, http: httpx.AsyncClient
) -> None:
    payer, source, payee, target = await funded_pair(http, bank, funded_minor=60_000_00)
    before = await balances(http, bank, payer, source)
    transfer_id = await request_transfer(http, bank, payer, source, target, 50_000_00)

    transfer = await wait_for_status(http, bank, payer, transfer_id, TERMINAL)
    assert transfer["status"] == "declined", transfer
    assert transfer["fraud"]["decision"] == "decline"
    assert _codes(transfer["fraud"])[0] == "very_large_amount"
    assert transfer["posting_id"] is None
    assert (await _fraud_score(http, bank, transfer_id))["decision"] == "decline"
    # The hold was voided: nothing pending, nothing moved.
    after = await released_balances(http, bank, payer, source)
    assert after == before
    assert (after["posted_minor"], after["pending_minor"]) == (60_000_00, 0)
    assert (await balances(http, bank, payee, target))["posted_minor"] == 0
    invariants = await http.get(
        f"{bank.url('accounts')}/v1/admin/ledger/invariants",
        headers=await bank.operator_headers(http),
    )
    assert invariants.status_code == 200, invariants.text
    assert invariants.json()["ok"] is True
