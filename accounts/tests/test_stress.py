"""32 clients at once against a real server process: random holds, posts, voids and
single-phase transfers across 20 accounts, two of them hot. Whatever interleaving the
server and PostgreSQL choose, no money is created, lost or double-counted."""

import asyncio
import random
import socket
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from accounts.tests.helpers import accounts_server, server_token
from contracts.auth import CUSTOMER_SCOPES, OPERATOR_SCOPES, WORKER_SCOPES, PrincipalKind, Scope
from kit.token_signing import SigningKey

CLIENTS = 32
TRANSFERS_PER_CLIENT = 160  # 32 x 160 = 5,120 ledger transfers
ACCOUNTS = 20
HOT_ACCOUNTS = 2
DEPOSIT_MINOR = 200_000
AMOUNT_MINOR_MAX = 5_000
REQUEST_TIMEOUT_SECONDS = 30.0
# Business refusals a random mix may meet; anything else fails the test.
EXPECTED_REFUSALS = frozenset({"insufficient-funds", "pending-transfer-expired"})


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Tally:
    """What one client's successful answers say happened, to add up afterwards."""

    posted_minor: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    transfers: int = 0

    def record(self, transfer: dict[str, Any]) -> None:
        if transfer["kind"] in ("single_phase", "post_pending"):
            self.posted_minor[transfer["debit_account_id"]] -= transfer["amount_minor"]
            self.posted_minor[transfer["credit_account_id"]] += transfer["amount_minor"]


async def client_run(
    base_url: str, accounts: list[str], seed: int, headers: dict[str, str]
) -> Tally:
    randomness = random.Random(seed)
    hot, cold = accounts[:HOT_ACCOUNTS], accounts[HOT_ACCOUNTS:]
    tally = Tally()
    open_holds: list[str] = []
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(
        base_url=base_url, timeout=REQUEST_TIMEOUT_SECONDS, limits=limits, headers=headers
    ) as client:
        for _ in range(TRANSFERS_PER_CLIENT):
            roll = randomness.random()
            body: dict[str, Any] = {"id": str(uuid.uuid4())}
            if open_holds and roll < 0.3:
                pending_id = open_holds.pop(randomness.randrange(len(open_holds)))
                if roll < 0.2:
                    body |= {"kind": "post_pending", "pending_id": pending_id}
                    if randomness.random() < 0.3:
                        body["amount_minor"] = 1  # a partial post
                else:
                    body |= {"kind": "void_pending", "pending_id": pending_id}
            else:
                # Half of all transfers touch a hot account, on either side.
                pair = (
                    [randomness.choice(hot), randomness.choice(cold)]
                    if randomness.random() < 0.5
                    else randomness.sample(cold, 2)
                )
                randomness.shuffle(pair)
                body |= {
                    "kind": "pending" if roll < 0.65 else "single_phase",
                    "debit_account_id": pair[0],
                    "credit_account_id": pair[1],
                    "amount_minor": randomness.randint(1, AMOUNT_MINOR_MAX),
                    "currency": "EUR",
                }
                if body["kind"] == "pending" and randomness.random() < 0.1:
                    body["timeout_seconds"] = 1  # some expire mid-run
            response = await client.post("/v1/ledger/transfers", json=body)
            tally.transfers += 1
            if response.status_code == 201:
                transfer = response.json()
                tally.statuses["created"] += 1
                tally.record(transfer)
                if transfer["kind"] == "pending":
                    open_holds.append(transfer["id"])
                continue
            assert response.status_code == 409, response.text
            slug = response.json()["type"].removeprefix("urn:sagabank:problem:")
            assert slug in EXPECTED_REFUSALS, response.text
            tally.statuses[slug] += 1
    return tally


class TestManyClientsAtOnce:
    async def test_no_money_created_or_lost(self, database_url: str, tmp_path: Path) -> None:
        environment = {
            "ACCOUNTS_DATABASE_POOL_SIZE": "16",
            "ACCOUNTS_HOLD_SWEEP_INTERVAL_SECONDS": "0.2",
            "ACCOUNTS_LOG_LEVEL": "warning",
        }
        key = SigningKey.generate()
        operator = server_token(key, "operator-1", PrincipalKind.operator, OPERATOR_SCOPES)
        # Single-phase transfers need accounts:admin beside the worker's scopes.
        worker = server_token(
            key, "ledger-writer", PrincipalKind.service, WORKER_SCOPES | {Scope.accounts_admin}
        )
        with accounts_server(
            database_url,
            free_port(),
            log_path=tmp_path / "accounts.log",
            environment=environment,
            signing_key=key,
        ) as base_url:
            async with httpx.AsyncClient(
                base_url=base_url, timeout=10.0, headers=operator
            ) as setup:
                accounts = []
                for number in range(ACCOUNTS):
                    customer = server_token(
                        key, f"c{number}", PrincipalKind.customer, CUSTOMER_SCOPES
                    )
                    opened = await setup.post(
                        "/v1/accounts", json={"currency": "EUR"}, headers=customer
                    )
                    accounts.append(opened.json()["id"])
                    deposit = await setup.post(
                        f"/v1/accounts/{accounts[-1]}/deposits",
                        json={"amount_minor": DEPOSIT_MINOR, "currency": "EUR"},
                        headers={"Idempotency-Key": f"stress-{number}"},
                    )
                    assert deposit.status_code == 201, deposit.text
                system_account = deposit.json()["debit_account_id"]

                tallies = await asyncio.gather(
                    *(client_run(base_url, accounts, seed, worker) for seed in range(CLIENTS))
                )

                assert sum(tally.transfers for tally in tallies) >= 5_000
                statuses = sum((tally.statuses for tally in tallies), Counter[str]())
                assert statuses["created"] > 2_500, statuses
                report = (await setup.get("/v1/admin/ledger/invariants")).json()
                assert report["ok"], report
                balances = {
                    account_id: (await setup.get(f"/v1/accounts/{account_id}")).json()["balances"]
                    for account_id in [*accounts, system_account]
                }

        expected = Counter(dict.fromkeys(accounts, DEPOSIT_MINOR))
        for tally in tallies:
            expected.update(tally.posted_minor)
        for account_id in accounts:
            # No lost update: each account holds exactly what the answers said moved.
            assert balances[account_id]["posted_minor"] == expected[account_id], account_id
            # No overdraft, holds included.
            assert balances[account_id]["available_minor"] >= 0, balances[account_id]
        customer_total = sum(balances[account_id]["posted_minor"] for account_id in accounts)
        assert customer_total == ACCOUNTS * DEPOSIT_MINOR
        assert balances[system_account]["posted_minor"] == -ACCOUNTS * DEPOSIT_MINOR
