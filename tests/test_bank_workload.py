"""A mixed day at the bank, every way a transfer can end, side by side: once every transfer
has ended, no account holds anything pending (no hold outlives its transfer) and the ledger
balances."""

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest

from tests.bank import Bank
from tests.test_saga_system import TERMINAL, Api

pytestmark = pytest.mark.system

FUNDED_MINOR = 60_000_00
APPROVED_MINOR = 25_00
REVIEWED_MINOR = 10_000_00  # the fraud service asks a reviewer
DECLINED_MINOR = 50_000_00  # the fraud service declines
TOO_MUCH_MINOR = FUNDED_MINOR + 1
EACH_KIND = 2


@dataclass(frozen=True)
class Case:
    """One kind of transfer: its amount, what happens while it waits, how it must end."""

    name: str
    amount_minor: int
    expected_status: str
    act_in_review: Callable[[Api, str], Awaitable[None]] | None = None


async def _review(api: Api, transfer_id: str, decision: str) -> None:
    response = await api.http.post(
        f"{api.bank.url('transactions')}/v1/admin/transfers/{transfer_id}/review",
        json={"decision": decision},
        headers=await api.operator(),
    )
    assert response.status_code == 202, response.text


async def _approve(api: Api, transfer_id: str) -> None:
    await _review(api, transfer_id, "approve")


async def _reject(api: Api, transfer_id: str) -> None:
    await _review(api, transfer_id, "reject")


async def _cancel(api: Api, transfer_id: str) -> None:
    response = await api.cancel(transfer_id, "changed my mind")
    assert response.status_code == 202, response.text


CASES = (
    Case("approved", APPROVED_MINOR, "completed"),
    Case("declined", DECLINED_MINOR, "declined"),
    Case("reviewed-and-approved", REVIEWED_MINOR, "completed", _approve),
    Case("reviewed-and-rejected", REVIEWED_MINOR, "declined", _reject),
    Case("cancelled-in-review", REVIEWED_MINOR, "cancelled", _cancel),
    Case("insufficient-funds", TOO_MUCH_MINOR, "rejected"),
)


async def _one(api: Api, case: Case, source: str, target: str) -> tuple[Case, dict[str, object]]:
    transfer_id = await api.start_transfer(source, target, case.amount_minor)
    if case.act_in_review is not None:
        waiting = await api.wait_for_status(transfer_id, frozenset({"in_review"}) | TERMINAL)
        assert waiting["status"] == "in_review", (case.name, waiting)
        await case.act_in_review(api, transfer_id)
    return case, await api.wait_for_status(transfer_id, TERMINAL)


async def test_after_every_transfer_ended_nothing_is_held(bank: Bank) -> None:
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as http:
        api = Api(bank, http)
        # One payer and one payee customer, an account per transfer on each side (fraud
        # features are per account, so no transfer sees another's velocity).
        payer = await api.customer(f"workload-payer-{uuid.uuid4().hex[:6]}")
        payee = await api.customer(f"workload-payee-{uuid.uuid4().hex[:6]}")
        work = [case for case in CASES for _ in range(EACH_KIND)]
        sources = [await api.open_account(payer) for _ in work]
        targets = [await api.open_account(payee) for _ in work]
        for source in sources:
            await api.deposit(source, FUNDED_MINOR)

        ended = await asyncio.gather(
            *(
                _one(api, case, source, target)
                for case, source, target in zip(work, sources, targets, strict=True)
            )
        )

        for case, transfer in ended:
            assert transfer["status"] == case.expected_status, (case.name, transfer)
        for account_id in (*sources, *targets):
            balances = await api.balances(account_id)
            assert balances["debits_pending_minor"] == 0, (account_id, balances)
            assert balances["credits_pending_minor"] == 0, (account_id, balances)
        moved = sum(case.amount_minor for case, _ in ended if case.expected_status == "completed")
        received = [(await api.balances(target))["posted_minor"] for target in targets]
        assert sum(received) == moved
        invariants = await api.invariants()
        assert invariants["ok"] is True, invariants
