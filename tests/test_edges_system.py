"""Nothing is stranded at the edges, on the whole bank as `sagabank up` runs it:

- a transfer waiting in review whose workflow an operator terminates (from the Temporal UI)
  frees its funds when its hold expires: the review timeout plus the grace;
- a transfer whose saga could not start (Temporal stopped during its POST), and whose request
  is never retried, is started by the reconciler once Temporal is back, and ends.

This bank is its own: short review and grace periods, an eager reconciler, and a Temporal
server this module stops and resumes.
"""

import asyncio
import json
import os
import signal
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from accounts.ledger.rules import expiry_void_id
from contracts.transfers import TRANSFERS_PATH, step_id, workflow_id
from kit.testing import assert_problem
from tests.bank import Bank, start_bank
from tests.test_saga_system import TERMINAL, Api

pytestmark = pytest.mark.system

READY_TIMEOUT_SECONDS = 240.0
REVIEW_TIMEOUT_SECONDS = 10
HOLD_GRACE_SECONDS = 5
# The hold expires review + grace after it was placed; the sweeper then runs every second.
RELEASE_TIMEOUT_SECONDS = REVIEW_TIMEOUT_SECONDS + HOLD_GRACE_SECONDS + 30
RECONCILE_TIMEOUT_SECONDS = 60.0
POLL_INTERVAL_SECONDS = 0.5
REVIEWED_MINOR = 10_000_00  # large enough for the fraud service to ask for a review


@pytest.fixture(scope="module")
def edges_bank() -> Iterator[Bank]:
    settings = {
        "TRANSACTIONS_REVIEW_TIMEOUT_SECONDS": str(REVIEW_TIMEOUT_SECONDS),
        "TRANSACTIONS_HOLD_GRACE_SECONDS": str(HOLD_GRACE_SECONDS),
        "TRANSACTIONS_RECONCILE_INTERVAL_SECONDS": "1",
        "TRANSACTIONS_RECONCILE_AFTER_SECONDS": "2",
        # A stopped Temporal is noticed within this, rather than 10 s.
        "TRANSACTIONS_TEMPORAL_RPC_TIMEOUT_SECONDS": "3",
    }
    with tempfile.TemporaryDirectory(prefix="sagabank-edges-") as directory:
        running = start_bank(Path(directory) / "state", settings=settings)
        try:
            running.wait_until_ready(READY_TIMEOUT_SECONDS)
            yield running
        finally:
            running.stop()


@pytest.fixture
async def api(edges_bank: Bank) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0)) as http:
        yield Api(edges_bank, http)


async def _wait_until(what: str, timeout_seconds: float, check: Any) -> Any:
    """Poll `check()` until it returns something truthy, for at most `timeout_seconds`."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(POLL_INTERVAL_SECONDS)


async def test_a_terminated_review_frees_the_funds_when_its_hold_expires(
    api: Api, edges_bank: Bank
) -> None:
    source, target = await api.funded_pair(12_000_00)
    transfer_id = await api.start_transfer(source, target, REVIEWED_MINOR)
    waiting = await api.wait_for_status(transfer_id, frozenset({"in_review"}))
    assert waiting["status"] == "in_review", waiting
    assert (await api.balances(source))["available_minor"] == 2_000_00

    # What an operator does from the Temporal UI: terminate, so no compensation runs.
    temporal = await Client.connect(
        edges_bank.temporal_address, data_converter=edges_bank.data_converter()
    )
    handle = temporal.get_workflow_handle(workflow_id(uuid.UUID(transfer_id)))
    await handle.terminate(reason="operator: terminated from the Temporal UI")

    async def funds_back() -> bool:
        balances = await api.balances(source)
        return balances["available_minor"] == 12_000_00 and balances["debits_pending_minor"] == 0

    await _wait_until("the held funds came back", RELEASE_TIMEOUT_SECONDS, funds_back)

    # The ledger released the hold itself (no void of the saga's), and audited it under
    # the transfer, where `sagabank audit --transfer` finds it.
    hold_id = step_id(uuid.UUID(transfer_id), "hold")
    assert await api.ledger_transfer(step_id(uuid.UUID(transfer_id), "void")) is None

    async def released_in_the_journal() -> dict[str, Any] | None:
        return await api.ledger_transfer(expiry_void_id(hold_id))

    release = await _wait_until(
        "the sweeper's void", RELEASE_TIMEOUT_SECONDS, released_in_the_journal
    )
    assert (release["pending_id"], release["amount_minor"]) == (str(hold_id), REVIEWED_MINOR)
    events = await edges_bank.audit_events(api.http, "accounts", transfer_id=transfer_id)
    # The hold itself is audited as the worker wrote it; its release, as the ledger's own.
    assert [(event["action"], event["actor_type"]) for event in events] == [
        ("ledger_transfer.created", "service"),
        ("ledger.hold_expired", "system"),
    ], events
    assert (await api.balances(target))["credits_pending_minor"] == 0
    invariants = await api.invariants()
    assert invariants["ok"] is True, invariants


def _temporal_pid(bank: Bank) -> int:
    state = json.loads((bank.state_dir / "up.json").read_text())
    pid = state["children"]["temporal"]
    assert isinstance(pid, int), state
    return pid


async def test_a_transfer_whose_saga_could_not_start_is_started_once_temporal_is_back(
    api: Api, edges_bank: Bank
) -> None:
    source, target = await api.funded_pair(100_00)
    temporal_pid = _temporal_pid(edges_bank)
    # Temporal stops answering (SIGSTOP: the launcher, which would end the bank if Temporal
    # exited, keeps running) for exactly the time of the request.
    os.killpg(temporal_pid, signal.SIGSTOP)
    try:
        refused = await api.transfer(source, target, 25_00)
    finally:
        os.killpg(temporal_pid, signal.SIGCONT)
    assert_problem(refused, 503, "workflow-service-unavailable")
    assert int(refused.headers["retry-after"]) > 0

    # The customer never retries. The transfer was recorded; the reconciler starts its saga.
    owner = api.owners[source]
    listed = await api.http.get(
        f"{edges_bank.url('transactions')}{TRANSFERS_PATH}",
        params={"account_id": source},
        headers=owner.headers,
    )
    assert listed.status_code == 200, listed.text
    (recorded,) = listed.json()["items"]
    transfer_id = recorded["id"]
    api.requesters[transfer_id] = owner

    transfer = await api.wait_for_status(transfer_id, TERMINAL, RECONCILE_TIMEOUT_SECONDS)
    assert transfer["status"] == "completed", transfer
    assert (await api.balances(source))["posted_minor"] == 100_00 - 25_00
    assert (await api.balances(target))["posted_minor"] == 25_00
    events = await edges_bank.audit_events(api.http, "transactions", transfer_id=transfer_id)
    actions = [event["action"] for event in events]
    assert actions[:2] == ["transfer.requested", "transfer.saga_reconciled"], actions
