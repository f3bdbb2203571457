"""A small vocabulary for the accounts tests: open accounts, move money, read balances."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx


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
    connection = await asyncpg.connect(
        database_url.replace("postgresql+asyncpg://", "postgresql://", 1), timeout=10
    )
    try:
        yield connection
    finally:
        await connection.close()


class Bank:
    """Drives the accounts API the way its callers do."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def open_account(
        self, *, currency: str = "EUR", customer_id: str = "customer-1", **limits: int
    ) -> dict[str, Any]:
        response = await self.client.post(
            "/v1/accounts", json={"customer_id": customer_id, "currency": currency, **limits}
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
            headers={"Idempotency-Key": key or uuid.uuid4().hex},
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
        return await self.client.post("/v1/ledger/transfers", json=body)

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
        response = await self.client.get(f"/v1/accounts/{account_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def balances(self, account_id: str) -> dict[str, int]:
        balances: dict[str, int] = (await self.account(account_id))["balances"]
        return balances

    async def invariants(self) -> dict[str, Any]:
        response = await self.client.get("/v1/admin/ledger/invariants")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def assert_ledger_sound(self) -> None:
        report = await self.invariants()
        assert report["ok"], report


async def set_status(database_url: str, account_id: str, status: str) -> None:
    """Freeze or close an account directly (its endpoints come with a later issue)."""
    async with raw_connection(database_url) as connection:
        await connection.execute(
            "UPDATE accounts SET status = $1 WHERE id = $2", status, uuid.UUID(account_id)
        )
