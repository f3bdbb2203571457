"""Logins against a real accounts process (`sagabank serve accounts`): a flood of bogus
ones stays inside the password hashing memory budget while the ledger keeps answering;
behind a trusted proxy, the login throttle counts the client the proxy names."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from contracts.auth import OPERATOR_SCOPES, TOKEN_PATH
from kit.token_signing import SigningKey
from sagabank.launcher import migrations_path
from sagabank.localstack.postgres import free_port

# Two argon2 slots of 64 MiB, and 32 MiB for everything else 64 requests need at once.
HASHING_MEMORY_BUDGET_MIB = 160
LOGINS = 64
OPERATOR_ID = "flood-test-operator"
OPERATOR_SECRET = "flood-test-operator-secret"
START_SECONDS_MAX = 30.0
STOP_SECONDS_MAX = 20.0
READ_SECONDS_MAX = 5.0
POLL_INTERVAL_SECONDS = 0.1
_RATE_UNLIMITED = "100000/minute"


@dataclass(frozen=True)
class Accounts:
    process: subprocess.Popen[bytes]
    url: str

    def memory_kib(self, field: str) -> int:
        """A memory figure of the process from /proc (VmRSS now, VmHWM its peak)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name == field:
                return int(value.split()[0])
        raise AssertionError(f"/proc/{self.process.pid}/status has no {field}")

    def reset_peak_memory(self) -> None:
        # "5" resets VmHWM to the current RSS (proc(5), Linux 4.0 and later).
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")


async def _answering(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_SECONDS_MAX
    async with httpx.AsyncClient(timeout=2.0) as http:
        while True:
            assert process.poll() is None, "accounts exited while starting"
            try:
                if (await http.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"accounts not ready in {START_SECONDS_MAX} s"
            await asyncio.sleep(POLL_INTERVAL_SECONDS)


def _serve_accounts(port: int, environment: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "sagabank", "serve", "accounts", "--port", str(port)]
    return subprocess.Popen(
        command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


StartAccounts = Callable[[dict[str, str]], Awaitable[Accounts]]


@pytest.fixture
async def start_accounts(
    database_factory: Callable[[Path], Awaitable[str]], tmp_path: Path
) -> AsyncIterator[StartAccounts]:
    """`await start_accounts(settings)`: a served accounts process with these extra
    ACCOUNTS_* variables, an operator client, and a database of its own; stopped after."""
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "flood.pem").write_bytes(SigningKey.generate().private_pem)
    (keys / "flood.pem").chmod(0o600)
    operator = {
        "client_id": OPERATOR_ID,
        "client_secret": OPERATOR_SECRET,
        "kind": "operator",
        "scopes": sorted(OPERATOR_SCOPES),
    }
    processes: list[subprocess.Popen[bytes]] = []

    async def start(settings: dict[str, str]) -> Accounts:
        environment = {
            **os.environ,
            "ACCOUNTS_DATABASE_URL": await database_factory(migrations_path("accounts")),
            "ACCOUNTS_SIGNING_KEYS_DIR": str(keys),
            "ACCOUNTS_BOOTSTRAP_CLIENTS": json.dumps([operator]),
            "ACCOUNTS_HOLD_SWEEP_ENABLED": "false",
            "ACCOUNTS_LOG_JSON": "true",
            **settings,
        }
        port = free_port()
        process = _serve_accounts(port, environment)
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        await _answering(url, process)
        return Accounts(process, url)

    try:
        yield start
    finally:
        for process in processes:
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_SECONDS_MAX)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def _bogus_login(http: httpx.AsyncClient, url: str) -> httpx.Response:
    form = {
        "grant_type": "password",
        "username": f"nobody-{uuid.uuid4().hex[:12]}@example.com",
        "password": "not the password at all",
    }
    return await http.post(f"{url}{TOKEN_PATH}", data=form)


async def _ledger_read(http: httpx.AsyncClient, url: str, token: str) -> float:
    """Seconds a list of accounts takes to answer 200."""
    started = time.monotonic()
    response = await http.get(
        f"{url}/v1/accounts", params={"limit": "1"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.text
    return time.monotonic() - started


async def test_bogus_logins_stay_within_the_hashing_memory_budget(
    start_accounts: StartAccounts,
) -> None:
    accounts = await start_accounts(
        {
            "ACCOUNTS_PASSWORD_HASHING_MEMORY_BUDGET_MIB": str(HASHING_MEMORY_BUDGET_MIB),
            # Throttles would refuse the flood before it hashes: this test is about hashing.
            "ACCOUNTS_RATE_LIMIT_TOKEN": _RATE_UNLIMITED,
            "ACCOUNTS_LOGIN_FAILURE_RATE": _RATE_UNLIMITED,
        }
    )
    limits = httpx.Limits(max_connections=LOGINS + 1)
    async with httpx.AsyncClient(timeout=60.0, limits=limits) as http:
        token_response = await http.post(
            f"{accounts.url}{TOKEN_PATH}",
            data={"grant_type": "client_credentials"},
            auth=(OPERATOR_ID, OPERATOR_SECRET),
        )
        assert token_response.status_code == 200, token_response.text
        operator_token = token_response.json()["access_token"]
        # Warm: the unknown-user dummy hash exists, every import and pool is up.
        assert (await _bogus_login(http, accounts.url)).status_code == 400
        await _ledger_read(http, accounts.url, operator_token)
        accounts.reset_peak_memory()
        resident_before_kib = accounts.memory_kib("VmRSS")

        logins = [asyncio.create_task(_bogus_login(http, accounts.url)) for _ in range(LOGINS)]
        read_seconds = await _ledger_read(http, accounts.url, operator_token)
        responses = await asyncio.gather(*logins)

    growth_mib = (accounts.memory_kib("VmHWM") - resident_before_kib) / 1024
    statuses = sorted({response.status_code for response in responses})
    assert growth_mib < HASHING_MEMORY_BUDGET_MIB, (
        f"peak memory grew by {growth_mib:.0f} MiB during {LOGINS} logins, over the budget "
        f"of {HASHING_MEMORY_BUDGET_MIB} MiB (answers: {statuses})"
    )
    assert read_seconds < READ_SECONDS_MAX
    # Beyond the slots, a login is refused at once: 503 with Retry-After, nothing queued.
    refused = [response for response in responses if response.status_code == 503]
    assert refused, f"every login was hashed (answers: {statuses})"
    assert statuses == [400, 503]
    for response in refused:
        assert response.headers["content-type"].startswith("application/problem+json")
        assert int(response.headers["retry-after"]) >= 1


async def test_behind_a_trusted_proxy_the_throttle_counts_the_forwarded_client(
    start_accounts: StartAccounts,
) -> None:
    # The test's requests come from 127.0.0.1: it plays the proxy.
    accounts = await start_accounts(
        {"ACCOUNTS_FORWARDED_ALLOW_IPS": "127.0.0.1", "ACCOUNTS_LOGIN_FAILURE_RATE": "3/minute"}
    )
    email, password = f"victim-{uuid.uuid4().hex[:8]}@example.com", "the victim's password"
    async with httpx.AsyncClient(base_url=accounts.url, timeout=30.0) as http:
        registered = await http.post("/v1/customers", json={"email": email, "password": password})
        assert registered.status_code == 201, registered.text

        async def login(address: str, secret: str) -> int:
            form = {"grant_type": "password", "username": email, "password": secret}
            headers = {"X-Forwarded-For": address}
            return (await http.post(TOKEN_PATH, data=form, headers=headers)).status_code

        attacker, victim = "203.0.113.7", "198.51.100.8"
        assert [await login(attacker, "a wrong guess") for _ in range(3)] == [400, 400, 400]
        assert await login(attacker, password) == 429
        assert await login(victim, password) == 200
