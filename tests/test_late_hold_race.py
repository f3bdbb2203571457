"""A hold that arrives late cannot outlive the refusal of its transfer.

The saga's first attempt to place a hold is held back on its way to the ledger (as a request
stuck in a queue or waiting for a connection would be), so the worker times out and retries.
Meanwhile the source account is frozen: the retry is refused and the saga ends `rejected`.
Then the first attempt arrives after all. Whichever order the late hold and the saga's void
reach the ledger in, and whether or not the late request still carries its deadline (a
skewed clock), no hold survives.

Real pieces: the accounts service and its PostgreSQL, the TransferWorkflow and its activities
on the Temporal dev server. Stand-ins: the other three services (HTTP only, always 2xx).
"""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from accounts.config import Settings as AccountsSettings
from accounts.main import MIGRATIONS_PATH as ACCOUNTS_MIGRATIONS
from accounts.main import create_app as create_accounts_app
from accounts.tests.helpers import Bank, write_signing_key
from contracts.accounts import LEDGER_TRANSFERS_PATH
from contracts.common import REQUEST_DEADLINE_HEADER
from contracts.transfers import (
    WORKFLOW_NAME,
    TransferStatus,
    TransferWorkflowInput,
    TransferWorkflowResult,
    step_id,
    workflow_id,
)
from kit.http import create_client
from kit.testing import TestIssuer, app_client, assert_problem
from kit.token_signing import SigningKey
from workflows.activities import TransferActivities
from workflows.transfer import TransferWorkflow
from workflows.worker import WORKFLOW_RUNNER

WAIT_SECONDS_MAX = 30.0
# The worker gives up on a ledger call after this; the saga retries the hold a second later.
LEDGER_TIMEOUT_SECONDS = 1.0
AMOUNT_MINOR = 300

Order = Literal["void-first", "hold-first"]


@dataclass
class DelayedFirstHold(httpx.AsyncBaseTransport):
    """In front of the accounts app: keeps the first `pending` request from arriving until
    the test lets it go (its caller has long timed out by then), and can hold the void."""

    inner: httpx.AsyncBaseTransport
    strip_deadline: bool = False
    hold_void: bool = False
    first_hold_held: asyncio.Event = field(default_factory=asyncio.Event)
    release_first_hold: asyncio.Event = field(default_factory=asyncio.Event)
    void_arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release_void: asyncio.Event = field(default_factory=asyncio.Event)
    late_answer: asyncio.Future[httpx.Response] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    _late: asyncio.Task[None] | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        kind = _ledger_kind(request)
        if kind == "pending" and self._late is None:
            self._late = asyncio.create_task(self._deliver_late(request))
            self.first_hold_held.set()
            # No answer comes back: the caller's read timeout ends its wait, as on a socket.
            await asyncio.sleep(request.extensions["timeout"]["read"])
            raise httpx.ReadTimeout("no answer from the ledger", request=request)
        if kind == "void_pending" and self.hold_void:
            self.void_arrived.set()
            await self.release_void.wait()
        return await self.inner.handle_async_request(request)

    async def _deliver_late(self, request: httpx.Request) -> None:
        await self.release_first_hold.wait()
        if self.strip_deadline:
            del request.headers[REQUEST_DEADLINE_HEADER]
        response = await self.inner.handle_async_request(request)
        await response.aread()
        self.late_answer.set_result(response)


def _ledger_kind(request: httpx.Request) -> str | None:
    if request.method != "POST" or request.url.path != LEDGER_TRANSFERS_PATH:
        return None
    kind: str = json.loads(request.content)["kind"]
    return kind


def _always_fine(request: httpx.Request) -> httpx.Response:
    """The transactions, fraud and notifications stand-ins: every report and event taken."""
    return httpx.Response(202 if request.url.path.endswith("/events") else 200, json={})


@pytest.fixture(scope="module")
def signing_keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The issuer's key (unused here: the worker's tokens come from the test issuer)."""
    directory = tmp_path_factory.mktemp("ledger-keys")
    write_signing_key(directory, "primary", SigningKey.generate())
    return directory


@asynccontextmanager
async def saga_against_the_ledger(
    env: WorkflowEnvironment,
    task_queue: str,
    database_url: str,
    signing_keys_dir: Path,
    *,
    strip_deadline: bool,
    hold_void: bool,
) -> AsyncIterator[tuple[Bank, DelayedFirstHold]]:
    issuer = TestIssuer()
    settings = AccountsSettings(
        database_url=database_url,
        log_json=True,
        hold_sweep_enabled=False,
        signing_keys_dir=signing_keys_dir,
    )
    ledger = create_accounts_app(settings, token_verifier=issuer.verifier)
    async with app_client(ledger) as operator_client:
        operator_client.headers.update(issuer.operator())
        gate = DelayedFirstHold(
            httpx.ASGITransport(app=ledger), strip_deadline=strip_deadline, hold_void=hold_void
        )
        accounts = create_client(
            "http://accounts.test", timeout_seconds=LEDGER_TIMEOUT_SECONDS, transport=gate
        )
        accounts.headers.update(issuer.worker())
        others = httpx.MockTransport(_always_fine)
        activities = TransferActivities(
            accounts=accounts,
            transactions=create_client("http://transactions.test", transport=others),
            fraud=create_client("http://fraud.test", transport=others),
            notifications=create_client("http://notifications.test", transport=others),
        )
        try:
            async with Worker(
                env.client,
                task_queue=task_queue,
                workflows=[TransferWorkflow],
                activities=activities.all(),
                workflow_runner=WORKFLOW_RUNNER,
            ):
                yield Bank(operator_client, issuer), gate
        finally:
            await activities.aclose()


async def _run_the_race(
    env: WorkflowEnvironment, task_queue: str, bank: Bank, gate: DelayedFirstHold, order: Order
) -> tuple[str, str, TransferWorkflowInput, TransferWorkflowResult]:
    alice = (await bank.funded_account(1000, customer_id="alice"))["id"]
    bob = (await bank.open_account(customer_id="bob"))["id"]
    transfer = TransferWorkflowInput(
        transfer_id=uuid.uuid4(),
        source_account_id=alice,
        target_account_id=bob,
        amount_minor=AMOUNT_MINOR,
        currency="EUR",
        hold_timeout_seconds=3600,
    )
    handle = await env.client.start_workflow(
        WORKFLOW_NAME,
        transfer,
        id=workflow_id(transfer.transfer_id),
        task_queue=task_queue,
        result_type=TransferWorkflowResult,
    )
    async with asyncio.timeout(WAIT_SECONDS_MAX):
        await gate.first_hold_held.wait()
        # While the first attempt is stuck, the account is frozen: the retry is refused.
        assert (await bank.status_action(alice, "freeze")).status_code == 200
        if order == "hold-first":
            # The late hold lands between the refusal and the void.
            await gate.void_arrived.wait()
            assert (await bank.status_action(alice, "unfreeze")).status_code == 200
            gate.release_first_hold.set()
            landed = await gate.late_answer
            assert landed.status_code == 201, landed.text
            assert (await bank.balances(alice))["debits_pending_minor"] == AMOUNT_MINOR
            gate.release_void.set()
            result = await handle.result()
        else:
            result = await handle.result()
            # Unfrozen, the late hold would now be placed on its merits, were it not refused.
            assert (await bank.status_action(alice, "unfreeze")).status_code == 200
            gate.release_first_hold.set()
            await gate.late_answer
    return alice, bob, transfer, result


async def _assert_no_hold_survives(bank: Bank, alice: str, bob: str) -> None:
    balances = await bank.balances(alice)
    assert balances["debits_pending_minor"] == 0, balances
    assert balances["available_minor"] == 1000, balances
    assert (await bank.balances(bob))["credits_pending_minor"] == 0
    await bank.assert_ledger_sound()


@pytest.mark.parametrize(
    ("order", "strip_deadline"),
    [("void-first", False), ("void-first", True), ("hold-first", True)],
    ids=["late-hold-past-its-deadline", "late-hold-with-a-skewed-clock", "late-hold-before-void"],
)
async def test_a_late_first_attempt_leaves_no_hold(
    temporal_dev_env: WorkflowEnvironment,
    task_queue: str,
    database_factory: Any,
    signing_keys_dir: Path,
    order: Order,
    strip_deadline: bool,
) -> None:
    database_url = await database_factory(Path(ACCOUNTS_MIGRATIONS))
    async with saga_against_the_ledger(
        temporal_dev_env,
        task_queue,
        database_url,
        signing_keys_dir,
        strip_deadline=strip_deadline,
        hold_void=order == "hold-first",
    ) as (bank, gate):
        alice, bob, transfer, result = await _run_the_race(
            temporal_dev_env, task_queue, bank, gate, order
        )

        assert result.status is TransferStatus.rejected
        assert result.failure_reason is not None
        assert result.failure_reason.startswith("account-not-active"), result.failure_reason
        hold_id = step_id(transfer.transfer_id, "hold")
        late = gate.late_answer.result()
        if order == "hold-first":
            # The void found the hold and released it.
            void = await bank.client.get(
                f"{LEDGER_TRANSFERS_PATH}/{step_id(transfer.transfer_id, 'void')}"
            )
            assert void.json()["pending_id"] == str(hold_id)
        elif strip_deadline:
            assert_problem(late, 409, "pending-transfer-voided")
        else:
            assert_problem(late, 503, "deadline-exceeded")
        if order == "void-first":
            missing = await bank.client.get(f"{LEDGER_TRANSFERS_PATH}/{hold_id}")
            assert_problem(missing, 404, "ledger-transfer-not-found")
        await _assert_no_hold_survives(bank, alice, bob)
