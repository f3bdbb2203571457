"""The audit trail on the live bank: one transfer's whole story, in order, from the admin
queries and from `sagabank audit`; every saga event pointing at its Temporal execution;
a rewritten event found by `verify`; and nobody without audit:read reading any of it."""

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest
from jose import jwt
from temporalio.client import Client

from contracts.audit import AUDIT_EVENTS_PATH, AUDIT_EXPORT_PATH, AUDIT_VERIFY_PATH
from contracts.auth import AUDIENCE_PREFIX, TOKEN_PATH, ServiceAudience
from contracts.fraud import DENY_LIST_PATH
from contracts.transfers import step_id, workflow_id
from sagabank.config import WORKER_CLIENT_ID
from sagabank.localstack.databases import SERVICE_DATABASES
from sagabank.localstack.secrets import SECRETS_DIR_NAME
from tests.bank import OPERATOR_CLIENT_ID, SERVICES, Bank
from tests.test_saga_system import (
    APPROVED_MINOR,
    DECLINED_MINOR,
    REVIEWED_MINOR,
    TERMINAL,
    Api,
    finished_workflow,
)

pytestmark = pytest.mark.system

Event = dict[str, Any]

COMPLETED = [
    "transfer.requested",
    "transfer.step.validate",
    "transfer.step.hold",
    "transfer.step.score",
    "transfer.step.post",
    "transfer.step.notify",
]
DECLINED = [
    "transfer.requested",
    "transfer.step.validate",
    "transfer.step.hold",
    "transfer.step.score",
    "transfer.step.void",
    "transfer.step.notify",
]
CANCELLED = [
    "transfer.requested",
    "transfer.step.validate",
    "transfer.step.hold",
    "transfer.step.score",
    "transfer.step.cancel",
    "transfer.step.void",
    "transfer.step.notify",
]


@pytest.fixture
def api(bank: Bank, http: httpx.AsyncClient) -> Api:
    return Api(bank, http)


def in_time_order(events: list[Event]) -> list[Event]:
    """As `sagabank audit` orders a timeline: time, then service, then chain sequence."""
    return sorted(
        events,
        key=lambda e: (datetime.fromisoformat(e["occurred_at"]), e["service"], e["sequence"]),
    )


async def admin_timeline(http: httpx.AsyncClient, bank: Bank, transfer_id: str) -> list[Event]:
    """Every service's events about the transfer, through each admin query, merged."""
    events: list[Event] = []
    for service in SERVICES:
        events += await bank.audit_events(http, service, transfer_id=transfer_id)
    return in_time_order(events)


def cli_timeline(bank: Bank, transfer_id: str) -> list[Event]:
    result = bank.sagabank("audit", "--transfer", transfer_id, "--json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


async def assert_story(
    http: httpx.AsyncClient,
    bank: Bank,
    temporal: Client,
    transfer_id: str,
    saga_actions: list[str],
    *,
    compensated: bool,
) -> list[Event]:
    """The transfer's timeline, the same from the admin queries and from the CLI, with the
    saga's events in `saga_actions` order, each naming the workflow and its run."""
    handle = await finished_workflow(temporal, transfer_id)
    run_id = (await handle.describe()).run_id
    timeline = await admin_timeline(http, bank, transfer_id)
    from_cli = cli_timeline(bank, transfer_id)

    assert [event["id"] for event in from_cli] == [event["id"] for event in timeline]
    assert from_cli == timeline  # the CLI's NDJSON is the services' events, untouched
    saga = [
        event
        for event in timeline
        if event["service"] == "transactions" and event["action"] in set(saga_actions)
    ]
    assert [event["action"] for event in saga] == saga_actions
    # Time order and each chain's order agree for the saga's own events.
    assert [event["sequence"] for event in saga] == sorted(event["sequence"] for event in saga)
    for event in timeline:
        if event["service"] == "transactions":
            assert event["workflow_id"] == workflow_id(uuid.UUID(transfer_id)), event
    for event in saga[1:]:  # the request is recorded before the run exists
        assert (event["actor_type"], event["actor_id"]) == ("service", WORKER_CLIENT_ID)
        assert event["run_id"] == run_id, event
    [requested] = [event for event in saga if event["action"] == "transfer.requested"]
    assert requested["actor_type"] == "customer"
    assert requested["outcome"] == "accepted"
    by_action = {event["action"]: event for event in saga}
    hold = by_action["transfer.step.hold"]
    assert hold["after"]["hold_id"] == str(step_id(uuid.UUID(transfer_id), "hold"))
    if compensated:
        void = by_action["transfer.step.void"]
        assert void["compensates"] == hold["id"]
        assert void["after"]["hold_id"] == str(step_id(uuid.UUID(transfer_id), "hold"))
        assert void["after"]["compensates_step"] == "hold"
    others = [event for event in saga if event["action"] != "transfer.step.void"]
    assert [event["compensates"] for event in others] == [None] * len(others)
    return timeline


class TestTimelines:
    async def test_completed(
        self, api: Api, bank: Bank, bank_temporal: Client, http: httpx.AsyncClient
    ) -> None:
        source, target = await api.funded_pair(1_000_00)
        transfer_id = await api.start_transfer(source, target, APPROVED_MINOR)
        await api.wait_for_status(transfer_id, TERMINAL)

        timeline = await assert_story(
            http, bank, bank_temporal, transfer_id, COMPLETED, compensated=False
        )

        by_action = {event["action"]: event for event in timeline}
        assert by_action["transfer.step.post"]["after"]["posting_id"] == str(
            step_id(uuid.UUID(transfer_id), "post")
        )
        assert by_action["transfer.step.score"]["outcome"] == "approve"
        # The timeline as a person reads it: one line per event, the workflow id on each.
        table = bank.sagabank("audit", "--transfer", transfer_id)
        assert table.returncode == 0, table.stderr
        header, *lines = table.stdout.splitlines()
        assert header.split()[:3] == ["time", "service", "actor"]
        assert len(lines) == len(timeline)
        saga_lines = [line for line in lines if line.split()[1] == "transactions"]
        assert len(saga_lines) == len(COMPLETED)
        for line in saga_lines:
            assert line.split()[-1] == workflow_id(uuid.UUID(transfer_id)), line

    async def test_declined(
        self, api: Api, bank: Bank, bank_temporal: Client, http: httpx.AsyncClient
    ) -> None:
        source, target = await api.funded_pair(60_000_00)
        transfer_id = await api.start_transfer(source, target, DECLINED_MINOR)
        await api.wait_for_status(transfer_id, TERMINAL)

        timeline = await assert_story(
            http, bank, bank_temporal, transfer_id, DECLINED, compensated=True
        )

        score = next(event for event in timeline if event["action"] == "transfer.step.score")
        assert score["outcome"] == "decline"
        assert score["after"]["status"] == "declined"

    async def test_cancelled(
        self, api: Api, bank: Bank, bank_temporal: Client, http: httpx.AsyncClient
    ) -> None:
        source, target = await api.funded_pair(12_000_00)
        transfer_id = await api.start_transfer(source, target, REVIEWED_MINOR)
        await api.wait_for_status(transfer_id, frozenset({"in_review"}) | TERMINAL)
        accepted = await api.cancel(transfer_id, "wrong payee")
        assert accepted.status_code == 202, accepted.text
        await api.wait_for_status(transfer_id, TERMINAL)

        timeline = await assert_story(
            http, bank, bank_temporal, transfer_id, CANCELLED, compensated=True
        )

        # The customer's request, beside the saga's record of honouring it.
        [asked] = [e for e in timeline if e["action"] == "transfer.cancel_requested"]
        assert (asked["actor_type"], asked["outcome"]) == ("customer", "accepted")
        assert asked["after"]["reason"] == "wrong payee"
        score = next(e for e in timeline if e["action"] == "transfer.step.score")
        assert timeline.index(asked) > timeline.index(score)


@contextlib.asynccontextmanager
async def superuser(bank: Bank, service: str) -> AsyncIterator[asyncpg.Connection]:
    """The embedded server's superuser on the service's database, as an attacker with the
    database would connect: nothing of the service in between."""
    url = f"postgresql://postgres@127.0.0.1:{bank.ports['postgres']}/{SERVICE_DATABASES[service]}"
    connection = await asyncpg.connect(url, timeout=10)
    try:
        yield connection
    finally:
        await connection.close()


async def rewrite_outcome(bank: Bank, event_id: str, outcome: str) -> None:
    """UPDATE one stored event, switching the append-only trigger off around it."""
    async with superuser(bank, "transactions") as connection, connection.transaction():
        await connection.execute("ALTER TABLE audit_events DISABLE TRIGGER USER")
        updated = await connection.execute(
            "UPDATE audit_events SET outcome = $1 WHERE id = $2", outcome, uuid.UUID(event_id)
        )
        await connection.execute("ALTER TABLE audit_events ENABLE TRIGGER USER")
    assert updated == "UPDATE 1"


class TestTamperEvidence:
    async def test_append_only_without_the_bypass(self, bank: Bank) -> None:
        async with superuser(bank, "transactions") as connection:
            with pytest.raises(asyncpg.PostgresError, match="append-only"):
                await connection.execute("UPDATE audit_events SET outcome = 'x'")
            with pytest.raises(asyncpg.PostgresError, match="append-only"):
                await connection.execute("DELETE FROM audit_events")

    async def test_verify_names_exactly_the_rewritten_event(
        self, api: Api, bank: Bank, bank_temporal: Client, http: httpx.AsyncClient
    ) -> None:
        source, target = await api.funded_pair(1_000_00)
        transfer_id = await api.start_transfer(source, target, APPROVED_MINOR)
        await api.wait_for_status(transfer_id, TERMINAL)
        await finished_workflow(bank_temporal, transfer_id)
        events = await bank.audit_events(http, "transactions", transfer_id=transfer_id)
        hold = next(event for event in events if event["action"] == "transfer.step.hold")
        assert (await bank.verify_audit(http, "transactions"))["ok"] is True

        await rewrite_outcome(bank, hold["id"], "failed")
        try:
            verification = await bank.verify_audit(http, "transactions")
            from_cli = bank.sagabank("audit", "--verify")
        finally:
            # The session's bank is shared: put the event back as it was.
            await rewrite_outcome(bank, hold["id"], hold["outcome"])

        assert verification["ok"] is False
        assert verification["first_broken_event_id"] == hold["id"]
        assert verification["first_broken_sequence"] == hold["sequence"]
        assert verification["reason"] == "the event's content does not match its hash"
        assert verification["events_checked"] == hold["sequence"] - 1
        assert from_cli.returncode == 1, from_cli.stderr
        [broken] = [line for line in from_cli.stdout.splitlines() if "BROKEN" in line]
        assert broken.startswith("transactions")
        assert hold["id"] in broken
        for service in ("accounts", "fraud", "notifications"):
            assert f"{service} " in from_cli.stdout
        # Restored, the chain holds again, every service's.
        after = bank.sagabank("audit", "--verify")
        assert after.returncode == 0, after.stdout
        assert after.stdout.count(" ok ") == len(SERVICES)


async def audited_fraud_events(bank: Bank, http: httpx.AsyncClient, count: int) -> None:
    """`count` fresh events in fraud's chain: an unknown account listed and unlisted."""
    headers = await bank.operator_headers(http)
    account = f"{bank.url('fraud')}{DENY_LIST_PATH}/{uuid.uuid4()}"
    for index in range(count):
        if index % 2 == 0:
            body = {"reason": "audit truncation test", "listed_by": OPERATOR_CLIENT_ID}
            response = await http.put(account, json=body, headers=headers)
        else:
            response = await http.delete(account, headers=headers)
        assert response.status_code in (201, 204), response.text


async def delete_tail(bank: Bank, after_sequence: int) -> int:
    """As the database owner, delete fraud's events after `after_sequence`."""
    async with superuser(bank, "fraud") as connection, connection.transaction():
        await connection.execute("ALTER TABLE audit_events DISABLE TRIGGER USER")
        deleted = await connection.execute(
            "DELETE FROM audit_events WHERE sequence > $1", after_sequence
        )
        await connection.execute("ALTER TABLE audit_events ENABLE TRIGGER USER")
    return int(deleted.split()[-1])


_RESTORED_COLUMNS = (
    "sequence", "id", "occurred_at", "recorded_at", "actor_id", "actor_type", "action",
    "subject_type", "subject_id", "transfer_id", "account_ids", "workflow_id", "run_id",
    "request_id", "before", "after", "outcome", "compensates", "previous_hash", "hash",
    "hash_version",
)  # fmt: skip


async def restore(bank: Bank, events: list[Event]) -> None:
    """Put deleted events back exactly as the admin query showed them."""
    placeholders = ", ".join(f"${index}" for index in range(1, len(_RESTORED_COLUMNS) + 1))
    statement = (
        f"INSERT INTO audit_events ({', '.join(_RESTORED_COLUMNS)}) "  # noqa: S608
        f"VALUES ({placeholders})"
    )
    async with superuser(bank, "fraud") as connection, connection.transaction():
        for event in events:
            await connection.execute(statement, *_row_of(event))


def _row_of(event: Event) -> list[Any]:
    values: list[Any] = []
    for column in _RESTORED_COLUMNS:
        value = event[column]
        if column in ("occurred_at", "recorded_at"):
            value = datetime.fromisoformat(value)
        elif column in ("id", "transfer_id", "compensates") and value is not None:
            value = uuid.UUID(value)
        elif column in ("before", "after") and value is not None:
            value = json.dumps(value)
        values.append(value)
    return values


async def checkpointed(
    bank: Bank, http: httpx.AsyncClient, service: str, sequence: int, *, timeout_seconds: float = 15
) -> None:
    """Wait until the service's newest checkpoint has `sequence` (one every half second)."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        verification = await bank.verify_audit(http, service)
        if verification["checkpoint_sequence"] == sequence:
            assert verification["ok"] is True, verification
            return
        assert time.monotonic() < deadline, f"no checkpoint of {sequence}: {verification}"
        await asyncio.sleep(0.1)


class TestTruncation:
    async def test_verify_names_the_events_deleted_after_the_last_checkpoint(
        self, bank: Bank, http: httpx.AsyncClient
    ) -> None:
        await audited_fraud_events(bank, http, 3)
        events = await bank.audit_events(http, "fraud")
        head = events[-1]["sequence"]
        kept = head - 2
        await checkpointed(bank, http, "fraud", head)
        assert await delete_tail(bank, kept) == 2
        try:
            from_cli = bank.sagabank("audit", "--verify")
        finally:
            await restore(bank, events[-2:])

        assert from_cli.returncode == 1, from_cli.stdout
        [broken] = [line for line in from_cli.stdout.splitlines() if "BROKEN" in line]
        assert broken.startswith("fraud")
        assert f"events {kept + 1}..{head} are missing" in broken, broken
        after = bank.sagabank("audit", "--verify")
        assert after.returncode == 0, after.stdout


async def worker_headers(http: httpx.AsyncClient, bank: Bank) -> dict[str, str]:
    """The saga worker's own token: a service principal without audit:read."""
    secret = (bank.state_dir / SECRETS_DIR_NAME / "worker-client-secret").read_text().strip()
    response = await http.post(
        f"{bank.url('accounts')}{TOKEN_PATH}",
        data={"grant_type": "client_credentials"},
        auth=(WORKER_CLIENT_ID, secret),
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def token_audiences(headers: dict[str, str]) -> set[str]:
    """The `aud` of the bearer token in `headers`, read without verifying it."""
    audience = jwt.get_unverified_claims(headers["Authorization"].removeprefix("Bearer "))["aud"]
    return {audience} if isinstance(audience, str) else set(audience)


class TestReaders:
    @pytest.mark.parametrize("caller", ["customer", "worker"])
    async def test_without_audit_read_every_audit_endpoint_refuses(
        self, bank: Bank, http: httpx.AsyncClient, caller: str
    ) -> None:
        if caller == "customer":
            headers = (await bank.register_customer(http, "curious")).headers
        else:
            headers = await worker_headers(http, bank)
        audiences = token_audiences(headers)
        refused, expected = [], []
        for service in SERVICES:
            # A service the token is addressed to lacks the scope (403); one it is not
            # addressed to does not take the token at all (401).
            status = 403 if ServiceAudience(f"{AUDIENCE_PREFIX}{service}") in audiences else 401
            for path in (AUDIT_EVENTS_PATH, AUDIT_VERIFY_PATH, AUDIT_EXPORT_PATH):
                response = await http.get(f"{bank.url(service)}{path}", headers=headers)
                refused.append((service, path, response.status_code))
                expected.append((service, path, status))
                assert response.headers["content-type"].startswith("application/problem+json")
        assert refused == expected
        assert len(refused) == 12

    async def test_operator_reads_every_chain(self, bank: Bank, http: httpx.AsyncClient) -> None:
        for service in SERVICES:
            verification = await bank.verify_audit(http, service)
            assert verification["service"] == service
            assert verification["ok"] is True, verification
