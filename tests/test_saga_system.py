"""The transfer saga through the real services and the dev server, as `sagabank up` runs them.

Each path is checked where a customer and an operator would look: the transfer's status
projection and step history (transactions), the balances and ledger transfers (accounts),
the workflow and its search attributes (Temporal), and the outcome fed back to fraud.
"""

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import SearchAttributeKey

from contracts.accounts import LEDGER_INVARIANTS_PATH, LEDGER_TRANSFERS_PATH
from contracts.fraud import ACCOUNT_FEATURES_PATH
from contracts.transfers import TRANSFERS_PATH, step_id, workflow_id
from tests.bank import Bank, Customer

# How often start_transfer asks again after a 503 `accounts-unavailable`.
UNAVAILABLE_ATTEMPTS_MAX = 5

pytestmark = pytest.mark.system

TERMINAL = frozenset({"completed", "rejected", "declined", "expired", "cancelled"})
WAIT_SECONDS_MAX = 60.0
POLL_INTERVAL_SECONDS = 0.2
STATUS_ATTRIBUTE = SearchAttributeKey.for_keyword("TransferStatus")
FRAUD_DECISION_ATTRIBUTE = SearchAttributeKey.for_keyword("FraudDecision")

# The default ruleset (fraud/rulesets/default.toml), between accounts new to each other.
APPROVED_MINOR = 123_45  # 123.45 EUR: no rule fires
REVIEWED_MINOR = 10_000_00  # 10,000.00 EUR: review
DECLINED_MINOR = 50_000_00  # 50,000.00 EUR: decline


class Api:
    """The bank's HTTP APIs, as customers, an operator and the tests use them: each account
    is opened by its owner, each transfer asked for and followed by the source's owner,
    and the operator reads the ledger and pays money in."""

    def __init__(self, bank: Bank, http: httpx.AsyncClient) -> None:
        self.bank = bank
        self.http = http
        self.owners: dict[str, Customer] = {}
        self.requesters: dict[str, Customer] = {}

    async def customer(self, name: str) -> Customer:
        return await self.bank.register_customer(self.http, name)

    async def open_account(self, owner: Customer | str) -> str:
        """An EUR account of `owner` (a name registers a new customer by that name)."""
        customer = owner if isinstance(owner, Customer) else await self.customer(owner)
        account_id = await self.bank.open_account(self.http, customer)
        self.owners[account_id] = customer
        return account_id

    async def deposit(self, account_id: str, amount_minor: int) -> None:
        await self.bank.deposit(self.http, account_id, amount_minor)

    async def operator(self) -> dict[str, str]:
        return await self.bank.operator_headers(self.http)

    async def funded_pair(self, funded_minor: int) -> tuple[str, str]:
        """A new source holding `funded_minor` and a new, empty target (two customers)."""
        source = await self.open_account(f"payer-{uuid.uuid4().hex[:8]}")
        target = await self.open_account(f"payee-{uuid.uuid4().hex[:8]}")
        await self.deposit(source, funded_minor)
        return source, target

    async def balances(self, account_id: str) -> dict[str, int]:
        response = await self.http.get(
            f"{self.bank.url('accounts')}/v1/accounts/{account_id}",
            headers=self.owners[account_id].headers,
        )
        assert response.status_code == 200, response.text
        balances: dict[str, int] = response.json()["balances"]
        return balances

    async def ledger_transfer(self, ledger_transfer_id: uuid.UUID) -> dict[str, Any] | None:
        response = await self.http.get(
            f"{self.bank.url('accounts')}{LEDGER_TRANSFERS_PATH}/{ledger_transfer_id}",
            headers=await self.operator(),
        )
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def invariants(self) -> dict[str, Any]:
        response = await self.http.get(
            f"{self.bank.url('accounts')}{LEDGER_INVARIANTS_PATH}", headers=await self.operator()
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def completed_transfers_of(self, account_id: str) -> int:
        """How many completed transfers fraud has learnt of for this source account."""
        path = ACCOUNT_FEATURES_PATH.format(account_id=account_id)
        response = await self.http.get(
            f"{self.bank.url('fraud')}{path}",
            params={"currency": "EUR"},
            headers=await self.operator(),
        )
        assert response.status_code == 200, response.text
        count: int = response.json()["completed_transfers"]
        return count

    async def transfer(
        self, source: str, target: str, amount_minor: int, *, key: str | None = None
    ) -> httpx.Response:
        """The source account's owner asks for the transfer."""
        return await self.http.post(
            f"{self.bank.url('transactions')}{TRANSFERS_PATH}",
            json={
                "source_account_id": source,
                "target_account_id": target,
                "amount_minor": amount_minor,
                "currency": "EUR",
                "description": "saga system test",
            },
            headers={**self.owners[source].headers, "Idempotency-Key": key or str(uuid.uuid4())},
        )

    async def start_transfer(self, source: str, target: str, amount_minor: int) -> str:
        # As a client does: a 503 (accounts did not answer the front door in time, seen on
        # a saturated 2-core CI machine) is retried after its Retry-After, with the same
        # Idempotency-Key, so the retry cannot make a second transfer. Bounded.
        key = str(uuid.uuid4())
        for _attempt in range(UNAVAILABLE_ATTEMPTS_MAX):
            response = await self.transfer(source, target, amount_minor, key=key)
            if response.status_code != 503:
                break
            await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
        assert response.status_code == 202, response.text
        transfer_id: str = response.json()["id"]
        self.requesters[transfer_id] = self.owners[source]
        return transfer_id

    async def get_transfer(self, transfer_id: str) -> dict[str, Any]:
        response = await self.http.get(
            f"{self.bank.url('transactions')}{TRANSFERS_PATH}/{transfer_id}",
            headers=self.requesters[transfer_id].headers,
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def cancel(self, transfer_id: str, reason: str) -> httpx.Response:
        return await self.http.post(
            f"{self.bank.url('transactions')}{TRANSFERS_PATH}/{transfer_id}/cancel",
            json={"reason": reason},
            headers=self.requesters[transfer_id].headers,
        )

    async def wait_for_status(
        self, transfer_id: str, statuses: frozenset[str], timeout_seconds: float = WAIT_SECONDS_MAX
    ) -> dict[str, Any]:
        """Poll the projection until its status is one of `statuses`, for a bounded time."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            transfer = await self.get_transfer(transfer_id)
            if transfer["status"] in statuses:
                return transfer
            assert time.monotonic() < deadline, f"still {transfer['status']}: {transfer}"
            await asyncio.sleep(POLL_INTERVAL_SECONDS)


async def finished_workflow(temporal: Client, transfer_id: str) -> WorkflowHandle[Any, Any]:
    """The transfer's workflow once it has closed (its last steps follow the projection's
    terminal status by a moment: the event, the outcome report, the notify step)."""
    handle = temporal.get_workflow_handle(workflow_id(uuid.UUID(transfer_id)))
    async with asyncio.timeout(WAIT_SECONDS_MAX):
        await handle.result()
    return handle


def steps(transfer: dict[str, Any]) -> list[tuple[str, str]]:
    return [(step["name"], step["outcome"]) for step in transfer["steps"]]


async def assert_workflow(
    handle: WorkflowHandle[Any, Any], status: str, fraud_decision: str
) -> None:
    description = await handle.describe()
    assert description.status == WorkflowExecutionStatus.COMPLETED
    attributes = description.typed_search_attributes
    assert attributes.get(STATUS_ATTRIBUTE) == status
    assert attributes.get(FRAUD_DECISION_ATTRIBUTE) == fraud_decision


@pytest.fixture
def api(bank: Bank, http: httpx.AsyncClient) -> Api:
    return Api(bank, http)


class TestSuccess:
    async def test_moves_the_money_once_and_records_every_step(
        self, api: Api, bank_temporal: Client
    ) -> None:
        source, target = await api.funded_pair(1_000_00)
        transfer_id = await api.start_transfer(source, target, APPROVED_MINOR)

        transfer = await api.wait_for_status(transfer_id, TERMINAL)
        handle = await finished_workflow(bank_temporal, transfer_id)
        transfer = await api.get_transfer(transfer_id)

        assert transfer["status"] == "completed", transfer
        assert transfer["failure_reason"] is None
        assert steps(transfer) == [
            ("validate", "succeeded"),
            ("hold", "succeeded"),
            ("score", "approve"),
            ("post", "succeeded"),
            ("notify", "succeeded"),
        ]
        assert transfer["fraud"]["decision"] == "approve"
        hold_id = step_id(uuid.UUID(transfer_id), "hold")
        post_id = step_id(uuid.UUID(transfer_id), "post")
        assert (transfer["hold_id"], transfer["posting_id"]) == (str(hold_id), str(post_id))
        hold = await api.ledger_transfer(hold_id)
        assert hold is not None
        assert (hold["kind"], hold["amount_minor"]) == ("pending", APPROVED_MINOR)
        posting = await api.ledger_transfer(post_id)
        assert posting is not None
        assert (posting["kind"], posting["pending_id"]) == ("post_pending", str(hold_id))
        assert await api.ledger_transfer(step_id(uuid.UUID(transfer_id), "void")) is None

        payer = await api.balances(source)
        assert (payer["posted_minor"], payer["pending_minor"]) == (1_000_00 - APPROVED_MINOR, 0)
        payee = await api.balances(target)
        assert (payee["posted_minor"], payee["pending_minor"]) == (APPROVED_MINOR, 0)
        assert (await api.invariants())["ok"] is True
        await assert_workflow(handle, "completed", "approve")
        # The saga told fraud how it ended: the payer now has one completed transfer.
        assert await api.completed_transfers_of(source) == 1

    async def test_cancel_after_completion_is_refused(
        self, api: Api, bank_temporal: Client
    ) -> None:
        source, target = await api.funded_pair(1_000_00)
        transfer_id = await api.start_transfer(source, target, APPROVED_MINOR)
        await api.wait_for_status(transfer_id, TERMINAL)
        await finished_workflow(bank_temporal, transfer_id)

        refused = await api.cancel(transfer_id, "too late")

        assert refused.status_code == 409, refused.text
        assert refused.json()["type"].endswith(":transfer-not-cancellable")
        assert (await api.get_transfer(transfer_id))["status"] == "completed"
        assert (await api.balances(target))["posted_minor"] == APPROVED_MINOR


class TestFraudDecline:
    async def test_voids_the_hold_and_leaves_every_balance_as_it_was(
        self, api: Api, bank_temporal: Client
    ) -> None:
        source, target = await api.funded_pair(60_000_00)
        before = await api.balances(source)
        transfer_id = await api.start_transfer(source, target, DECLINED_MINOR)

        await api.wait_for_status(transfer_id, TERMINAL)
        handle = await finished_workflow(bank_temporal, transfer_id)
        transfer = await api.get_transfer(transfer_id)

        assert transfer["status"] == "declined", transfer
        assert transfer["failure_reason"].startswith("fraud-declined: score")
        assert steps(transfer) == [
            ("validate", "succeeded"),
            ("hold", "succeeded"),
            ("score", "decline"),
            ("void", "succeeded"),
            ("notify", "succeeded"),
        ]
        assert transfer["fraud"]["decision"] == "decline"
        assert transfer["posting_id"] is None
        void = await api.ledger_transfer(step_id(uuid.UUID(transfer_id), "void"))
        assert void is not None
        assert void["kind"] == "void_pending"
        assert await api.ledger_transfer(step_id(uuid.UUID(transfer_id), "post")) is None

        assert await api.balances(source) == before
        assert (before["posted_minor"], before["pending_minor"]) == (60_000_00, 0)
        assert (await api.balances(target))["posted_minor"] == 0
        assert (await api.invariants())["ok"] is True
        await assert_workflow(handle, "declined", "decline")
        assert await api.completed_transfers_of(source) == 0


class TestCancel:
    async def test_in_review_voids_the_hold(self, api: Api, bank_temporal: Client) -> None:
        source, target = await api.funded_pair(12_000_00)
        transfer_id = await api.start_transfer(source, target, REVIEWED_MINOR)
        waiting = await api.wait_for_status(transfer_id, frozenset({"in_review"}) | TERMINAL)
        assert waiting["status"] == "in_review", waiting
        # The hold is on while the reviewer would look.
        assert (await api.balances(source))["available_minor"] == 2_000_00

        accepted = await api.cancel(transfer_id, "wrong payee")

        assert accepted.status_code == 202, accepted.text
        await api.wait_for_status(transfer_id, TERMINAL)
        handle = await finished_workflow(bank_temporal, transfer_id)
        transfer = await api.get_transfer(transfer_id)
        assert transfer["status"] == "cancelled", transfer
        assert transfer["failure_reason"] == "cancelled: wrong payee"
        assert steps(transfer) == [
            ("validate", "succeeded"),
            ("hold", "succeeded"),
            ("score", "review"),
            ("cancel", "requested"),
            ("void", "succeeded"),
            ("notify", "succeeded"),
        ]
        assert await api.ledger_transfer(step_id(uuid.UUID(transfer_id), "void")) is not None
        assert await api.ledger_transfer(step_id(uuid.UUID(transfer_id), "post")) is None
        payer = await api.balances(source)
        assert (payer["posted_minor"], payer["pending_minor"]) == (12_000_00, 0)
        assert payer["available_minor"] == 12_000_00
        assert (await api.balances(target))["posted_minor"] == 0
        assert (await api.invariants())["ok"] is True
        await assert_workflow(handle, "cancelled", "review")

        # Cancelled once; asking again finds it finished.
        again = await api.cancel(transfer_id, "wrong payee")
        assert again.status_code == 409, again.text
