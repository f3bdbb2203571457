"""Ledger postings per second through the accounts API, beside the same SQL through asyncpg.

Starts its own embedded PostgreSQL and its own accounts service (`sagabank serve accounts`
in a subprocess, after migrating its database) on free ports in a temporary directory,
opens `--accounts` funded accounts, then runs in this one invocation, for each workload:

- baseline: the statements the service runs for a batch of ledger transfers (from
  `accounts.ledger.repository`: expired holds, lock in id order, replay lookup, multi-row inserts
  of transfers and entries, one update of the totals), sent through raw asyncpg with the
  least Python around them: no HTTP, no validation, no rules beyond the funds check;
- api: the same number of single-phase transfers through HTTP, one per request to
  `POST /v1/ledger/transfers` or `--batch` per request to `POST /v1/ledger/transfers/batch`,
  sent by a minimal keep-alive HTTP/1.1 client (httpx would be the bottleneck, see
  docs/baselines.md) with a bounded number of requests in flight, each with an operator's
  bearer token (verified by the service as in production; single-phase transfers need
  accounts:admin, the worker's ledger:write holds, posts and voids a saga's steps only).

The service signs with a key generated for the run; the benchmark registers a customer
(who opens the accounts), and gets an operator's and the worker's tokens from the
service's token endpoint through bootstrapped clients, as the saga's worker does.

It prints transfers per second (median of `--rounds`, the range in brackets) and the ratio
api / baseline, then checks the ledger's invariants through the API. Everything it starts
is stopped at the end, also on error or Ctrl-C.

    .venv/bin/python benchmarks/ledger.py            # the full run (about 2 minutes)
    .venv/bin/python benchmarks/ledger.py --quick    # a short one, while others work
"""

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from accounts.ledger import repository
from accounts.main import MIGRATIONS_PATH
from contracts.auth import OPERATOR_SCOPES, TOKEN_PATH, WORKER_SCOPES
from kit.migrations import upgrade_to_head
from kit.settings import to_asyncpg_dsn, with_database
from kit.token_signing import SigningKey
from sagabank.localstack.databases import ensure_database
from sagabank.localstack.postgres import EmbeddedPostgres, free_port, running_postgres

HOST = "127.0.0.1"
DATABASE = "benchmark_ledger"
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
REQUEST_TIMEOUT_SECONDS = 60.0
# Every account starts with this much, so no transfer of the run lacks funds.
FUNDING_MINOR = 10**12
AMOUNT_MINOR_MAX = 100
SETUP_CONCURRENCY = 8
BATCH_SIZE_MAX = 1000
OPERATOR_CLIENT = "benchmark-operator"
WORKER_CLIENT = "benchmark-worker"
CUSTOMER_EMAIL = "benchmark@example.com"


@dataclass(frozen=True)
class Credentials:
    """The clients the service is started with; their secrets exist for this run only."""

    operator_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    worker_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    customer_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    def bootstrap_clients(self) -> str:
        return json.dumps(
            [
                {
                    "client_id": OPERATOR_CLIENT,
                    "client_secret": self.operator_secret,
                    "kind": "operator",
                    "scopes": sorted(OPERATOR_SCOPES),
                },
                {
                    "client_id": WORKER_CLIENT,
                    "client_secret": self.worker_secret,
                    "kind": "service",
                    "scopes": sorted(WORKER_SCOPES),
                },
            ]
        )


@dataclass(frozen=True)
class Tokens:
    """`authorization` header lines, one per kind of caller."""

    customer: str
    operator: str
    worker: str


@dataclass(frozen=True)
class Workload:
    name: str
    batch_size: int
    transfers: int
    concurrency: int


@dataclass(frozen=True)
class Transfer:
    id: uuid.UUID
    debit_account_id: uuid.UUID
    credit_account_id: uuid.UUID
    amount_minor: int


# --- A minimal HTTP/1.1 client: keep-alive, Content-Length bodies, nothing else ----------


class HttpConnection:
    """One keep-alive connection sending one request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> "HttpConnection":
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError):
                await self.writer.wait_closed()

    async def request(
        self, method: str, path: str, body: bytes | None = None, *, extra_headers: str = ""
    ) -> tuple[int, bytes]:
        assert self.reader is not None, "open the connection first"
        assert self.writer is not None, "open the connection first"
        payload = body or b""
        head = (
            f"{method} {path} HTTP/1.1\r\nhost: {self.host}\r\n{extra_headers}"
            f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
        ).encode()
        self.writer.write(head + payload)
        headers = await asyncio.wait_for(
            self.reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_SECONDS
        )
        lines = headers.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        content = await asyncio.wait_for(self.reader.readexactly(length), REQUEST_TIMEOUT_SECONDS)
        return status, content


async def run_bounded(
    jobs: Sequence[Callable[[HttpConnection], Awaitable[None]]],
    *,
    port: int,
    concurrency: int,
) -> float:
    """Run the jobs over `concurrency` connections (at most that many in flight); the
    seconds it took."""
    queue: asyncio.Queue[Callable[[HttpConnection], Awaitable[None]]] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)

    async def worker() -> None:
        async with HttpConnection(HOST, port) as connection:
            while True:
                try:
                    job = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await job(connection)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


def expect(status: int, body: bytes, wanted: int) -> dict[str, Any]:
    if status != wanted:
        raise RuntimeError(f"HTTP {status}: {body[:500]!r}")
    decoded: dict[str, Any] = json.loads(body)
    return decoded


# --- The accounts service ---------------------------------------------------------------


@contextlib.contextmanager
def accounts_service(
    database_url: str, port: int, *, log_path: Path, credentials: Credentials
) -> Iterator[None]:
    """`sagabank serve accounts` on `port`, stopped on exit (also when the body raises)."""
    keys_dir = log_path.parent / "signing-keys"
    keys_dir.mkdir(mode=0o700, exist_ok=True)
    (keys_dir / "benchmark.pem").write_bytes(SigningKey.generate().private_pem)
    environment = {
        **os.environ,
        "ACCOUNTS_DATABASE_URL": database_url,
        "ACCOUNTS_DATABASE_POOL_SIZE": "16",
        # One access line per request is the service's default; at this rate it would
        # measure the logger, not the ledger.
        "ACCOUNTS_LOG_LEVEL": "warning",
        "ACCOUNTS_LOG_JSON": "true",
        "ACCOUNTS_HOLD_SWEEP_ENABLED": "false",
        "ACCOUNTS_SIGNING_KEYS_DIR": str(keys_dir),
        "ACCOUNTS_BOOTSTRAP_CLIENTS": credentials.bootstrap_clients(),
        "ACCOUNTS_AUDIT_CHAIN_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
    }
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "sagabank", "serve", "accounts", "--port", str(port)],
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_SECONDS)


async def wait_until_ready(port: int, *, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, ValueError):
            async with HttpConnection(HOST, port) as connection:
                status, _ = await connection.request("GET", "/readyz")
                if status == 200:
                    return
        if time.monotonic() > deadline:
            raise TimeoutError(f"accounts not ready in {READY_TIMEOUT_SECONDS}s; see {log_path}")
        await asyncio.sleep(0.1)


async def obtain_tokens(port: int, credentials: Credentials) -> Tokens:
    """A customer registered and signed in, and the two clients' tokens, from the service."""
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", timeout=30.0) as http:
        registered = await http.post(
            "/v1/customers",
            json={"email": CUSTOMER_EMAIL, "password": credentials.customer_password},
        )
        expect(registered.status_code, registered.content, 201)

        async def token(form: dict[str, str], client: tuple[str, str] | None = None) -> str:
            answer = await http.post(
                TOKEN_PATH,
                data=form,
                auth=httpx.BasicAuth(*client) if client else httpx.USE_CLIENT_DEFAULT,
            )
            access_token: str = expect(answer.status_code, answer.content, 200)["access_token"]
            return f"authorization: Bearer {access_token}\r\n"

        client_credentials = {"grant_type": "client_credentials"}
        return Tokens(
            customer=await token(
                {
                    "grant_type": "password",
                    "username": CUSTOMER_EMAIL,
                    "password": credentials.customer_password,
                }
            ),
            operator=await token(
                client_credentials, (OPERATOR_CLIENT, credentials.operator_secret)
            ),
            worker=await token(client_credentials, (WORKER_CLIENT, credentials.worker_secret)),
        )


async def open_accounts(port: int, count: int, tokens: Tokens) -> list[uuid.UUID]:
    """`count` accounts of one customer, each funded with FUNDING_MINOR."""
    account_ids: list[uuid.UUID] = []

    async def open_one(connection: HttpConnection) -> None:
        body = json.dumps({"currency": "EUR"}).encode()
        answer = await connection.request(
            "POST", "/v1/accounts", body, extra_headers=tokens.customer
        )
        account = expect(*answer, 201)
        account_ids.append(uuid.UUID(account["id"]))

    await run_bounded([open_one] * count, port=port, concurrency=SETUP_CONCURRENCY)
    # One deposit creates the EUR system account; batches from it fund everybody else.
    async with HttpConnection(HOST, port) as connection:
        deposit = json.dumps({"amount_minor": FUNDING_MINOR, "currency": "EUR"}).encode()
        answer = await connection.request(
            "POST",
            f"/v1/accounts/{account_ids[0]}/deposits",
            deposit,
            extra_headers=f"idempotency-key: benchmark-{uuid.uuid4()}\r\n{tokens.operator}",
        )
        transfer = expect(*answer, 201)
        system_account_id = transfer["debit_account_id"]
        for start in range(1, count, BATCH_SIZE_MAX):
            events = [
                {
                    "id": str(uuid.uuid4()),
                    "kind": "single_phase",
                    "debit_account_id": system_account_id,
                    "credit_account_id": str(account_id),
                    "amount_minor": FUNDING_MINOR,
                    "currency": "EUR",
                }
                for account_id in account_ids[start : start + BATCH_SIZE_MAX]
            ]
            body = json.dumps({"transfers": events}).encode()
            answer = await connection.request(
                "POST", "/v1/ledger/transfers/batch", body, extra_headers=tokens.operator
            )
            results = expect(*answer, 200)
            assert all(result["status"] == 201 for result in results["results"]), results
    return account_ids


def random_transfers(account_ids: Sequence[uuid.UUID], count: int) -> list[Transfer]:
    transfers = []
    for _ in range(count):
        debit, credit = random.sample(account_ids, 2)
        transfers.append(Transfer(uuid.uuid4(), debit, credit, random.randint(1, AMOUNT_MINOR_MAX)))
    return transfers


# --- The two ways of posting the same transfers -----------------------------------------


def event_of(transfer: Transfer) -> dict[str, Any]:
    return {
        "id": str(transfer.id),
        "kind": "single_phase",
        "debit_account_id": str(transfer.debit_account_id),
        "credit_account_id": str(transfer.credit_account_id),
        "amount_minor": transfer.amount_minor,
        "currency": "EUR",
    }


def chunks(transfers: Sequence[Transfer], size: int) -> list[Sequence[Transfer]]:
    return [transfers[start : start + size] for start in range(0, len(transfers), size)]


async def post_through_api(
    port: int, workload: Workload, transfers: Sequence[Transfer], *, authorization: str
) -> float:
    """Post the transfers over HTTP; transfers per second."""
    jobs: list[Callable[[HttpConnection], Awaitable[None]]] = []
    for group in chunks(transfers, workload.batch_size):
        # Encoded before the clock starts: the load generator's JSON is not the service's.
        if workload.batch_size == 1:
            body = json.dumps(event_of(group[0])).encode()
            path, wanted, created = "/v1/ledger/transfers", 201, 1
        else:
            body = json.dumps({"transfers": [event_of(transfer) for transfer in group]}).encode()
            path, wanted, created = "/v1/ledger/transfers/batch", 200, len(group)

        async def job(
            connection: HttpConnection,
            body: bytes = body,
            path: str = path,
            wanted: int = wanted,
            created: int = created,
        ) -> None:
            status, content = await connection.request(
                "POST", path, body, extra_headers=authorization
            )
            if status != wanted:
                raise RuntimeError(f"HTTP {status}: {content[:300]!r}")
            # Counted without decoding 1,000 results: the client must not be the bottleneck.
            if created > 1 and content.count(b'"status":201') != created:
                raise RuntimeError(f"a batch did not create every transfer: {content[:300]!r}")

        jobs.append(job)
    seconds = await run_bounded(jobs, port=port, concurrency=workload.concurrency)
    return len(transfers) / seconds


async def post_baseline_batch(connection: Any, transfers: Sequence[Transfer]) -> None:
    """The service's statements for one batch, with the least Python between them."""
    now = datetime.now(UTC)
    account_ids = {transfer.debit_account_id for transfer in transfers}
    account_ids |= {transfer.credit_account_id for transfer in transfers}
    async with connection.transaction():
        await connection.fetch(
            repository.EXPIRED_HOLDS_OF_ACCOUNTS, list(account_ids), now, BATCH_SIZE_MAX
        )
        rows = await connection.fetch(repository.LOCK_ACCOUNTS, list(account_ids))
        ids = [transfer.id for transfer in transfers]
        await connection.fetch(repository.GET_TRANSFERS_AND_TOMBSTONES, ids)
        posted = {row["id"]: row["credits_posted"] - row["debits_posted"] for row in rows}
        available = {
            row["id"]: row["credits_posted"] - row["debits_posted"] - row["debits_pending"]
            for row in rows
        }
        debits: dict[uuid.UUID, int] = dict.fromkeys(posted, 0)
        credits: dict[uuid.UUID, int] = dict.fromkeys(posted, 0)
        entry_rows: list[tuple[uuid.UUID, uuid.UUID, str, int, int, int]] = []
        pending = {row["id"]: row["credits_pending"] - row["debits_pending"] for row in rows}
        for transfer in transfers:
            assert available[transfer.debit_account_id] >= transfer.amount_minor, "funded"
            available[transfer.debit_account_id] -= transfer.amount_minor
            available[transfer.credit_account_id] += transfer.amount_minor
            for account_id, total, sign in (
                (transfer.debit_account_id, "debits_posted", -1),
                (transfer.credit_account_id, "credits_posted", 1),
            ):
                posted[account_id] += sign * transfer.amount_minor
                (debits if sign < 0 else credits)[account_id] += transfer.amount_minor
                entry_rows.append(
                    (
                        transfer.id,
                        account_id,
                        total,
                        transfer.amount_minor,
                        posted[account_id],
                        pending[account_id],
                    )
                )
        inserted = await connection.fetchval(
            repository.INSERT_TRANSFERS,
            [transfer.id for transfer in transfers],
            ["single_phase"] * len(transfers),
            [transfer.debit_account_id for transfer in transfers],
            [transfer.credit_account_id for transfer in transfers],
            [transfer.amount_minor for transfer in transfers],
            ["EUR"] * len(transfers),
            [None] * len(transfers),
            [None] * len(transfers),
            [None] * len(transfers),
            [None] * len(transfers),
            now,
        )
        assert inserted == len(transfers), "fresh ids"
        await connection.execute(
            repository.INSERT_ENTRIES,
            *(list(column) for column in zip(*entry_rows, strict=True)),
            now,
        )
        changed = [account_id for account_id in posted if debits[account_id] or credits[account_id]]
        await connection.execute(
            repository.ADD_TO_TOTALS,
            changed,
            [0] * len(changed),
            [debits[account_id] for account_id in changed],
            [0] * len(changed),
            [credits[account_id] for account_id in changed],
        )


async def post_through_asyncpg(
    database_url: str, workload: Workload, transfers: Sequence[Transfer]
) -> float:
    """Post the transfers with the baseline; transfers per second."""
    pool = await asyncpg.create_pool(
        database_url, min_size=workload.concurrency, max_size=workload.concurrency
    )
    try:
        groups: asyncio.Queue[Sequence[Transfer]] = asyncio.Queue()
        for group in chunks(transfers, workload.batch_size):
            groups.put_nowait(group)

        async def worker() -> None:
            async with pool.acquire() as connection:
                while True:
                    try:
                        group = groups.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    await post_baseline_batch(connection, group)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workload.concurrency)))
        return len(transfers) / (time.perf_counter() - started)
    finally:
        await pool.close()


# --- The run ----------------------------------------------------------------------------


def workloads(*, quick: bool) -> list[Workload]:
    if quick:
        return [
            Workload("single transfers", 1, 1_000, 16),
            Workload("batches of 100", 100, 5_000, 4),
            Workload("batches of 1,000", 1_000, 10_000, 2),
        ]
    return [
        Workload("single transfers", 1, 5_000, 16),
        Workload("batches of 100", 100, 30_000, 4),
        Workload("batches of 1,000", 1_000, 60_000, 2),
    ]


def figure(rates: Sequence[float]) -> str:
    middle = statistics.median(rates)
    if len(rates) == 1:
        return f"{middle:,.0f}"
    return f"{middle:,.0f} ({min(rates):,.0f}-{max(rates):,.0f})"


async def benchmark(
    args: argparse.Namespace,
    database_url: str,
    port: int,
    log_path: Path,
    credentials: Credentials,
) -> int:
    await wait_until_ready(port, log_path=log_path)
    tokens = await obtain_tokens(port, credentials)
    print(f"opening and funding {args.accounts:,} accounts...", flush=True)
    account_ids = await open_accounts(port, args.accounts, tokens)
    plan = workloads(quick=args.quick)
    baseline: dict[str, list[float]] = {workload.name: [] for workload in plan}
    api: dict[str, list[float]] = {workload.name: [] for workload in plan}
    for round_number in range(1, args.rounds + 1):
        for workload in plan:
            # Alternate which goes first, so neither always meets the larger tables.
            order = ("baseline", "api") if round_number % 2 else ("api", "baseline")
            for side in order:
                transfers = random_transfers(account_ids, workload.transfers)
                if side == "baseline":
                    rate = await post_through_asyncpg(database_url, workload, transfers)
                    baseline[workload.name].append(rate)
                else:
                    rate = await post_through_api(
                        port, workload, transfers, authorization=tokens.operator
                    )
                    api[workload.name].append(rate)
                print(
                    f"round {round_number}: {workload.name:<17} {side:<8} {rate:>10,.0f}/s",
                    flush=True,
                )

    print()
    print(
        f"Ledger postings, transfers/s: median of {args.rounds} rounds (range), "
        f"{args.accounts:,} accounts, single-phase transfers between random accounts"
    )
    print(
        f"{'workload':<18} {'in flight':>9}  {'baseline asyncpg':>24}  {'API over HTTP':>24}  ratio"
    )
    for workload in plan:
        ratio = statistics.median(api[workload.name]) / statistics.median(baseline[workload.name])
        print(
            f"{workload.name:<18} {workload.concurrency:>9}  {figure(baseline[workload.name]):>24}"
            f"  {figure(api[workload.name]):>24}  {ratio:.2f}"
        )

    # Timed: the periodic check (ACCOUNTS_INVARIANT_CHECK_INTERVAL_SECONDS) runs this query.
    journal_entries = await count_journal_entries(database_url)
    async with HttpConnection(HOST, port) as connection:
        check_started = time.perf_counter()
        answer = await connection.request(
            "GET", "/v1/admin/ledger/invariants", extra_headers=tokens.operator
        )
        check_seconds = time.perf_counter() - check_started
        report = expect(*answer, 200)
    print(
        f"\nledger invariants after the run: {'ok' if report['ok'] else 'BROKEN'}"
        f" ({journal_entries:,} journal entries, checked in {check_seconds * 1000:,.0f} ms)"
    )
    return 0 if report["ok"] else 1


async def count_journal_entries(database_url: str) -> int:
    connection = await asyncpg.connect(to_asyncpg_dsn(database_url), timeout=10)
    try:
        count: int = await connection.fetchval("SELECT count(*) FROM ledger_entries")
    finally:
        await connection.close()
    return count


async def prepare_database(admin_url: str) -> str:
    await ensure_database(admin_url, DATABASE)
    database_url = with_database(admin_url, DATABASE)
    await asyncio.to_thread(upgrade_to_head, MIGRATIONS_PATH, database_url)
    return database_url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--accounts", type=int, default=1_000, help="funded accounts")
    parser.add_argument("--rounds", type=int, default=3, help="baseline + api pairs per workload")
    parser.add_argument("--quick", action="store_true", help="fewer transfers, one round")
    parser.add_argument(
        "--no-fsync",
        action="store_true",
        help="run PostgreSQL without fsync (as the test suite does); default: durable",
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds = min(args.rounds, 1)
    assert args.accounts >= 2, "transfers need two accounts"
    assert args.rounds >= 1, "at least one round"

    with tempfile.TemporaryDirectory(prefix="sagabank-benchmark-ledger-") as directory:
        server = EmbeddedPostgres(
            data_dir=Path(directory) / "postgres", port=free_port(), durable=not args.no_fsync
        )
        log_path = Path(directory) / "accounts.log"
        with running_postgres(server, log_path=Path(directory) / "postgres.log") as postgres:
            database_url = asyncio.run(prepare_database(postgres.admin_url))
            port = free_port()
            credentials = Credentials()
            with accounts_service(database_url, port, log_path=log_path, credentials=credentials):
                try:
                    code = asyncio.run(benchmark(args, database_url, port, log_path, credentials))
                except Exception:
                    print(f"--- accounts log (tail) ---\n{log_path.read_text()[-3000:]}")
                    raise
    sys.exit(code)


if __name__ == "__main__":
    main()
