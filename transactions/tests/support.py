"""Helpers of the transactions tests: callers and their tokens, a stand-in for the
accounts service, request bodies, step reports, Temporal lookups."""

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, Literal

import httpx
from fastapi import FastAPI
from jose import jwt
from temporalio.client import Client, WorkflowHandle

from contracts.auth import PRINCIPAL_KIND_CLAIM, PrincipalKind
from contracts.transfers import UPDATE_CANCEL, CancelRequest, workflow_id
from kit.auth import Principal
from kit.testing import TestIssuer, app_client
from transactions.config import Settings
from transactions.main import create_app
from transactions.service import caller_key

# One issuer for the whole run: minting a key pair per test would cost more than the test.
ISSUER: Final = TestIssuer()
# The customer the tests act as unless they say otherwise, and another one.
ALICE: Final = "5d2c6a4e-1f0b-4c37-9a8e-3b7d1e2f4a61"
BOB: Final = "9e8f7a6b-5c4d-4e3f-8a2b-1c0d9e8f7a6b"
OPERATOR: Final = "operator-1"
WORKER: Final = "worker"
ACCOUNTS_URL: Final = "http://accounts.test"


def customer(customer_id: str = ALICE) -> dict[str, str]:
    return ISSUER.customer(customer_id)


def operator() -> dict[str, str]:
    return ISSUER.operator(OPERATOR)


def worker() -> dict[str, str]:
    return ISSUER.worker()


def customer_caller(customer_id: str = ALICE) -> str:
    """The idempotency-key space of a customer (as the service names it)."""
    return caller_key(
        Principal(subject=customer_id, kind=PrincipalKind.customer, scopes=frozenset())
    )


_ACCOUNT_PATH: Final = re.compile(r"/v1/accounts/([0-9a-f-]{36})")


class FakeAccounts:
    """Stands in for the accounts service's `GET /v1/accounts/{id}` (another service, so an
    httpx MockTransport; PostgreSQL and Temporal stay real).

    Answers as the real one does: 403 to a token without accounts:read; a customer gets
    404 for an account that is not theirs or does not exist; operators and services see
    every existing account. Accounts nobody
    registered belong to `default_owner`, so a test's random account ids are Alice's.
    """

    def __init__(self, *, default_owner: str = ALICE) -> None:
        self.default_owner = default_owner
        self.owners: dict[str, str] = {}
        self.missing: set[str] = set()
        self.failure: Literal["down", "error"] | None = None
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self._handle)

    def own(self, account_id: str, customer_id: str) -> str:
        self.owners[account_id] = customer_id
        return account_id

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.failure == "down":
            raise httpx.ConnectError("connection refused", request=request)
        if self.failure == "error":
            return httpx.Response(503, json={"title": "Service unavailable"})
        match = _ACCOUNT_PATH.fullmatch(request.url.path)
        assert request.method == "GET", request.method
        assert match is not None, request.url.path
        account_id = match.group(1)
        # The app verified the token already; the stand-in only reads who it names.
        claims = jwt.get_unverified_claims(request.headers["authorization"].split(" ", 1)[1])
        if "accounts:read" not in claims.get("scope", "").split():
            return httpx.Response(403, json={"title": "Insufficient scope", "status": 403})
        owner = self.owners.get(account_id, self.default_owner)
        is_customer = claims[PRINCIPAL_KIND_CLAIM] == PrincipalKind.customer.value
        if account_id in self.missing or (is_customer and claims["sub"] != owner):
            return httpx.Response(
                404,
                json={
                    "type": "urn:sagabank:problem:account-not-found",
                    "title": "Account not found",
                    "status": 404,
                },
            )
        return httpx.Response(
            200,
            json={
                "id": account_id,
                "customer_id": owner,
                "kind": "customer",
                "currency": "EUR",
                "status": "active",
            },
        )


def build_app(
    settings: Settings,
    *,
    temporal_client: Client | None = None,
    accounts: FakeAccounts | None = None,
) -> FastAPI:
    """The service as the tests run it: tokens from ISSUER, accounts from the stand-in."""
    return create_app(
        settings,
        temporal_client=temporal_client,
        token_verifier=ISSUER.verifier,
        accounts_transport=(accounts or FakeAccounts()).transport,
    )


@asynccontextmanager
async def client_of(
    app: FastAPI, headers: dict[str, str] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of `app` that sends `headers` (by default Alice's token) on every request."""
    async with app_client(app) as client:
        client.headers.update(customer() if headers is None else headers)
        yield client


def transfer_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source_account_id": str(uuid.uuid4()),
        "target_account_id": str(uuid.uuid4()),
        "amount_minor": 1250,
        "currency": "EUR",
        "description": "Rent, November",
        "metadata": {"invoice": "2026-11"},
    }
    body.update(overrides)
    return body


def key_header(key: str | None = None) -> dict[str, str]:
    return {"Idempotency-Key": key or f"key-{uuid.uuid4()}"}


async def create(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    """Create a transfer through the API and return its body."""
    response = await client.post(
        "/v1/transfers", json=transfer_body(**overrides), headers=key_header()
    )
    assert response.status_code == 202, response.text
    created: dict[str, Any] = response.json()
    return created


async def report(client: httpx.AsyncClient, transfer_id: str, **fields: Any) -> httpx.Response:
    """Report a saga step, as the workflow's `record_step` activity does (worker token)."""
    body: dict[str, Any] = {"occurred_at": "2026-11-28T10:00:00+00:00", **fields}
    return await client.post(
        f"/v1/internal/transfers/{transfer_id}/steps", json=body, headers=worker()
    )


async def report_batch(
    client: httpx.AsyncClient, transfer_id: str, records: list[dict[str, Any]]
) -> httpx.Response:
    """Report several saga steps at once, as the workflow's `record_steps` activity does."""
    body = {"records": [{"occurred_at": "2026-11-28T10:00:00+00:00", **r} for r in records]}
    return await client.post(
        f"/v1/internal/transfers/{transfer_id}/steps/batch", json=body, headers=worker()
    )


async def workflow_count(temporal: Client, query: str, *, expected: int) -> int:
    """The number of workflows matching a visibility query, waiting (bounded) until it is
    `expected`: visibility trails the start by a moment, so one look could be too early."""
    deadline = time.monotonic() + 10
    while True:
        count = (await temporal.count_workflows(query)).count
        if count == expected or time.monotonic() > deadline:
            return count
        await asyncio.sleep(0.1)


def workflow_handle(temporal: Client, transfer_id: str) -> WorkflowHandle[Any, Any]:
    return temporal.get_workflow_handle(workflow_id(uuid.UUID(transfer_id)))


async def signals(
    temporal: Client, transfer_id: str, payload_type: type[Any]
) -> list[tuple[str, Any]]:
    """The signals a transfer's workflow received, with their decoded payloads."""
    history = await workflow_handle(temporal, transfer_id).fetch_history()
    received: list[tuple[str, Any]] = []
    for event in history.events:
        if event.HasField("workflow_execution_signaled_event_attributes"):
            attributes = event.workflow_execution_signaled_event_attributes
            (payload,) = await temporal.data_converter.decode(
                list(attributes.input.payloads), [payload_type]
            )
            received.append((attributes.signal_name, payload))
    return received


TABLES: Final = (
    "transfers",
    "transfer_steps",
    "idempotency_keys",
    "callback_clients",
    "callback_receipts",
    "audit_events",
    "standing_orders",
    "standing_order_occurrences",
)


async def count_rows(app: FastAPI, table: str) -> int:
    """Rows of one table of the service's database (tests look below the API here)."""
    assert table in TABLES
    async with app.state.database.engine.connect() as connection:
        result = await connection.exec_driver_sql(f"SELECT count(*) FROM {table}")  # noqa: S608
        count: int = result.scalar_one()
        return count


async def eventually(
    condition: Callable[[], bool], what: str, *, timeout_seconds: float = 10
) -> None:
    """Wait (bounded) until `condition()` holds; fail naming `what` if it never does."""
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.01)


async def fingerprint(app: FastAPI) -> dict[str, str]:
    """Every row of every table, hashed per table: equal fingerprints, nothing changed."""
    prints: dict[str, str] = {}
    async with app.state.database.engine.connect() as connection:
        for table in TABLES:
            rows_text = "string_agg(t::text, ',' ORDER BY t::text)"
            result = await connection.exec_driver_sql(
                f"SELECT count(*) || ':' || coalesce(md5({rows_text}), '') FROM {table} AS t"  # noqa: S608
            )
            prints[table] = result.scalar_one()
    return prints


async def accepted_cancels(temporal: Client, transfer_id: str) -> list[CancelRequest]:
    """The cancel updates the transfer's workflow accepted, with their requests."""
    history = await workflow_handle(temporal, transfer_id).fetch_history()
    accepted: list[CancelRequest] = []
    for event in history.events:
        if event.HasField("workflow_execution_update_accepted_event_attributes"):
            request = event.workflow_execution_update_accepted_event_attributes.accepted_request
            assert request.input.name == UPDATE_CANCEL
            (payload,) = await temporal.data_converter.decode(
                list(request.input.args.payloads), [CancelRequest]
            )
            accepted.append(payload)
    return accepted


async def tell(temporal: Client, transfer_id: str, flag: str) -> None:
    """Set a flag of the stand-in saga and wait (bounded) until it has taken it in."""
    handle = workflow_handle(temporal, transfer_id)
    await handle.signal(flag)
    deadline = time.monotonic() + 10
    while not await handle.query(flag):
        assert time.monotonic() < deadline, "the workflow never saw the signal"
        await asyncio.sleep(0.05)
