"""Exactly once under crashes: the saga's worker is killed with SIGKILL, again and again,
while transfers run; every transfer still ends, no hold or posting is applied twice, and
the audit trail holds each step's event exactly once (a kill between a step and its report
makes the restarted worker report it again; the deterministic event id keeps it single).

This test runs a bank of its own (the worker it kills would disturb the shared one) and
kills the worker the way a crash would, leaving the launcher to restart it.
"""

import asyncio
import json
import os
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from temporalio.client import Client

from contracts.transfers import step_id, workflow_id
from tests.bank import SERVICES, Bank, start_bank
from tests.test_saga_system import TERMINAL, Api

pytestmark = pytest.mark.system

READY_TIMEOUT_SECONDS = 240.0
SOURCES = 20
TRANSFERS_PER_SOURCE = 3  # the 6th transfer in an hour would add velocity points
TRANSFERS = SOURCES * TRANSFERS_PER_SOURCE
KILLS = 3
WAVE_SIZE = TRANSFERS // KILLS
DEPOSIT_MINOR = 10_000_00
REQUESTS_AT_ONCE_MAX = 8
RESTART_TIMEOUT_SECONDS = 60.0
PROGRESS_TIMEOUT_SECONDS = 60.0
# After the last kill: activities the dead worker held time out (30 s) before a retry.
SETTLE_TIMEOUT_SECONDS = 240.0
POLL_INTERVAL_SECONDS = 0.5
# A completed transfer's events in the transactions service, in chain order.
COMPLETED_TIMELINE = [
    "transfer.requested",
    "transfer.step.validate",
    "transfer.step.hold",
    "transfer.step.score",
    "transfer.step.post",
    "transfer.step.notify",
]


def amount_of(index: int) -> int:
    """100.00 EUR and some cents, a different amount for each transfer; no fraud rule fires."""
    return 100_00 + index


@pytest.fixture(scope="module")
def crash_bank() -> Iterator[Bank]:
    with tempfile.TemporaryDirectory(prefix="sagabank-crash-") as directory:
        running = start_bank(Path(directory) / "state")
        try:
            running.wait_until_ready(READY_TIMEOUT_SECONDS)
            yield running
        finally:
            running.stop()


def worker_pid(bank: Bank) -> int | None:
    """The worker's pid as the launcher records it in up.json (None while it is down)."""
    try:
        state = json.loads((bank.state_dir / "up.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None  # being rewritten
    pid = state["children"].get("worker")
    return pid if isinstance(pid, int) else None


def is_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def kill_worker(bank: Bank) -> int:
    """SIGKILL the worker, then wait until the launcher runs a new one; the new pid."""
    killed = worker_pid(bank)
    assert killed is not None, "up.json names no worker"
    assert is_alive(killed)
    os.kill(killed, signal.SIGKILL)
    deadline = time.monotonic() + RESTART_TIMEOUT_SECONDS
    while True:
        current = worker_pid(bank)
        if current is not None and current != killed and is_alive(current):
            return current
        assert time.monotonic() < deadline, f"no new worker after killing {killed}"
        await asyncio.sleep(POLL_INTERVAL_SECONDS / 5)


async def start_wave(api: Api, pairs: list[tuple[str, str]], wave: int) -> list[str]:
    """Ask for the transfers of one wave (indexes `wave * WAVE_SIZE` onwards)."""
    gate = asyncio.Semaphore(REQUESTS_AT_ONCE_MAX)

    async def start(index: int) -> str:
        source, target = pairs[index]
        async with gate:
            return await api.start_transfer(source, target, amount_of(index))

    indexes = range(wave * WAVE_SIZE, (wave + 1) * WAVE_SIZE)
    return list(await asyncio.gather(*(start(index) for index in indexes)))


def freeze_worker(bank: Bank) -> None:
    """Stop the worker where it stands (SIGSTOP): what it holds stays held until the kill."""
    pid = worker_pid(bank)
    assert pid is not None, "up.json names no worker"
    os.kill(pid, signal.SIGSTOP)


async def snapshot(api: Api, transfer_ids: list[str]) -> list[dict[str, Any]]:
    gate = asyncio.Semaphore(REQUESTS_AT_ONCE_MAX)

    async def get(transfer_id: str) -> dict[str, Any]:
        async with gate:
            return await api.get_transfer(transfer_id)

    return list(await asyncio.gather(*(get(transfer_id) for transfer_id in transfer_ids)))


def steps_recorded(transfers: list[dict[str, Any]]) -> int:
    return sum(len(transfer["steps"]) for transfer in transfers)


async def wait_for_progress(api: Api, transfer_ids: list[str], steps_before: int) -> None:
    """Wait until the restarted worker has moved the saga on by at least one step."""
    deadline = time.monotonic() + PROGRESS_TIMEOUT_SECONDS
    while steps_recorded(await snapshot(api, transfer_ids)) <= steps_before:
        assert time.monotonic() < deadline, "no step recorded since the worker came back"
        await asyncio.sleep(POLL_INTERVAL_SECONDS)


async def wait_until_settled(
    api: Api, temporal: Client, transfer_ids: list[str]
) -> list[dict[str, Any]]:
    """Every projection terminal and every workflow closed, within SETTLE_TIMEOUT_SECONDS."""
    async with asyncio.timeout(SETTLE_TIMEOUT_SECONDS):
        await asyncio.gather(
            *(
                temporal.get_workflow_handle(workflow_id(uuid.UUID(transfer_id))).result()
                for transfer_id in transfer_ids
            )
        )
    return await snapshot(api, transfer_ids)


async def assert_moved_once_and_nothing_held(
    api: Api, sources: list[str], targets: list[str]
) -> None:
    """Each completed transfer moved its money exactly once: every payee received its own
    amount once, every payer paid the sum of its transfers, and nothing is held."""
    for index, target in enumerate(targets):
        balances = await api.balances(target)
        assert (balances["posted_minor"], balances["pending_minor"]) == (amount_of(index), 0)
        assert balances["credits_pending_minor"] == 0, balances
    for position, source in enumerate(sources):
        paid = sum(amount_of(index) for index in range(position, TRANSFERS, SOURCES))
        balances = await api.balances(source)
        assert (balances["posted_minor"], balances["pending_minor"]) == (
            DEPOSIT_MINOR - paid,
            0,
        )
        assert balances["available_minor"] == DEPOSIT_MINOR - paid
        # No hold outlives its transfer: nothing pending on either side.
        assert balances["debits_pending_minor"] == 0, balances


async def test_every_transfer_ends_exactly_once_though_the_worker_is_killed_three_times(
    crash_bank: Bank,
) -> None:
    temporal = await Client.connect(
        crash_bank.temporal_address, data_converter=crash_bank.data_converter()
    )
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as http:
        api = Api(crash_bank, http)
        sources = [await api.open_account(f"crash-payer-{i}") for i in range(SOURCES)]
        # One payee with many accounts: each customer costs a password hash to register.
        payee = await api.customer("crash-payee")
        targets = [await api.open_account(payee) for _ in range(TRANSFERS)]
        for source in sources:
            await api.deposit(source, DEPOSIT_MINOR)
        pairs = [(sources[index % SOURCES], targets[index]) for index in range(TRANSFERS)]

        # A wave of transfers per kill, asked for while the worker is frozen: each kill finds
        # a wave in flight (its tasks held by the frozen worker), however fast the machine.
        transfer_ids: list[str] = []
        workers = [worker_pid(crash_bank)]
        for wave in range(KILLS):
            freeze_worker(crash_bank)
            transfer_ids += await start_wave(api, pairs, wave)
            before = await snapshot(api, transfer_ids)
            running = [t for t in before if t["status"] not in TERMINAL]
            assert len(running) >= WAVE_SIZE, "a wave ended while the worker was frozen"
            workers.append(await kill_worker(crash_bank))
            await wait_for_progress(api, transfer_ids, steps_recorded(before))
        transfers = await wait_until_settled(api, temporal, transfer_ids)

        assert len(set(workers)) == KILLS + 1, workers
        assert [t["status"] for t in transfers] == ["completed"] * TRANSFERS, [
            (t["id"], t["status"], t["failure_reason"]) for t in transfers
        ]
        for transfer in transfers:
            names = [step["name"] for step in transfer["steps"]]
            assert names == ["validate", "hold", "score", "post", "notify"], transfer

        await assert_moved_once_and_nothing_held(api, sources, targets)
        # The ledger holds one hold and one posting per transfer, under their step ids.
        for index, transfer_id in enumerate(transfer_ids):
            hold = await api.ledger_transfer(step_id(uuid.UUID(transfer_id), "hold"))
            posting = await api.ledger_transfer(step_id(uuid.UUID(transfer_id), "post"))
            assert hold is not None
            assert posting is not None
            assert hold["amount_minor"] == posting["amount_minor"] == amount_of(index)
            assert await api.ledger_transfer(step_id(uuid.UUID(transfer_id), "void")) is None
        invariants = await api.invariants()
        assert invariants["ok"] is True, invariants

        # The audit trail caught up with every step once, however often the worker died
        # between a step and its report: the report's event id is fixed per step, so a
        # report sent again after a crash wrote nothing, and none went missing.
        gate = asyncio.Semaphore(REQUESTS_AT_ONCE_MAX)

        async def actions_of(transfer_id: str) -> list[str]:
            async with gate:
                events = await crash_bank.audit_events(
                    http, "transactions", transfer_id=transfer_id
                )
            return [event["action"] for event in events]

        timelines = await asyncio.gather(*(actions_of(t) for t in transfer_ids))
        for transfer_id, actions in zip(transfer_ids, timelines, strict=True):
            assert actions == COMPLETED_TIMELINE, (transfer_id, actions)
        for service in SERVICES:
            verification = await crash_bank.verify_audit(http, service)
            assert verification["ok"] is True, verification
