"""A small vocabulary for the accounts tests: open accounts, move money, read balances."""

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import asyncpg
import httpx
from argon2 import PasswordHasher
from fastapi import FastAPI

from accounts.config import Settings
from accounts.main import create_app
from contracts.auth import TOKEN_ISSUER_DEFAULT, PrincipalKind, Scope, audiences_of
from kit.auth import TokenVerifier
from kit.resources import Clock as ServiceClock
from kit.resources import utc_now
from kit.settings import to_asyncpg_dsn
from kit.testing import TestIssuer
from kit.token_signing import SigningKey, mint_token

# argon2id at its floor (one pass over 1 MiB, one lane): about a millisecond a hash where
# the production cost (t=3, 64 MiB, p=4) takes 0.1-0.35 s, and most accounts tests register
# or sign someone in. Tests about the cost itself build their app with `create_app`.
MINIMAL_COST_PASSWORD_HASHER: Final = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def accounts_app(
    settings: Settings,
    *,
    clock: ServiceClock = utc_now,
    token_verifier: TokenVerifier | None = None,
) -> FastAPI:
    """The accounts app hashing with MINIMAL_COST_PASSWORD_HASHER: for tests not about
    password hashing."""
    return create_app(
        settings,
        clock=clock,
        token_verifier=token_verifier,
        password_hasher=MINIMAL_COST_PASSWORD_HASHER,
    )


def minimal_cost_app() -> FastAPI:
    """uvicorn's factory for `accounts_server`: the service built from its environment, as
    `accounts.main:create_app` builds it, but hashing with MINIMAL_COST_PASSWORD_HASHER."""
    return create_app(password_hasher=MINIMAL_COST_PASSWORD_HASHER)


class Clock:
    """The service's clock, standing still until a test moves it."""

    def __init__(self, now: datetime) -> None:
        assert now.tzinfo is not None, "a naive clock would make expiry ambiguous"
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@asynccontextmanager
async def raw_connection(database_url: str) -> AsyncIterator[Any]:
    """A plain asyncpg connection of its own, outside the service's pool."""
    connection = await asyncpg.connect(to_asyncpg_dsn(database_url), timeout=10)
    try:
        yield connection
    finally:
        await connection.close()


def write_signing_key(directory: Path, name: str, key: SigningKey) -> Path:
    """Put `key` in a signing keys directory as `<name>.pem` (readable by its owner only)."""
    path = directory / f"{name}.pem"
    path.write_bytes(key.private_pem)
    path.chmod(0o600)
    return path


class Bank:
    """Drives the accounts API the way its callers do: customers open their accounts,
    an operator moves money in and out, reads, and writes ledger transfers of any kind (the
    saga's worker may write only its own steps: test_least_privilege)."""

    def __init__(self, client: httpx.AsyncClient, issuer: TestIssuer) -> None:
        self.client = client
        self.issuer = issuer
        self.operator = issuer.operator()
        self.worker = issuer.worker()

    async def open_account(
        self, *, currency: str = "EUR", customer_id: str = "customer-1", **options: Any
    ) -> dict[str, Any]:
        response = await self.client.post(
            "/v1/accounts",
            json={"currency": currency, **options},
            headers=self.issuer.customer(customer_id),
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def deposit(
        self,
        account_id: str,
        amount_minor: int,
        *,
        currency: str = "EUR",
        key: str | None = None,
        reference: str | None = None,
    ) -> httpx.Response:
        return await self._external(
            "deposits", account_id, amount_minor, currency=currency, key=key, reference=reference
        )

    async def withdraw(
        self,
        account_id: str,
        amount_minor: int,
        *,
        currency: str = "EUR",
        key: str | None = None,
        reference: str | None = None,
    ) -> httpx.Response:
        return await self._external(
            "withdrawals", account_id, amount_minor, currency=currency, key=key, reference=reference
        )

    async def _external(
        self,
        direction: str,
        account_id: str,
        amount_minor: int,
        *,
        currency: str,
        key: str | None,
        reference: str | None,
    ) -> httpx.Response:
        body: dict[str, Any] = {"amount_minor": amount_minor, "currency": currency}
        if reference is not None:
            body["reference"] = reference
        return await self.client.post(
            f"/v1/accounts/{account_id}/{direction}",
            json=body,
            headers={"Idempotency-Key": key or uuid.uuid4().hex, **self.operator},
        )

    async def funded_account(self, amount_minor: int, **options: Any) -> dict[str, Any]:
        account = await self.open_account(**options)
        response = await self.deposit(
            account["id"], amount_minor, currency=options.get("currency", "EUR")
        )
        assert response.status_code == 201, response.text
        return account

    async def transfer(self, kind: str, **fields: Any) -> httpx.Response:
        body = {"id": str(uuid.uuid4()), "kind": kind}
        body.update({name: value for name, value in fields.items() if value is not None})
        return await self.client.post("/v1/ledger/transfers", json=body, headers=self.operator)

    async def single_phase(
        self, debit: str, credit: str, amount_minor: int, *, currency: str = "EUR", **fields: Any
    ) -> httpx.Response:
        return await self.transfer(
            "single_phase",
            debit_account_id=debit,
            credit_account_id=credit,
            amount_minor=amount_minor,
            currency=currency,
            **fields,
        )

    async def hold(
        self, debit: str, credit: str, amount_minor: int, *, currency: str = "EUR", **fields: Any
    ) -> httpx.Response:
        return await self.transfer(
            "pending",
            debit_account_id=debit,
            credit_account_id=credit,
            amount_minor=amount_minor,
            currency=currency,
            **fields,
        )

    async def validate(self, body: dict[str, Any]) -> httpx.Response:
        return await self.client.post("/v1/ledger/validations", json=body, headers=self.worker)

    async def placed_hold(self, debit: str, credit: str, amount_minor: int, **fields: Any) -> str:
        response = await self.hold(debit, credit, amount_minor, **fields)
        assert response.status_code == 201, response.text
        hold_id: str = response.json()["id"]
        return hold_id

    async def post(self, pending_id: str, **fields: Any) -> httpx.Response:
        return await self.transfer("post_pending", pending_id=pending_id, **fields)

    async def void(self, pending_id: str, **fields: Any) -> httpx.Response:
        return await self.transfer("void_pending", pending_id=pending_id, **fields)

    async def account(self, account_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/accounts/{account_id}", headers=self.operator)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def balances(self, account_id: str) -> dict[str, int]:
        balances: dict[str, int] = (await self.account(account_id))["balances"]
        return balances

    async def batch(self, *events: dict[str, Any]) -> list[dict[str, Any]]:
        """Post a batch; its results, one per event (each event gets an id if it has none)."""
        body = [{"id": str(uuid.uuid4()), **event} for event in events]
        response = await self.client.post(
            "/v1/ledger/transfers/batch", json={"transfers": body}, headers=self.operator
        )
        assert response.status_code == 200, response.text
        results: list[dict[str, Any]] = response.json()["results"]
        assert [result["index"] for result in results] == list(range(len(events)))
        return results

    async def status_action(self, account_id: str, action: str) -> httpx.Response:
        return await self.client.post(f"/v1/accounts/{account_id}/{action}", headers=self.operator)

    async def limits(self, account_id: str, **limits: int | None) -> httpx.Response:
        return await self.client.patch(
            f"/v1/accounts/{account_id}/limits", json=limits, headers=self.operator
        )

    async def entries(self, account_id: str, **params: str | int) -> httpx.Response:
        return await self.client.get(
            f"/v1/accounts/{account_id}/entries", params=params, headers=self.operator
        )

    async def statement(self, account_id: str) -> list[dict[str, Any]]:
        """Every entry of the account, page by page (bounded)."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(100):
            params: dict[str, str | int] = {"limit": 500}
            if cursor is not None:
                params["cursor"] = cursor
            response = await self.entries(account_id, **params)
            assert response.status_code == 200, response.text
            page = response.json()
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return items
        raise AssertionError("more than 100 pages")

    async def invariants(self) -> dict[str, Any]:
        response = await self.client.get("/v1/admin/ledger/invariants", headers=self.operator)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def assert_ledger_sound(self) -> None:
        report = await self.invariants()
        assert report["ok"], report


async def set_status(database_url: str, account_id: str, status: str) -> None:
    """Set an account's status behind the service's back, rules aside (e.g. reopen a closed
    account), to set up a state a test needs."""
    async with raw_connection(database_url) as connection:
        await connection.execute(
            "UPDATE accounts SET status = $1 WHERE id = $2", status, uuid.UUID(account_id)
        )


def single_phase_event(debit: str, credit: str, amount_minor: int, **fields: Any) -> dict[str, Any]:
    return {
        "kind": "single_phase",
        "debit_account_id": debit,
        "credit_account_id": credit,
        "amount_minor": amount_minor,
        "currency": "EUR",
        **fields,
    }


def hold_event(debit: str, credit: str, amount_minor: int, **fields: Any) -> dict[str, Any]:
    return {**single_phase_event(debit, credit, amount_minor), "kind": "pending", **fields}


_SERVER_READY_SECONDS = 30.0
_SERVER_STOP_SECONDS = 15.0


@contextmanager
def accounts_server(
    database_url: str,
    port: int,
    *,
    log_path: Path,
    environment: dict[str, str] | None = None,
    signing_key: SigningKey | None = None,
) -> Iterator[str]:
    """The accounts service under uvicorn in a process of its own (`minimal_cost_app`); its
    base URL. Stopped (SIGINT, then SIGKILL if it lingers) when the block ends, also on
    failure.

    It signs with `signing_key` (a fresh one if None), written next to `log_path`; mint
    tokens it accepts with `server_token(signing_key, ...)`.
    """
    keys_dir = log_path.parent / f"accounts-keys-{port}"
    keys_dir.mkdir(mode=0o700, exist_ok=True)
    write_signing_key(keys_dir, "server", signing_key or SigningKey.generate())
    variables = {
        **os.environ,
        "ACCOUNTS_DATABASE_URL": database_url,
        "ACCOUNTS_LOG_JSON": "true",
        "ACCOUNTS_SIGNING_KEYS_DIR": str(keys_dir),
        **(environment or {}),
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "accounts.tests.helpers:minimal_cost_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            command, env=variables, stdout=log_file, stderr=subprocess.STDOUT
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + _SERVER_READY_SECONDS
        while True:
            assert process.poll() is None, f"accounts exited early:\n{log_path.read_text()}"
            try:
                if httpx.get(f"{base_url}/readyz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"accounts not ready:\n{log_path.read_text()}"
            time.sleep(0.05)
        yield base_url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=_SERVER_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=_SERVER_STOP_SECONDS)


def server_token(
    signing_key: SigningKey, subject: str, kind: PrincipalKind, scopes: Iterable[str]
) -> dict[str, str]:
    """Headers with a token that an `accounts_server` signing with `signing_key` accepts
    (the same claims its token endpoint would write)."""
    token = mint_token(
        signing_key,
        subject=subject,
        kind=kind,
        scopes={str(scope) for scope in scopes},
        issuer=TOKEN_ISSUER_DEFAULT,
        audience=audiences_of(Scope(scope) for scope in scopes),
        lifetime_seconds=900,
    )
    return {"Authorization": f"Bearer {token}"}


_WAIT_SECONDS_MAX = 10.0

_LOCK_WAITERS = """
    SELECT count(*) FROM pg_stat_activity
    WHERE datname = current_database()
      AND application_name = 'accounts'
      AND wait_event_type = 'Lock'
"""


async def wait_for_lock_waiters(database_url: str, count: int) -> int:
    """Block until at least `count` of the service's sessions wait on a lock (bounded)."""
    async with raw_connection(database_url) as connection:
        deadline = asyncio.get_running_loop().time() + _WAIT_SECONDS_MAX
        while True:
            waiting: int = await connection.fetchval(_LOCK_WAITERS)
            if waiting >= count:
                return waiting
            assert asyncio.get_running_loop().time() < deadline, (
                f"only {waiting} of {count} sessions reached the lock"
            )
            await asyncio.sleep(0.01)


class HeldTransaction:
    """A transaction kept open from outside the service, ended once by the test."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.open = True

    async def end(self, *, commit: bool) -> None:
        if self.open:
            self.open = False
            await self.connection.execute("COMMIT" if commit else "ROLLBACK")


@asynccontextmanager
async def held(
    database_url: str, statement: str, *arguments: Any
) -> AsyncIterator[HeldTransaction]:
    """Run `statement` in a transaction of its own and keep it open (and its locks held)."""
    async with raw_connection(database_url) as connection:
        await connection.execute("BEGIN")
        transaction = HeldTransaction(connection)
        try:
            await connection.execute(statement, *arguments)
            yield transaction
        finally:
            await transaction.end(commit=False)


async def released_together(
    database_url: str,
    lock_statement: str,
    lock_arguments: tuple[Any, ...],
    requests: Sequence[Awaitable[httpx.Response]],
    waiters: int,
) -> list[httpx.Response]:
    """Start `requests` while a lock is held, wait until `waiters` of them queue on it,
    release it, and return every answer."""
    async with held(database_url, lock_statement, *lock_arguments) as transaction:
        answers = asyncio.gather(*requests)
        try:
            await wait_for_lock_waiters(database_url, waiters)
        finally:
            await transaction.end(commit=False)
        return list(await answers)
