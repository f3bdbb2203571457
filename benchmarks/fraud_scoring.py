"""Fraud scoring at a fixed rate over a realistic feature table, beside GET /healthz.

Starts, in a temporary directory, an embedded PostgreSQL of its own and migrates a fraud
database; loads a month of history for `--accounts` accounts (their outcomes and scores,
per-account features with a typical amount, a deny-list); starts one fraud service the
way `sagabank serve fraud` does (uvicorn, one worker), verifying tokens against a JWKS
this script serves, as the accounts service would. Then, on that one server and in this
one invocation, it drives four phases at the same fixed rate:

- baseline: `GET /healthz` (the service shell: routing, middleware, access log);
- authenticated baseline: `GET /v1/rulesets/current` with an operator's token (the shell
  plus verifying an RS256 token, and a small JSON answer);
- scoring: `POST /v1/scores` with the worker's token for new transfers from those
  accounts, each one reading the source's windows, history, counterparty and deny-list
  and writing its score;
- audited write: `PUT /v1/admin/deny-list/{id}` with the operator's token for new
  accounts, each one writing its entry and its audit event in one transaction. Operators
  do this a few times a day; it runs here at scoring's rate to show what an audit event
  costs a write path: every append in a service takes the audit chain's lock, so
  audited writes queue behind one another. (This is why scores are not audited by the
  fraud service: see `fraud.service.score_transfer`.)

At the end, with the service stopped, it checks that every listing left exactly one
audit event and verifies the audit chain.

The load generator is open-loop: request i is due at start + i / rate whatever happened
to the ones before, and its latency runs from that due time to the last byte of the
answer, so a stall shows in the figures instead of silently slowing the load down
(coordinated omission). It speaks HTTP/1.1 over a pool of kept-alive connections with
asyncio streams, which costs a fraction of an httpx client per request and does not
collapse with concurrency (docs/baselines.md). It prints requests/s and p50/p90/p99/max per
phase, the server's CPU, and the ratio of the two p99s. Everything it starts is stopped
at the end, also on error.

    .venv/bin/python benchmarks/fraud_scoring.py                    # 10,000 accounts, 200/s, 30 s
    .venv/bin/python benchmarks/fraud_scoring.py --seconds 10 --accounts 2000 --no-fsync
"""

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import asyncpg
import psutil

from contracts.audit import AuditVerification
from contracts.auth import (
    JWKS_PATH,
    OPERATOR_SCOPES,
    TOKEN_ISSUER_DEFAULT,
    WORKER_SCOPES,
    PrincipalKind,
    Scope,
    audiences_of,
)
from contracts.money import AMOUNT_MINOR_MAX
from fraud.main import MIGRATIONS_PATH
from fraud.models import audit_events
from fraud.ruleset import AMOUNT_HISTORY_MAX
from fraud.scoring import typical_amount
from kit.audit import verify_chain
from kit.db import Database
from kit.migrations import upgrade_to_head
from kit.settings import to_asyncpg_url, with_database
from kit.token_signing import SigningKey, mint_token
from sagabank.localstack.databases import ensure_database
from sagabank.localstack.postgres import (
    EmbeddedPostgres,
    free_port,
    running_postgres,
)

DATABASE = "sagabank_fraud"
HOST = "127.0.0.1"
READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0
REQUEST_TIMEOUT_SECONDS = 10.0
# Requests still unanswered beyond this many are counted as failed, not queued forever.
IN_FLIGHT_MAX = 2_000
RESPONSE_HEADERS_MAX = 100
RESPONSE_BODY_BYTES_MAX = 1_000_000
HISTORY_DAYS = 30
COUNTERPARTIES_PER_ACCOUNT = 5
DENIED_SHARE = 0.01
GOAL_P99_MS = 20.0
OPERATOR_ID = "operator"
GOAL_RATE = 200.0


# -- the feature table -------------------------------------------------------------------


@dataclass
class Account:
    account_id: uuid.UUID
    median_minor: int
    counterparties: list[uuid.UUID]


@dataclass
class Population:
    accounts: list[Account]
    outcomes: int = 0
    denied: int = 0


def _amount(rng: random.Random, median_minor: int) -> int:
    # Log-normal around the account's usual amount: mostly near it, a long tail above.
    amount_minor = int(median_minor * math.exp(rng.gauss(0.0, 0.6)))
    return max(1, min(amount_minor, AMOUNT_MINOR_MAX))


async def load_features(url: str, accounts_count: int, seed: int) -> Population:
    """A month of history for `accounts_count` EUR accounts, written with COPY."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(accounts_count)]
    accounts = []
    outcome_rows: list[tuple[object, ...]] = []
    score_rows: list[tuple[object, ...]] = []
    feature_rows: list[tuple[object, ...]] = []
    for account_id in ids:
        median_minor = int(math.exp(rng.uniform(math.log(5_00), math.log(2_000_00))))
        counterparties = rng.sample(ids, COUNTERPARTIES_PER_ACCOUNT)
        accounts.append(Account(account_id, median_minor, counterparties))
        # Busy and quiet accounts: 0 to about 4 transfers a day.
        per_day = rng.choice((0.1, 0.3, 1.0, 1.0, 2.0, 4.0))
        count = max(1, int(rng.expovariate(1.0 / (per_day * HISTORY_DAYS))))
        history: list[tuple[datetime, int]] = []
        for _ in range(min(count, 400)):
            occurred_at = now - timedelta(seconds=rng.uniform(60, HISTORY_DAYS * 86_400))
            amount_minor = _amount(rng, median_minor)
            target = rng.choice(counterparties) if rng.random() < 0.9 else rng.choice(ids)
            final_status = "completed" if rng.random() < 0.97 else "declined"
            transfer_id = uuid.UUID(int=rng.getrandbits(128), version=4)
            decision = "approve" if final_status == "completed" else "decline"
            scored_at = occurred_at - timedelta(milliseconds=300)
            score_rows.append(
                (
                    transfer_id,
                    account_id,
                    target,
                    amount_minor,
                    "EUR",
                    0,
                    decision,
                    "[]",
                    "2026.11.2",
                    scored_at,
                )
            )
            outcome_rows.append(
                (
                    transfer_id,
                    account_id,
                    target,
                    amount_minor,
                    "EUR",
                    final_status,
                    None,
                    occurred_at,
                    occurred_at,
                )
            )
            if final_status == "completed":
                history.append((occurred_at, amount_minor))
        history.sort()
        amounts = [amount for _, amount in history][-AMOUNT_HISTORY_MAX:]
        typical = typical_amount(amounts)
        first_seen = min((at for at, _ in history), default=now - timedelta(days=HISTORY_DAYS))
        feature_rows.append(
            (
                account_id,
                first_seen,
                len(history),
                "EUR" if amounts else None,
                amounts,
                None if typical is None else typical.median_minor,
                None if typical is None else typical.spread_minor,
                now,
            )
        )
    denied = rng.sample(ids, int(accounts_count * DENIED_SHARE))
    denied_rows = [(account_id, "benchmark", "bench", now) for account_id in denied]

    connection = await asyncpg.connect(url, timeout=10)
    try:
        await connection.copy_records_to_table(
            "scores",
            records=score_rows,
            columns=[
                "transfer_id",
                "source_account_id",
                "target_account_id",
                "amount_minor",
                "currency",
                "score",
                "decision",
                "reasons",
                "ruleset_version",
                "created_at",
            ],
        )
        await connection.copy_records_to_table(
            "outcomes",
            records=outcome_rows,
            columns=[
                "transfer_id",
                "source_account_id",
                "target_account_id",
                "amount_minor",
                "currency",
                "final_status",
                "review_decision",
                "occurred_at",
                "recorded_at",
            ],
        )
        await connection.copy_records_to_table(
            "account_features",
            records=feature_rows,
            columns=[
                "account_id",
                "first_seen_at",
                "completed_transfers",
                "amount_currency",
                "amount_history",
                "amount_median_minor",
                "amount_spread_minor",
                "updated_at",
            ],
        )
        await connection.copy_records_to_table(
            "denied_accounts",
            records=denied_rows,
            columns=["account_id", "reason", "listed_by", "listed_at"],
        )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    return Population(accounts=accounts, outcomes=len(outcome_rows), denied=len(denied_rows))


def scoring_bodies(population: Population, count: int, seed: int) -> list[bytes]:
    """New transfers from the population: mostly to known payees, at their usual amounts."""
    rng = random.Random(seed)
    bodies = []
    for _ in range(count):
        account = rng.choice(population.accounts)
        known = rng.random() < 0.85
        target = rng.choice(account.counterparties) if known else uuid.uuid4()
        amount_minor = _amount(rng, account.median_minor)
        if rng.random() < 0.01:
            amount_minor = rng.choice((10_000_00, 50_000_00))
        body = {
            "transfer_id": str(uuid.uuid4()),
            "source_account_id": str(account.account_id),
            "target_account_id": str(target),
            "amount_minor": amount_minor,
            "currency": "EUR",
        }
        bodies.append(json.dumps(body).encode())
    return bodies


# -- tokens ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tokens:
    jwks_url: str
    worker: str
    operator: str


@contextlib.contextmanager
def serving_jwks(lifetime_seconds: int) -> Iterator[Tokens]:
    """A JWKS endpoint for a key made here, and tokens it signs, as the accounts service
    would issue them (issuer, audience, kinds and scopes of the worker and an operator)."""
    key = SigningKey.generate()
    document = json.dumps({"keys": [key.public_jwk()]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != JWKS_PATH:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(document)))
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, format: str, *args: object) -> None:
            return  # the service's own log says when it fetched the keys

    def token(subject: str, kind: PrincipalKind, scopes: frozenset[str]) -> str:
        return mint_token(
            key,
            subject=subject,
            kind=kind,
            scopes=set(scopes),
            issuer=TOKEN_ISSUER_DEFAULT,
            audience=audiences_of(Scope(scope) for scope in scopes),
            lifetime_seconds=lifetime_seconds,
        )

    server = ThreadingHTTPServer((HOST, free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, name="jwks", daemon=True)
    thread.start()
    try:
        yield Tokens(
            jwks_url=f"http://{HOST}:{server.server_port}{JWKS_PATH}",
            worker=token("sagabank-worker", PrincipalKind.service, frozenset(WORKER_SCOPES)),
            operator=token(OPERATOR_ID, PrincipalKind.operator, frozenset(OPERATOR_SCOPES)),
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=STOP_TIMEOUT_SECONDS)


# -- the server --------------------------------------------------------------------------


@contextlib.contextmanager
def running_fraud_service(
    database_url: str, jwks_url: str, port: int, log_path: Path
) -> Iterator[int]:
    """`sagabank serve fraud` on `port`, logging to `log_path`; yields its pid."""
    env = dict(os.environ)
    env.update(
        {
            "FRAUD_DATABASE_URL": database_url,
            "FRAUD_AUTH_JWKS_URL": jwks_url,
            "FRAUD_LOG_JSON": "true",
            "FRAUD_AUDIT_CHAIN_KEY": base64.b64encode(AUDIT_CHAIN_KEY).decode(),
        }
    )
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sagabank",
                "serve",
                "fraud",
                "--host",
                HOST,
                "--port",
                str(port),
            ],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        yield process.pid
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_SECONDS)


# -- the load generator ------------------------------------------------------------------


class HttpError(Exception):
    pass


class Connection:
    """One kept-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> "Connection":
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer)

    async def send(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        await self.writer.drain()
        status_line = await self.reader.readline()
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise HttpError(f"bad status line {status_line!r}")
        status = int(parts[1])
        length = None
        for _ in range(RESPONSE_HEADERS_MAX):
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        else:
            raise HttpError("too many response headers")
        if length is None or length > RESPONSE_BODY_BYTES_MAX:
            raise HttpError(f"unusable content-length {length}")
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def _authorization(token: str | None) -> str:
    return "" if token is None else f"Authorization: Bearer {token}\r\n"


def get_request(path: str, port: int, token: str | None = None) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n{_authorization(token)}\r\n".encode()


def post_request(path: str, port: int, body: bytes, token: str, method: str = "POST") -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n{_authorization(token)}"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def put_request(path: str, port: int, body: bytes, token: str) -> bytes:
    return post_request(path, port, body, token, method="PUT")


@dataclass
class Phase:
    name: str
    scheduled: int
    wall_seconds: float = 0.0
    latencies_seconds: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    bodies: list[bytes] = field(default_factory=list)
    server_cpu_seconds: float = 0.0

    @property
    def ok(self) -> int:
        return len(self.latencies_seconds)

    @property
    def per_second(self) -> float:
        return self.ok / self.wall_seconds if self.wall_seconds else 0.0

    def percentile_ms(self, fraction: float) -> float:
        if not self.latencies_seconds:
            return math.nan
        ordered = sorted(self.latencies_seconds)
        return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] * 1000


async def drive(
    name: str,
    requests: list[bytes],
    *,
    port: int,
    rate: float,
    connections: int,
    expected_status: int,
    keep_bodies: bool = False,
) -> Phase:
    """Send `requests` open-loop at `rate` per second over a pool of `connections`."""
    phase = Phase(name=name, scheduled=len(requests))
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await Connection.open(port))
    loop = asyncio.get_running_loop()
    in_flight: set[asyncio.Task[None]] = set()

    async def one(request: bytes, due: float) -> None:
        connection = await pool.get()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
                status, body = await connection.send(request)
        except (OSError, TimeoutError, HttpError, asyncio.IncompleteReadError) as error:
            phase.failures[type(error).__name__] += 1
            connection.close()
            pool.put_nowait(await Connection.open(port))
            return
        pool.put_nowait(connection)
        phase.statuses[status] += 1
        if status != expected_status:
            phase.failures[f"HTTP {status}"] += 1
            return
        phase.latencies_seconds.append(loop.time() - due)
        if keep_bodies:
            phase.bodies.append(body)

    started = loop.time() + 0.05
    for index, request in enumerate(requests):
        due = started + index / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(in_flight) >= IN_FLIGHT_MAX:
            phase.failures["dropped: too many in flight"] += 1
            continue
        task = asyncio.create_task(one(request, due))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.wait(in_flight, timeout=REQUEST_TIMEOUT_SECONDS * 2)
    phase.wall_seconds = loop.time() - started
    if in_flight:
        phase.failures["unfinished"] += len(in_flight)
        for task in list(in_flight):
            task.cancel()
    while not pool.empty():
        pool.get_nowait().close()
    return phase


async def wait_ready(port: int, process: psutil.Process) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        if not process.is_running() or process.status() == psutil.STATUS_ZOMBIE:
            raise RuntimeError("the fraud service exited; see its log")
        with contextlib.suppress(OSError, HttpError, asyncio.IncompleteReadError):
            connection = await Connection.open(port)
            try:
                status, _ = await connection.send(get_request("/readyz", port))
            finally:
                connection.close()
            if status == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the fraud service was not ready in {READY_TIMEOUT_SECONDS:.0f}s")
        await asyncio.sleep(0.2)


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def measured(process: psutil.Process, phase: Awaitable[Phase]) -> Phase:
    """Await the phase, noting the server's CPU time it took."""
    before = _cpu_seconds(process)
    done = await phase
    done.server_cpu_seconds = _cpu_seconds(process) - before
    return done


LISTING_REASON = "benchmark: audited write"
# The service under test keys its audit chain with this; the check verifies under it.
AUDIT_CHAIN_KEY = secrets.token_bytes(32)


@dataclass
class AuditCheck:
    listings: int  # deny-list entries the audited phase wrote
    events: int  # deny_list.entry_added events beside them
    chain: AuditVerification


async def check_audit(url: str) -> AuditCheck:
    """Once the service has stopped: one event per entry (a request the load generator gave
    up on may still have committed, so count rows, not answers), and an unbroken chain."""
    connection = await asyncpg.connect(url, timeout=10)
    try:
        listings = await connection.fetchval(
            "SELECT count(*) FROM denied_accounts WHERE reason = $1", LISTING_REASON
        )
        events = await connection.fetchval(
            "SELECT count(*) FROM audit_events WHERE action = 'deny_list.entry_added'"
        )
    finally:
        await connection.close()
    database = Database(to_asyncpg_url(url), audit_chain_key=AUDIT_CHAIN_KEY)
    try:
        async with database.sessions() as session:
            chain = await verify_chain(session, audit_events, service="fraud")
    finally:
        await database.dispose()
    assert isinstance(listings, int)
    assert isinstance(events, int)
    return AuditCheck(listings=listings, events=events, chain=chain)


async def benchmark(
    port: int,
    pid: int,
    population: Population,
    tokens: Tokens,
    rate: float,
    seconds: float,
    connections: int,
) -> list[Phase]:
    process = psutil.Process(pid)
    await wait_ready(port, process)
    count = int(rate * seconds)
    warmup = scoring_bodies(population, int(rate * 2), seed=1)
    bodies = scoring_bodies(population, count, seed=2)
    healthz = get_request("/healthz", port)
    ruleset = get_request("/v1/rulesets/current", port, tokens.operator)

    def scoring(name: str, batch: list[bytes], keep: bool) -> Awaitable[Phase]:
        requests = [post_request("/v1/scores", port, body, tokens.worker) for body in batch]
        return drive(
            name,
            requests,
            port=port,
            rate=rate,
            connections=connections,
            expected_status=201,
            keep_bodies=keep,
        )

    def baseline(name: str, request: bytes, total: int) -> Awaitable[Phase]:
        return drive(
            name,
            [request] * total,
            port=port,
            rate=rate,
            connections=connections,
            expected_status=200,
        )

    # Warm every path (connection pool, JWKS, prepared statements, caches) before measuring.
    await baseline("warm-up healthz", healthz, int(rate))
    await baseline("warm-up ruleset", ruleset, int(rate))
    await scoring("warm-up scoring", warmup, False)
    listings = [
        put_request(
            f"/v1/admin/deny-list/{uuid.uuid4()}",
            port,
            json.dumps({"reason": LISTING_REASON, "listed_by": OPERATOR_ID}).encode(),
            tokens.operator,
        )
        for _ in range(count)
    ]
    phases = [
        await measured(process, baseline("baseline GET /healthz", healthz, count)),
        await measured(process, baseline("with token GET ruleset", ruleset, count)),
        await measured(process, scoring("scoring POST /v1/scores", bodies, True)),
        await measured(
            process,
            drive(
                "audited PUT deny-list",
                listings,
                port=port,
                rate=rate,
                connections=connections,
                expected_status=201,
            ),
        ),
    ]
    return phases


def report(
    phases: list[Phase],
    population: Population,
    audit: AuditCheck,
    *,
    rate: float,
    seconds: float,
    connections: int,
    fsync: bool,
) -> None:
    print(
        f"\nfraud scoring: {len(population.accounts):,} accounts, {population.outcomes:,} "
        f"outcomes and as many scores over {HISTORY_DAYS} days, {population.denied} denied"
    )
    print(
        f"open loop at {rate:.0f} requests/s for {seconds:.0f} s per phase, "
        f"{connections} kept-alive connections, one uvicorn worker, "
        f"PostgreSQL with fsync {'on' if fsync else 'off'}"
    )
    # Other work on the machine shows in every figure: say how busy it was.
    load_1m, load_5m, _ = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load_1m:.1f} (1 min), {load_5m:.1f} (5 min)"
    )
    print(
        f"{'phase':<26} {'sent':>6} {'ok':>6} {'failed':>6} {'req/s':>8} {'p50 ms':>8} "
        f"{'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'server CPU':>10} {'CPU ms/req':>10}"
    )
    for phase in phases:
        failed = sum(phase.failures.values())
        cpu_share = phase.server_cpu_seconds / phase.wall_seconds if phase.wall_seconds else 0
        cpu_ms = 1000 * phase.server_cpu_seconds / phase.ok if phase.ok else math.nan
        print(
            f"{phase.name:<26} {phase.scheduled:>6} {phase.ok:>6} {failed:>6} "
            f"{phase.per_second:>8.1f} {phase.percentile_ms(0.5):>8.2f} "
            f"{phase.percentile_ms(0.9):>8.2f} {phase.percentile_ms(0.99):>8.2f} "
            f"{phase.percentile_ms(1.0):>8.2f} {cpu_share:>10.0%} {cpu_ms:>10.2f}"
        )
        if phase.failures:
            print(f"  failures: {dict(phase.failures)}")
    baseline, authenticated, scoring, audited = phases
    for name, phase in (
        ("with token", authenticated),
        ("scoring", scoring),
        ("audited write", audited),
    ):
        p50_ratio = phase.percentile_ms(0.5) / baseline.percentile_ms(0.5)
        p99_ratio = phase.percentile_ms(0.99) / baseline.percentile_ms(0.99)
        print(f"ratio {name} / baseline: p50 {p50_ratio:.1f}x, p99 {p99_ratio:.1f}x")
    decisions = Counter(json.loads(body)["decision"] for body in scoring.bodies)
    shares = ", ".join(
        f"{decision} {decisions[decision] / max(1, scoring.ok):.1%}"
        for decision in ("approve", "review", "decline")
    )
    print(f"decisions: {shares}")
    p99 = scoring.percentile_ms(0.99)
    met = p99 < GOAL_P99_MS and rate >= GOAL_RATE and not scoring.failures
    print(
        f"goal p99 < {GOAL_P99_MS:.0f} ms at {GOAL_RATE:.0f} requests/s: "
        f"{'met' if met else 'NOT met'} (p99 {p99:.2f} ms at {rate:.0f}/s)"
    )
    print(
        f"audit: {audit.events:,} deny_list.entry_added events for {audit.listings:,} listings "
        f"({'one each' if audit.events == audit.listings else 'MISMATCH'}); chain "
        f"{'verified' if audit.chain.ok else 'BROKEN'} over {audit.chain.events_checked:,} "
        "events"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=GOAL_RATE, help="requests per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    parser.add_argument("--connections", type=int, default=32, help="kept-alive connections")
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument(
        "--no-fsync",
        action="store_true",
        help="run PostgreSQL without fsync, as the test suite does (takes the disk out)",
    )
    arguments = parser.parse_args()
    if not 100 <= arguments.accounts <= 1_000_000:
        parser.error("--accounts must be between 100 and 1000000")
    if not 1 <= arguments.rate <= 5_000:
        parser.error("--rate must be between 1 and 5000")
    if not 1 <= arguments.seconds <= 600:
        parser.error("--seconds must be between 1 and 600")
    if not 1 <= arguments.connections <= 256:
        parser.error("--connections must be between 1 and 256")

    with tempfile.TemporaryDirectory(prefix="sagabank-bench-fraud-") as directory:
        root = Path(directory)
        server = EmbeddedPostgres(
            data_dir=root / "postgres", port=free_port(), durable=not arguments.no_fsync
        )
        with running_postgres(server, log_path=root / "postgres.log") as postgres:
            asyncio.run(ensure_database(postgres.admin_url, DATABASE))
            url = with_database(postgres.admin_url, DATABASE)
            upgrade_to_head(MIGRATIONS_PATH, url)
            started = time.perf_counter()
            population = asyncio.run(load_features(url, arguments.accounts, arguments.seed))
            print(
                f"loaded {len(population.accounts):,} accounts and {population.outcomes:,} "
                f"transfers in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
            port = free_port()
            log_path = root / "fraud.log"
            # Warm-up and four phases, with room to spare: no token expires mid-run.
            token_lifetime_seconds = int(10 * arguments.seconds) + 600
            try:
                with (
                    serving_jwks(token_lifetime_seconds) as tokens,
                    running_fraud_service(url, tokens.jwks_url, port, log_path) as pid,
                ):
                    phases = asyncio.run(
                        benchmark(
                            port,
                            pid,
                            population,
                            tokens,
                            arguments.rate,
                            arguments.seconds,
                            arguments.connections,
                        )
                    )
            except Exception:
                print(log_path.read_text(errors="replace")[-4000:], file=sys.stderr)
                raise
            audit = asyncio.run(check_audit(url))
    report(
        phases,
        population,
        audit,
        rate=arguments.rate,
        seconds=arguments.seconds,
        connections=arguments.connections,
        fsync=not arguments.no_fsync,
    )


if __name__ == "__main__":
    main()
