"""Confirmation callbacks on the whole bank: an external system, signing per Standard
Webhooks with the secret it was given, approves or rejects a transfer waiting in review,
and the saga finishes it; a forged or replayed callback changes nothing."""

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from contracts.transfers import CALLBACK_CLIENT_HEADER, CALLBACK_CLIENTS_PATH
from contracts.transfers import CALLBACK_CONFIRMATIONS_PATH as CONFIRMATIONS
from tests.bank import Bank, Customer
from tests.flows import (
    TERMINAL,
    balances,
    funded_pair,
    released_balances,
    request_transfer,
    wait_for_status,
)

pytestmark = pytest.mark.system

REVIEW_AMOUNT_MINOR = 10_000_00  # the default ruleset sends 10,000 EUR to review


async def _register_client(http: httpx.AsyncClient, bank: Bank, account_id: str) -> dict[str, Any]:
    """A client that may decide the transfers out of `account_id`."""
    response = await http.post(
        f"{bank.url('transactions')}{CALLBACK_CLIENTS_PATH}",
        json={
            "name": f"rail-{uuid.uuid4().hex[:8]}",
            "description": "payment rail",
            "account_ids": [account_id],
        },
        headers=await bank.operator_headers(http),
    )
    assert response.status_code == 201, response.text
    registered: dict[str, Any] = response.json()
    assert registered["secret"].startswith("whsec_")
    return registered


def _signed(
    client: dict[str, Any], body: bytes, *, secret: str | None = None, webhook_id: str | None = None
) -> dict[str, str]:
    message_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    signature = Webhook(secret or client["secret"]).sign(message_id, now, body.decode())
    return {
        CALLBACK_CLIENT_HEADER: client["id"],
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def _confirmation(transfer_id: str, decision: str) -> bytes:
    return json.dumps(
        {"transfer_id": transfer_id, "decision": decision, "external_reference": "RX-1042"}
    ).encode()


async def _in_review(
    http: httpx.AsyncClient, bank: Bank
) -> tuple[Customer, str, Customer, str, str]:
    payer, source, payee, target = await funded_pair(http, bank, funded_minor=12_000_00)
    transfer_id = await request_transfer(http, bank, payer, source, target, REVIEW_AMOUNT_MINOR)
    waiting = await wait_for_status(http, bank, payer, transfer_id, {"in_review"})
    assert waiting["status"] == "in_review", waiting
    return payer, source, payee, target, transfer_id


async def test_a_signed_approval_completes_the_transfer(
    bank: Bank, http: httpx.AsyncClient
) -> None:
    payer, source, payee, target, transfer_id = await _in_review(http, bank)
    client = await _register_client(http, bank, source)
    body = _confirmation(transfer_id, "approve")

    # A client bound to another account (here, the payee's) cannot decide it: to it the
    # transfer does not exist.
    stranger = await _register_client(http, bank, target)
    refused = await http.post(f"{bank.url('transactions')}{CONFIRMATIONS}", content=body,
                              headers=_signed(stranger, body))  # fmt: skip
    assert refused.status_code == 404, refused.text
    # Forgeries next: a wrong secret and a tampered body are refused and change nothing.
    forged = _signed(client, body, secret="whsec_" + "A" * 43 + "=")
    refused = await http.post(f"{bank.url('transactions')}{CONFIRMATIONS}", content=body,
                              headers=forged)  # fmt: skip
    assert refused.status_code == 401, refused.text
    headers = _signed(client, body)
    tampered = _confirmation(transfer_id, "reject")
    refused = await http.post(f"{bank.url('transactions')}{CONFIRMATIONS}", content=tampered,
                              headers=headers)  # fmt: skip
    assert refused.status_code == 401, refused.text
    still = await wait_for_status(http, bank, payer, transfer_id, {"in_review"})
    assert still["status"] == "in_review"

    accepted = await http.post(
        f"{bank.url('transactions')}{CONFIRMATIONS}", content=body, headers=headers
    )
    assert accepted.status_code == 200, accepted.text
    # The same message again (a sender's retry) answers the same and decides nothing new.
    replayed = await http.post(
        f"{bank.url('transactions')}{CONFIRMATIONS}", content=body, headers=headers
    )
    assert replayed.status_code == 200, replayed.text
    assert replayed.json() == accepted.json()

    transfer = await wait_for_status(http, bank, payer, transfer_id, TERMINAL)
    assert transfer["status"] == "completed", transfer
    assert (await balances(http, bank, payer, source))["posted_minor"] == 2_000_00
    assert (await balances(http, bank, payee, target))["posted_minor"] == REVIEW_AMOUNT_MINOR


async def test_a_signed_rejection_declines_it_and_releases_the_hold(
    bank: Bank, http: httpx.AsyncClient
) -> None:
    payer, source, payee, target, transfer_id = await _in_review(http, bank)
    client = await _register_client(http, bank, source)
    body = _confirmation(transfer_id, "reject")

    response = await http.post(
        f"{bank.url('transactions')}{CONFIRMATIONS}", content=body, headers=_signed(client, body)
    )
    assert response.status_code == 200, response.text

    transfer = await wait_for_status(http, bank, payer, transfer_id, TERMINAL)
    assert transfer["status"] == "declined", transfer
    assert transfer["posting_id"] is None
    source_balances = await released_balances(http, bank, payer, source)
    assert (source_balances["posted_minor"], source_balances["pending_minor"]) == (12_000_00, 0)
    assert (await balances(http, bank, payee, target))["posted_minor"] == 0
    # The callback is on the transfer's audit timeline, with the client as its actor.
    events = await bank.audit_events(http, "transactions", transfer_id=transfer_id)
    received = [event for event in events if event["action"] == "callback.received"]
    assert len(received) == 1, events
