"""The worker's identity: one client_credentials token for every service, and what a refused
credential does (a failing activity that keeps retrying; at start, a worker that stops)."""

import asyncio
import base64
import os
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from contracts.notifications import EventType
from contracts.transfers import StepRecord, TransferStatus
from workflows.activities import TransferActivities
from workflows.config import Settings
from workflows.models import EventPublication, StepReport
from workflows.tests.saga import FAKE_TIME, new_transfer
from workflows.tests.test_activities import run
from workflows.tests.worker_process import worker_process
from workflows.worker import CredentialsRefused, check_credentials, create_activities

TOKEN_URL = "http://accounts.test/v1/oauth/token"
CLIENT_SECRET = "worker-secret-for-tests"
TRANSFER = new_transfer()
WAIT_SECONDS_MAX = 30.0


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "accounts_url": "http://accounts.test",
        "transactions_url": "http://transactions.test",
        "fraud_url": "http://fraud.test",
        "notifications_url": "http://notifications.test",
        "auth_token_url": TOKEN_URL,
        "auth_client_secret": CLIENT_SECRET,
        "auth_check_timeout_seconds": 0,
    }
    values.update(overrides)
    return Settings(**values)


class Bank:
    """The issuer and the four services behind one MockTransport."""

    def __init__(self) -> None:
        self.token_requests: list[httpx.Request] = []
        self.service_requests: list[httpx.Request] = []
        self.tokens_issued = 0
        self.token_status = 200
        self.service_status = 200
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN_URL:
            self.token_requests.append(request)
            if self.token_status != 200:
                return httpx.Response(
                    self.token_status, json={"error": "invalid_client", "status": 401}
                )
            self.tokens_issued += 1
            return httpx.Response(
                200,
                json={
                    "access_token": f"token-{self.tokens_issued}",
                    "token_type": "Bearer",
                    "expires_in": 900,
                    "scope": "ledger:write",
                },
            )
        self.service_requests.append(request)
        if self.service_status != 200:
            slug = {401: "unauthorized", 403: "forbidden"}[self.service_status]
            return httpx.Response(
                self.service_status,
                json={
                    "type": f"urn:sagabank:problem:{slug}",
                    "title": slug.capitalize(),
                    "status": self.service_status,
                    "detail": "the bearer token was refused",
                },
            )
        if request.url.path == "/v1/ledger/validations":
            return httpx.Response(
                200, json={"transfer_id": str(TRANSFER.transfer_id), "valid": True}
            )
        return httpx.Response(201, json={})


@pytest.fixture
async def bank() -> AsyncIterator[tuple[Bank, TransferActivities]]:
    fake = Bank()
    activities = create_activities(settings(), transport=fake.transport)
    yield fake, activities
    await activities.aclose()


def record() -> StepReport:
    return StepReport(
        transfer_id=TRANSFER.transfer_id,
        record=StepRecord(
            step="validate",
            outcome="succeeded",
            status=TransferStatus.pending,
            version=1,
            occurred_at=FAKE_TIME,
        ),
    )


def publication() -> EventPublication:
    return EventPublication(
        transfer=TRANSFER,
        type=EventType.transfer_completed,
        status=TransferStatus.completed,
        occurred_at=FAKE_TIME,
    )


class TestSharedToken:
    async def test_one_token_serves_all_four_services(
        self, bank: tuple[Bank, TransferActivities]
    ) -> None:
        fake, activities = bank
        await run(activities.validate_transfer, TRANSFER)
        await run(activities.record_step, record())
        await run(activities.publish_event, publication())
        await asyncio.gather(*(run(activities.record_step, record()) for _ in range(5)))

        assert len(fake.token_requests) == 1
        hosts = {request.url.host for request in fake.service_requests}
        assert hosts == {"accounts.test", "transactions.test", "notifications.test"}
        assert {request.headers["authorization"] for request in fake.service_requests} == {
            "Bearer token-1"
        }

    async def test_token_request_is_client_credentials_with_basic_auth(
        self, bank: tuple[Bank, TransferActivities]
    ) -> None:
        fake, activities = bank
        await run(activities.record_step, record())
        [token_request] = fake.token_requests
        assert parse_qs(token_request.content.decode()) == {"grant_type": ["client_credentials"]}
        scheme, _, encoded = token_request.headers["authorization"].partition(" ")
        assert scheme == "Basic"
        assert base64.b64decode(encoded).decode() == f"sagabank-worker:{CLIENT_SECRET}"


class TestRefusedCredentials:
    async def test_401_refetches_once_then_fails_retryably(
        self, bank: tuple[Bank, TransferActivities]
    ) -> None:
        fake, activities = bank
        fake.service_status = 401
        with pytest.raises(ApplicationError) as raised:
            await run(activities.validate_transfer, TRANSFER)
        # A refreshed token might have fixed it (a rotated key): the auth tried once more.
        assert len(fake.token_requests) == 2
        assert len(fake.service_requests) == 2
        # Not the transfer's fault: retryable, so it heals once the configuration is fixed.
        assert (raised.value.type, raised.value.non_retryable) == ("unauthorized", False)
        assert "credentials were refused (401)" in raised.value.message

    async def test_403_fails_retryably(self, bank: tuple[Bank, TransferActivities]) -> None:
        fake, activities = bank
        fake.service_status = 403
        with pytest.raises(ApplicationError) as raised:
            await run(activities.place_hold, TRANSFER)
        assert (raised.value.type, raised.value.non_retryable) == ("forbidden", False)
        assert len(fake.token_requests) == 1

    async def test_issuer_refusing_the_client_fails_retryably(
        self, bank: tuple[Bank, TransferActivities]
    ) -> None:
        fake, activities = bank
        fake.token_status = 401
        with pytest.raises(ApplicationError) as raised:
            await run(activities.record_step, record())
        assert (raised.value.type, raised.value.non_retryable) == ("token-unavailable", False)
        assert CLIENT_SECRET not in raised.value.message
        assert fake.service_requests == []


class TestCheckCredentials:
    async def test_accepted(self) -> None:
        fake = Bank()
        await check_credentials(settings(), transport=fake.transport)
        assert len(fake.token_requests) == 1

    async def test_refused_is_an_error_naming_the_client_not_the_secret(self) -> None:
        fake = Bank()
        fake.token_status = 401
        with pytest.raises(CredentialsRefused) as raised:
            await check_credentials(settings(), transport=fake.transport)
        assert "'sagabank-worker'" in str(raised.value)
        assert "WORKER_AUTH_CLIENT_SECRET" in str(raised.value)
        assert CLIENT_SECRET not in str(raised.value)

    async def test_unreachable_issuer_is_waited_for_then_left_to_the_activities(self) -> None:
        attempts = 0

        def refuse(request: httpx.Request) -> httpx.Response:
            nonlocal attempts
            attempts += 1
            raise httpx.ConnectError("connection refused", request=request)

        transport = httpx.MockTransport(refuse)
        await check_credentials(settings(auth_check_timeout_seconds=1), transport=transport)
        assert 2 <= attempts <= 3


class _RefusingIssuer(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = b'{"error": "invalid_client", "status": 401}'
        self.send_response(401)
        self.send_header("content-type", "application/problem+json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def refusing_issuer() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RefusingIssuer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/oauth/token"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT_SECONDS_MAX)


async def test_worker_with_a_refused_secret_stops_and_says_why() -> None:
    with refusing_issuer() as token_url:
        environment = {
            **os.environ,
            "WORKER_ACCOUNTS_URL": "http://127.0.0.1:1",
            "WORKER_TRANSACTIONS_URL": "http://127.0.0.1:1",
            "WORKER_FRAUD_URL": "http://127.0.0.1:1",
            "WORKER_NOTIFICATIONS_URL": "http://127.0.0.1:1",
            "WORKER_AUTH_TOKEN_URL": token_url,
            "WORKER_AUTH_CLIENT_SECRET": f"wrong-{uuid.uuid4().hex}",
            # Nothing listens here: the worker must stop before it ever connects.
            "WORKER_TEMPORAL_ADDRESS": "127.0.0.1:1",
            "WORKER_LOG_JSON": "true",
            "WORKER_METRICS_ENABLED": "false",
        }
        async with worker_process(environment) as process:
            _, stderr = await asyncio.wait_for(process.communicate(), WAIT_SECONDS_MAX)
    assert process.returncode == 3
    assert b"worker.credentials_refused" in stderr
    assert environment["WORKER_AUTH_CLIENT_SECRET"].encode() not in stderr
