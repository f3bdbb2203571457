"""Reversals through the real services and the dev server, as `sagabank up` runs them: a
completed transfer refunded by its payee in two parts, a third part refused, the balances
back where they were, and the audit trail, statements and Temporal linking all three."""

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from contracts.audit import AUDIT_EVENTS_PATH
from contracts.reversals import ORIGINAL_TRANSFER_ID_ATTRIBUTE, REVERSALS_PATH
from contracts.transfers import TRANSFERS_PATH
from tests.bank import Bank
from tests.test_saga_system import (
    APPROVED_MINOR,
    POLL_INTERVAL_SECONDS,
    TERMINAL,
    WAIT_SECONDS_MAX,
    Api,
    finished_workflow,
)

pytestmark = pytest.mark.system

FIRST_PART_MINOR = 50_00


async def reverse(
    api: Api, transfer_id: str, payee_account_id: str, body: dict[str, Any]
) -> httpx.Response:
    """The payee (owner of the transfer's target account) asks for a refund."""
    return await api.http.post(
        f"{api.bank.url('transactions')}{TRANSFERS_PATH}/{transfer_id}/reversals",
        json=body,
        headers={**api.owners[payee_account_id].headers, "Idempotency-Key": str(uuid.uuid4())},
    )


async def finished_reversal(api: Api, reversal_id: str, payee_account_id: str) -> dict[str, Any]:
    """Poll the reversal until its status is terminal, for a bounded time."""
    deadline = time.monotonic() + WAIT_SECONDS_MAX
    while True:
        response = await api.http.get(
            f"{api.bank.url('transactions')}{REVERSALS_PATH}/{reversal_id}",
            headers=api.owners[payee_account_id].headers,
        )
        assert response.status_code == 200, response.text
        reversal: dict[str, Any] = response.json()
        if reversal["status"] in TERMINAL and reversal["steps"][-1]["name"] == "notify":
            return reversal
        assert time.monotonic() < deadline, f"still {reversal['status']}: {reversal}"
        await asyncio.sleep(POLL_INTERVAL_SECONDS)


async def statement_references(api: Api, account_id: str) -> list[str]:
    response = await api.http.get(
        f"{api.bank.url('accounts')}/v1/accounts/{account_id}/entries",
        params={"limit": 50},
        headers=api.owners[account_id].headers,
    )
    assert response.status_code == 200, response.text
    return [entry["reference"] for entry in response.json()["items"]]


async def audit_events(api: Api, transfer_id: str) -> list[dict[str, Any]]:
    response = await api.http.get(
        f"{api.bank.url('transactions')}{AUDIT_EVENTS_PATH}",
        params={"transfer_id": transfer_id},
        headers=await api.operator(),
    )
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["items"]
    return events


@pytest.fixture
def api(bank: Bank, http: httpx.AsyncClient) -> Api:
    return Api(bank, http)


class TestReversalInTwoParts:
    async def test_balances_return_the_third_is_refused_and_all_three_are_linked(
        self, api: Api, bank_temporal: Client
    ) -> None:
        payer, payee = await api.funded_pair(1_000_00)
        transfer_id = await api.start_transfer(payer, payee, APPROVED_MINOR)
        await api.wait_for_status(transfer_id, frozenset({"completed"}))
        await finished_workflow(bank_temporal, transfer_id)

        first = await reverse(
            api, transfer_id, payee, {"reason": "half returned", "amount_minor": FIRST_PART_MINOR}
        )
        assert first.status_code == 202, first.text
        first_reversal = await finished_reversal(api, first.json()["id"], payee)
        rest = await reverse(api, transfer_id, payee, {"reason": "the rest returned"})
        assert rest.status_code == 202, rest.text
        second_reversal = await finished_reversal(api, rest.json()["id"], payee)
        third = await reverse(api, transfer_id, payee, {"reason": "once more", "amount_minor": 1})

        assert third.status_code == 409, third.text
        assert third.json()["type"].endswith(":reversal-exceeds-transfer")
        assert [first_reversal["status"], second_reversal["status"]] == ["completed"] * 2
        assert second_reversal["amount_minor"] == APPROVED_MINOR - FIRST_PART_MINOR
        payer_balances = await api.balances(payer)
        assert (payer_balances["posted_minor"], payer_balances["pending_minor"]) == (1_000_00, 0)
        payee_balances = await api.balances(payee)
        assert (payee_balances["posted_minor"], payee_balances["pending_minor"]) == (0, 0)
        assert (await api.invariants())["ok"] is True

        original = await api.get_transfer(transfer_id)
        reversal_ids = [first_reversal["id"], second_reversal["id"]]
        assert original["reversed_minor"] == APPROVED_MINOR
        assert original["reversal_ids"] == reversal_ids
        # Statements: each movement's reference names its transfer, and each reversal
        # names the original.
        references = {f"transfer:{an_id}" for an_id in [transfer_id, *reversal_ids]}
        assert references <= set(await statement_references(api, payer))
        assert references <= set(await statement_references(api, payee))
        for reversal in (first_reversal, second_reversal):
            assert reversal["original_transfer_id"] == transfer_id
            actions = {event["action"]: event for event in await audit_events(api, reversal["id"])}
            assert {"transfer.reversal.requested", "transfer.reversal.post"} <= set(actions)
            for event in actions.values():
                assert event["after"]["original_transfer_id"] == transfer_id
        admitted = [
            event["after"]["reversal_id"]
            for event in await audit_events(api, transfer_id)
            if event["action"] == "transfer.reversal.admitted"
        ]
        assert sorted(admitted) == sorted(reversal_ids)
        query = f"{ORIGINAL_TRANSFER_ID_ATTRIBUTE} = '{transfer_id}'"
        deadline = time.monotonic() + WAIT_SECONDS_MAX
        while (await bank_temporal.count_workflows(query)).count != 2:
            assert time.monotonic() < deadline, "the Temporal UI does not list both reversals"
            await asyncio.sleep(POLL_INTERVAL_SECONDS)
