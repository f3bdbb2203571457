"""A flood of bogus logins against a real accounts process (`sagabank serve accounts`):
password hashing stays inside its memory budget and the ledger keeps answering."""

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


@pytest.fixture
async def accounts(
    database_factory: Callable[[Path], Awaitable[str]], tmp_path: Path
) -> AsyncIterator[Accounts]:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "flood.pem").write_bytes(SigningKey.generate().private_pem)
    (keys / "flood.pem").chmod(0o600)
    port = free_port()
    operator = {
        "client_id": OPERATOR_ID,
        "client_secret": OPERATOR_SECRET,
        "kind": "operator",
        "scopes": sorted(OPERATOR_SCOPES),
    }
    environment = {
        **os.environ,
        "ACCOUNTS_DATABASE_URL": await database_factory(migrations_path("accounts")),
        "ACCOUNTS_SIGNING_KEYS_DIR": str(keys),
        "ACCOUNTS_BOOTSTRAP_CLIENTS": json.dumps([operator]),
        "ACCOUNTS_HOLD_SWEEP_ENABLED": "false",
        "ACCOUNTS_LOG_JSON": "true",
        "ACCOUNTS_PASSWORD_HASHING_MEMORY_BUDGET_MIB": str(HASHING_MEMORY_BUDGET_MIB),
        # Throttles would refuse the flood before it hashes: this test is about the hashing.
        "ACCOUNTS_RATE_LIMIT_TOKEN": _RATE_UNLIMITED,
        "ACCOUNTS_LOGIN_FAILURE_RATE": _RATE_UNLIMITED,
    }
    process = _serve_accounts(port, environment)
    try:
        url = f"http://127.0.0.1:{port}"
        await _answering(url, process)
        yield Accounts(process, url)
    finally:
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


async def test_bogus_logins_stay_within_the_hashing_memory_budget(accounts: Accounts) -> None:
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
