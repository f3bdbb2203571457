"""Transfers end to end per second, beside a bare four-activity workflow on the same server.

Starts a whole bank with `sagabank up` (embedded PostgreSQL, the Temporal dev server, the
four services, the saga's worker) on free ports in a temporary state directory, then runs,
on that one Temporal dev server and in this one invocation:

- bare: N workflows of four sequential no-op activities, run by a worker process of
  their own on a task queue of their own (docs/baselines.md measures the same shape);
- saga: N transfers, each `POST /v1/transfers` and then its workflow's result, the full
  saga with every step, audit and projection write included.

Both keep `--in-flight` executions going and report completed executions per second over
the whole run and the p50/p99 latency from submit to the workflow's end, then the ratio
saga / bare. It checks afterwards that every transfer completed, its projection says so,
and the ledger invariants hold. Everything it starts is stopped at the end, also on error.

Then one execution at a time (`--one-at-a-time`, 50 by default): the bare workflow, and a
transfer as a customer waits for it, `POST /v1/transfers` with `Prefer: wait` answered
200 once the transfer completed; p50 and p95 of each, side by side.

Then it does the same again on a second bank whose every component exports its spans
over OTLP/HTTP (OTEL_EXPORTER_OTLP_ENDPOINT) to a sink this process runs, and prints the
saga's transfers/s with tracing exported beside without, and their ratio (the cost of
instrumentation; the first bank traces too, as every bank does, but exports nothing).
The bare race of each bank is the control for the machine's drift between the two.

Then, for each run, the CPU time (user + system) each process of the bank spent per
execution. On a machine shared with other work the rates move from run to run with the
load; the CPU each execution costs barely does, and says where the time goes.

    .venv/bin/python benchmarks/saga.py                      # N=500, 50 in flight
    .venv/bin/python benchmarks/saga.py --transfers 100 --in-flight 20
    .venv/bin/python benchmarks/saga.py --quick              # a sanity run: N=40, 10 in flight
    .venv/bin/python benchmarks/saga.py --profile DIR --no-traced   # where each process's CPU goes

With `--profile DIR`, py-spy samples each Python process of the first bank (the four
services and the saga's worker) during its saga race only, writes one collapsed profile
per process to DIR with the race's CPU per process, and prints each one's top costs per
transfer (benchmarks/profile_table.py reads DIR again later).
"""

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from temporalio import activity, workflow

# The bare workflow below is defined in this module, which the workflow sandbox re-imports:
# the rest is passed through, as the saga's own workflow module does it.
with workflow.unsafe.imports_passed_through():
    import httpx
    import profile_table
    import psutil
    from temporalio.client import Client
    from temporalio.converter import DataConverter
    from temporalio.worker import Worker

    from contracts.auth import TOKEN_PATH
    from contracts.transfers import TransferStatus, workflow_id
    from kit.payloads import data_converter
    from kit.process import exit_without_finalising
    from kit.sealing import parse_key_ring
    from sagabank.localstack.otlp import running_otlp_receiver
    from sagabank.localstack.postgres import free_port
    from workflows.worker import WORKFLOW_RUNNER

SERVICES = ("accounts", "transactions", "fraud", "notifications")
READY_LINE = "Sagabank is ready"
BARE_READY_LINE = "bare worker ready"
READY_TIMEOUT_SECONDS = 240.0
STOP_TIMEOUT_SECONDS = 60.0
# Every transfer of the run must end within this, or the run is reported as broken.
TRANSFER_TIMEOUT_SECONDS = 300.0
# One httpx client collapses at high concurrency (docs/baselines.md): few requests at once,
# while many transfers wait on their workflow's end.
HTTP_CONCURRENCY_MAX = 8
POST_ATTEMPTS_MAX = 3
AMOUNT_MINOR = 1_234  # 12.34 EUR: no fraud rule fires, so each transfer completes
# Ten payers (hot rows on the ledger, like salaries paid out of few accounts), 50 payees.
PAYERS = 10
PAYEES = 50
WARMUP_EXECUTIONS = 20
# The services' rate limits guard against one customer moving money faster than a person
# can; this benchmark is that customer, and measures the bank rather than the limiter.
RATE_UNLIMITED = "1000000/minute"
CUSTOMERS_PATH = "/v1/customers"
# The bank whose components export their spans: its runs' names end with this.
TRACED = " traced"
QUICK_TRANSFERS = 40
QUICK_IN_FLIGHT = 10
ONE_AT_A_TIME = 50
QUICK_ONE_AT_A_TIME = 10
# The transfer's answer waits this long for the end (the most the front door allows).
PREFER_WAIT_SECONDS = 30
# Names of the runs of one execution at a time.
SINGLE = " one at a time"
BARE_WORKFLOW = "BenchBareWorkflow"
BARE_ACTIVITY = "bench_noop"
# The processes `--profile` samples: Python ones (Temporal and PostgreSQL are not).
PROFILED = (*SERVICES, "worker")
# Samples per second and process: modest, since py-spy's reading competes for the cores.
PROFILE_RATE_HZ = 100


# -- the bare workflow, run by `--bare-worker` in a process of its own -------------------


@activity.defn(name=BARE_ACTIVITY)
async def bench_noop(step: int) -> int:
    return step


@workflow.defn(name=BARE_WORKFLOW)
class BenchBareWorkflow:
    @workflow.run
    async def run(self, steps: int) -> int:
        done = 0
        for step in range(steps):
            done += await workflow.execute_activity(
                bench_noop, step, start_to_close_timeout=timedelta(seconds=30)
            )
        return done


def use_payload_keys() -> None:
    """One ring for the bank, this client and the bare worker (inherited through the
    environment); a fresh one per benchmark unless the caller names one."""
    ring = f"bench:{base64.b64encode(secrets.token_bytes(32)).decode()}"
    os.environ.setdefault("SAGABANK_PAYLOAD_KEYS", ring)


def payload_converter() -> DataConverter:
    """The bank's converter (payloads sealed under SAGABANK_PAYLOAD_KEYS, which `main` sets
    and every process it starts inherits): the bare race pays the same codec as the saga."""
    return data_converter(parse_key_ring(os.environ["SAGABANK_PAYLOAD_KEYS"]))


async def run_bare_worker(temporal_address: str, task_queue: str) -> None:
    client = await Client.connect(temporal_address, data_converter=payload_converter())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    # The saga worker's settings (workflows/config.py defaults, its sandbox), for a fair race.
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[BenchBareWorkflow],
        activities=[bench_noop],
        max_concurrent_activities=32,
        max_concurrent_workflow_tasks=32,
        workflow_runner=WORKFLOW_RUNNER,
    ):
        print(BARE_READY_LINE, flush=True)
        await stop.wait()


# -- processes ---------------------------------------------------------------------------


@dataclass
class Bank:
    process: subprocess.Popen[bytes]
    state_dir: Path
    ports: dict[str, int]
    operator_client_id: str
    operator_client_secret: str

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.ports['temporal']}"

    def output(self) -> str:
        return (self.state_dir / "up.log").read_text(errors="replace")


def stop_process(process: subprocess.Popen[bytes], stop_signal: signal.Signals) -> None:
    if process.poll() is None:
        process.send_signal(stop_signal)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_SECONDS)


@contextlib.contextmanager
def running_bank(state_dir: Path, settings: dict[str, str] | None = None) -> Iterator[Bank]:
    """`sagabank up` on free ports, as `make run` starts it, with `settings` added to its
    environment; stopped with a Ctrl-C."""
    names = ("postgres", "temporal", "temporal_ui", "codec", *SERVICES)
    ports = {name: free_port() for name in names}
    operator_client_id = "benchmark-operator"
    operator_client_secret = secrets.token_urlsafe(24)
    env = dict(os.environ)
    env.update(
        {
            "SAGABANK_OPERATOR_CLIENT_ID": operator_client_id,
            "SAGABANK_OPERATOR_CLIENT_SECRET": operator_client_secret,
            **{f"{name.upper()}_RATE_LIMIT_MONEY": RATE_UNLIMITED for name in SERVICES},
            "ACCOUNTS_RATE_LIMIT_TOKEN": RATE_UNLIMITED,
            "SAGABANK_STATE_DIR": str(state_dir),
            "SAGABANK_POSTGRES_PORT": str(ports["postgres"]),
            "SAGABANK_TEMPORAL_PORT": str(ports["temporal"]),
            "SAGABANK_TEMPORAL_UI_PORT": str(ports["temporal_ui"]),
            "SAGABANK_CODEC_PORT": str(ports["codec"]),
            "SAGABANK_LOG_JSON": "true",
            **{f"SAGABANK_{name.upper()}_PORT": str(ports[name]) for name in SERVICES},
        }
    )
    # Whether spans are exported is the benchmark's choice, not the shell's.
    for variable in [name for name in env if name.startswith("OTEL_")]:
        env.pop(variable)
    env.update(settings or {})
    for variable in ("SAGABANK_DATABASE_URL", "SAGABANK_TEMPORAL_ADDRESS"):
        env.pop(variable, None)
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / "up.log").open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "sagabank", "up"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    bank = Bank(
        process=process,
        state_dir=state_dir,
        ports=ports,
        operator_client_id=operator_client_id,
        operator_client_secret=operator_client_secret,
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while READY_LINE not in bank.output():
            if process.poll() is not None:
                raise RuntimeError(f"sagabank up exited early:\n{bank.output()[-4000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"bank not ready in {READY_TIMEOUT_SECONDS:.0f}s")
            time.sleep(0.2)
        yield bank
    finally:
        stop_process(process, signal.SIGINT)


@contextlib.contextmanager
def running_bare_worker(temporal_address: str, task_queue: str) -> Iterator[int]:
    """The bare workflow's worker in a process of its own, as the saga's worker runs; its pid."""
    # Imported as the module `saga`, not run as __main__: the worker's sandbox passes every
    # module through by name, and `__main__` has no name it can import again.
    here = str(Path(__file__).resolve().parent)
    bootstrap = f"import sys; sys.path.insert(0, {here!r}); import saga; saga.main()"
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            bootstrap,
            "--bare-worker",
            "--temporal-address",
            temporal_address,
            "--task-queue",
            task_queue,
        ],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        # readline blocks: the worker prints its line within seconds or exits (EOF).
        line = process.stdout.readline().decode()
        if BARE_READY_LINE not in line:
            raise RuntimeError(f"the bare worker did not start: {line!r}")
        yield process.pid
    finally:
        stop_process(process, signal.SIGTERM)


# -- measuring ---------------------------------------------------------------------------


COMPONENTS = ("temporal", "postgres", *SERVICES, "worker", "bare worker")


def component_of(process: psutil.Process) -> str:
    command = " ".join(process.cmdline())
    for service in SERVICES:
        if f"serve {service}" in command:
            return service
    if "--bare-worker" in command:
        return "bare worker"
    if "sagabank worker" in command:
        return "worker"
    if "temporal" in process.name():
        return "temporal"
    if "postgres" in process.name():
        return "postgres"
    return "launcher"


class CpuMeter:
    """CPU seconds (user + system) each component of the bank spent between two readings.

    Unlike throughput, this does not depend on what else the machine runs meanwhile: it is
    the work one execution costs, which is what a busy, shared machine cannot hide.
    """

    def __init__(self, bank_pid: int, extra_pids: tuple[int, ...]) -> None:
        self.bank_pid = bank_pid
        self.extra_pids = extra_pids

    def read(self) -> dict[int, tuple[str, float]]:
        root = psutil.Process(self.bank_pid)
        processes = [root, *root.children(recursive=True)]
        processes += [psutil.Process(pid) for pid in self.extra_pids]
        readings = {}
        for process in processes:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                readings[process.pid] = (component_of(process), times.user + times.system)
        return readings

    @staticmethod
    def spent(
        before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
    ) -> dict[str, float]:
        by_component: dict[str, float] = {}
        for pid, (component, seconds) in after.items():
            # A process born meanwhile (a restarted child) counts from zero.
            previous = before.get(pid, (component, 0.0))[1]
            by_component[component] = by_component.get(component, 0.0) + seconds - previous
        return by_component


@contextlib.contextmanager
def profiling(directory: Path, bank_pid: int) -> Iterator[None]:
    """py-spy records each of the bank's Python processes (`PROFILED`) while the block runs:
    `<component>.txt` in `directory`, collapsed stacks of running threads only."""
    directory.mkdir(parents=True, exist_ok=True)
    root = psutil.Process(bank_pid)
    targets = {component_of(p): p.pid for p in root.children(recursive=True)}
    missing = [component for component in PROFILED if component not in targets]
    if missing:
        raise RuntimeError(f"no process to profile for {missing}")
    spies = [
        subprocess.Popen(
            [
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--format",
                "raw",
                "--rate",
                str(PROFILE_RATE_HZ),
                # Only threads holding the GIL: an asyncio loop waiting in epoll and idle pool
                # threads let it go, and py-spy's own idle guess counted them as running.
                "--gil",
                # Whole paths: the tables group frames by package (opentelemetry, ...).
                "--full-filenames",
                "--output",
                str(directory / f"{component}.txt"),
                "--pid",
                str(targets[component]),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        for component in PROFILED
    ]
    try:
        yield
    finally:
        # py-spy writes its file when interrupted, as on Ctrl-C.
        for spy in spies:
            stop_process(spy, signal.SIGINT)


@dataclass
class Run:
    name: str
    executions: int
    wall_seconds: float
    latencies_seconds: list[float]
    cpu_seconds: dict[str, float]

    def cpu_ms_per_execution(self, component: str) -> float:
        return self.cpu_seconds.get(component, 0.0) * 1000 / self.executions

    @property
    def per_second(self) -> float:
        return self.executions / self.wall_seconds

    def percentile_ms(self, fraction: float) -> float:
        ordered = sorted(self.latencies_seconds)
        index = max(0, math.ceil(fraction * len(ordered)) - 1)
        return ordered[index] * 1000


async def measure(
    name: str,
    executions: int,
    in_flight: int,
    one: Callable[[int], Awaitable[None]],
    meter: CpuMeter,
) -> Run:
    """Run `one(i)` for i < executions with at most `in_flight` at once; time each."""
    slots = asyncio.Semaphore(in_flight)
    latencies: list[float] = []

    async def timed(index: int) -> None:
        async with slots:
            started = time.perf_counter()
            await one(index)
            latencies.append(time.perf_counter() - started)

    cpu_before = meter.read()
    started = time.perf_counter()
    async with asyncio.timeout(TRANSFER_TIMEOUT_SECONDS + executions):
        await asyncio.gather(*(timed(index) for index in range(executions)))
    wall_seconds = time.perf_counter() - started
    cpu = CpuMeter.spent(cpu_before, meter.read())
    return Run(name, executions, wall_seconds, latencies, cpu)


class Saga:
    """Drives transfers through the transactions API and waits for each one's workflow.

    As a bank's customers do: a payer and a payee register and sign in (password grant),
    open their accounts and the payer moves money from their own; the operator client
    deposits the payer's funds and reads the ledger invariants at the end.
    """

    def __init__(self, bank: Bank, http: httpx.AsyncClient, temporal: Client) -> None:
        self.bank = bank
        self.http = http
        self.temporal = temporal
        self.requests = asyncio.Semaphore(HTTP_CONCURRENCY_MAX)
        self.pairs: list[tuple[str, str]] = []
        self.transfer_ids: list[str] = []
        self.payer = ""
        self.payer_sign_in: dict[str, str] = {}
        self.operator = ""

    async def _token(self, form: dict[str, str], auth: httpx.BasicAuth | None = None) -> str:
        url = f"{self.bank.url('accounts')}{TOKEN_PATH}"
        response = await self.http.post(url, data=form, auth=auth or httpx.USE_CLIENT_DEFAULT)
        if response.status_code != 200:
            raise RuntimeError(f"POST {url}: {response.status_code} {response.text[:500]}")
        return str(response.json()["access_token"])

    async def _operator_token(self) -> str:
        auth = httpx.BasicAuth(self.bank.operator_client_id, self.bank.operator_client_secret)
        return await self._token({"grant_type": "client_credentials"}, auth)

    async def _customer(self, name: str) -> dict[str, str]:
        """A new customer's sign-in form (password grant)."""
        email = f"{name}-{uuid.uuid4().hex[:10]}@example.com"
        password = secrets.token_urlsafe(18)
        body = {"email": email, "password": password, "display_name": name}
        await self._post(f"{self.bank.url('accounts')}{CUSTOMERS_PATH}", body, token="")
        return {"grant_type": "password", "username": email, "password": password}

    async def _post(
        self,
        path: str,
        body: object,
        *,
        token: str,
        idempotent: bool = False,
        prefer: str | None = None,
    ) -> object:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if prefer is not None:
            headers["Prefer"] = prefer
        if idempotent:
            headers["Idempotency-Key"] = str(uuid.uuid4())
        for attempt in range(1, POST_ATTEMPTS_MAX + 1):
            try:
                async with self.requests:
                    response = await self.http.post(path, json=body, headers=headers)
            except httpx.TransportError:
                # A kept-alive connection the server closed meanwhile; with the same
                # Idempotency-Key the retry cannot create a second transfer.
                if attempt == POST_ATTEMPTS_MAX or not idempotent:
                    raise
                continue
            # A saturated machine can make the front door's call to accounts time out: 503
            # with Retry-After, which a client honours (the same key makes it safe). Printed,
            # so that a run which needed it says so beside its figures.
            if response.status_code != 503 or not idempotent or attempt == POST_ATTEMPTS_MAX:
                break
            retry_after_seconds = float(response.headers.get("Retry-After", "1"))
            print(f"POST {path}: 503, retried after {retry_after_seconds:g} s", file=sys.stderr)
            await asyncio.sleep(retry_after_seconds)
        if response.status_code not in (200, 201, 202):
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:500]}")
        return response.json()

    async def open_accounts(self, deposit_minor: int) -> None:
        accounts = self.bank.url("accounts")
        self.operator = await self._operator_token()
        self.payer_sign_in = await self._customer("payer")
        self.payer = await self._token(self.payer_sign_in)
        payee = await self._token(await self._customer("payee"))

        async def open_account(token: str) -> str:
            account = await self._post(f"{accounts}/v1/accounts", {"currency": "EUR"}, token=token)
            assert isinstance(account, dict)
            return str(account["id"])

        payers = await asyncio.gather(*(open_account(self.payer) for _ in range(PAYERS)))
        payees = await asyncio.gather(*(open_account(payee) for _ in range(PAYEES)))
        self.pairs = [(payers[i % PAYERS], payees[i % PAYEES]) for i in range(PAYEES)]
        # Sequential: ten deposits are quick, and none races another to create the
        # currency's system account.
        deposit = {"amount_minor": deposit_minor, "currency": "EUR"}
        for account_id in payers:
            await self._post(
                f"{accounts}/v1/accounts/{account_id}/deposits",
                deposit,
                token=self.operator,
                idempotent=True,
            )

    async def sign_in_again(self) -> None:
        """Tokens live minutes: each run starts with a fresh one, as a client refreshes."""
        self.payer = await self._token(self.payer_sign_in)

    async def _create(self, index: int, *, prefer: str | None = None) -> dict[str, object]:
        source, target = self.pairs[index % len(self.pairs)]
        created = await self._post(
            f"{self.bank.url('transactions')}/v1/transfers",
            {
                "source_account_id": source,
                "target_account_id": target,
                "amount_minor": AMOUNT_MINOR,
                "currency": "EUR",
                "description": f"bench {index}",
            },
            token=self.payer,
            idempotent=True,
            prefer=prefer,
        )
        assert isinstance(created, dict)
        self.transfer_ids.append(str(created["id"]))
        return created

    async def transfer_waited(self, index: int) -> None:
        """One transfer as a customer waits for it: the answer comes once it ended."""
        answer = await self._create(index, prefer=f"wait={PREFER_WAIT_SECONDS}")
        if answer.get("status") != TransferStatus.completed:
            raise RuntimeError(f"transfer {answer.get('id')} answered {answer.get('status')}")

    async def transfer(self, index: int) -> None:
        created = await self._create(index)
        transfer_id = str(created["id"])
        handle = self.temporal.get_workflow_handle(workflow_id(uuid.UUID(transfer_id)))
        result = await handle.result()
        status = result["status"] if isinstance(result, dict) else result.status
        if status != TransferStatus.completed:
            raise RuntimeError(f"transfer {transfer_id} ended {status}")

    async def check(self) -> None:
        """Every transfer's projection is completed and the ledger invariants hold."""
        transactions = self.bank.url("transactions")
        # Tokens live minutes and a long run outlives the first ones: sign in again.
        payer = {"Authorization": f"Bearer {await self._token(self.payer_sign_in)}"}
        operator = {"Authorization": f"Bearer {await self._operator_token()}"}
        for transfer_id in self.transfer_ids:
            response = await self.http.get(
                f"{transactions}/v1/transfers/{transfer_id}", headers=payer
            )
            if response.json().get("status") != TransferStatus.completed:
                raise RuntimeError(f"projection of {transfer_id}: {response.text[:500]}")
        invariants = await self.http.get(
            f"{self.bank.url('accounts')}/v1/admin/ledger/invariants", headers=operator
        )
        if invariants.json().get("ok") is not True:
            raise RuntimeError(f"ledger invariants broken: {invariants.text[:1000]}")


async def benchmark(
    bank: Bank,
    transfers: int,
    in_flight: int,
    rounds: int,
    *,
    one_at_a_time: int,
    suffix: str = "",
    profile_dir: Path | None = None,
) -> list[Run]:
    """Bare and saga runs on `bank`, named with `suffix`, then `one_at_a_time` of each
    one at a time; the first saga race profiled into `profile_dir` if one is given."""
    temporal = await Client.connect(bank.temporal_address, data_converter=payload_converter())
    bare_queue = f"bench-bare-{uuid.uuid4()}"

    async def bare(index: int) -> None:
        done = await temporal.execute_workflow(
            BARE_WORKFLOW, 4, id=f"bench-bare-{uuid.uuid4()}", task_queue=bare_queue
        )
        assert done == 6, "four no-op activities ran"

    runs: list[Run] = []
    with running_bare_worker(bank.temporal_address, bare_queue) as bare_worker_pid:
        meter = CpuMeter(bank.process.pid, (bare_worker_pid,))
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(30.0),
            limits=httpx.Limits(max_connections=HTTP_CONCURRENCY_MAX),
        ) as http:
            saga = Saga(bank, http, temporal)
            total = (WARMUP_EXECUTIONS + transfers * rounds + one_at_a_time) * AMOUNT_MINOR
            await saga.open_accounts(deposit_minor=total)
            await measure("warm-up bare", WARMUP_EXECUTIONS, in_flight, bare, meter)
            await measure("warm-up saga", WARMUP_EXECUTIONS, in_flight, saga.transfer, meter)
            for _ in range(rounds):
                runs.append(await measure(f"bare{suffix}", transfers, in_flight, bare, meter))
                await saga.sign_in_again()
                with contextlib.ExitStack() as profiler:
                    if profile_dir is not None and not any(r.name.startswith("saga") for r in runs):
                        profiler.enter_context(profiling(profile_dir, bank.process.pid))
                    run = await measure(f"saga{suffix}", transfers, in_flight, saga.transfer, meter)
                runs.append(run)
                if profile_dir is not None and len(runs) == 2:
                    write_profile_cpu(profile_dir, run)
            if one_at_a_time:
                await saga.sign_in_again()
                for name, one in (("bare", bare), ("saga", saga.transfer_waited)):
                    runs.append(
                        await measure(f"{name}{SINGLE}{suffix}", one_at_a_time, 1, one, meter)
                    )
            await saga.check()
    return runs


def write_profile_cpu(directory: Path, run: Run) -> None:
    """What profile_table needs beside the profiles: the race's CPU per process."""
    cpu = {"transfers": run.executions, "rate_hz": PROFILE_RATE_HZ, "cpu_seconds": run.cpu_seconds}
    (directory / "cpu.json").write_text(json.dumps(cpu, indent=2) + "\n")


def report(runs: list[Run], transfers: int, in_flight: int) -> None:
    print(f"\n{transfers} executions per run, {in_flight} in flight, one Temporal dev server")
    print(f"{'run':<28} {'completed/s':>12} {'p50 ms':>9} {'p99 ms':>9} {'wall s':>8}")
    for run in runs:
        print(
            f"{run.name:<28} {run.per_second:>12.1f} {run.percentile_ms(0.5):>9.0f} "
            f"{run.percentile_ms(0.99):>9.0f} {run.wall_seconds:>8.1f}"
        )
    for suffix in ("", TRACED) if any(run.name.endswith(TRACED) for run in runs) else ("",):
        bare = [run.per_second for run in runs if run.name == f"bare{suffix}"]
        saga = [run.per_second for run in runs if run.name == f"saga{suffix}"]
        ratios = [s / b for s, b in zip(saga, bare, strict=True)]
        print(f"ratio saga / bare{suffix}: " + ", ".join(f"{ratio:.2f}" for ratio in ratios))
    report_one_at_a_time(runs)
    if any(run.name.endswith(TRACED) for run in runs):
        report_tracing_cost(runs)
    print("\nCPU ms per execution, by process (user + system; the machine's load aside)")
    shown = [c for c in COMPONENTS if any(run.cpu_seconds.get(c, 0) > 0 for run in runs)]
    print(f"{'run':<28} " + " ".join(f"{c[:9]:>9}" for c in shown) + f" {'total':>9}")
    for run in runs:
        cells = " ".join(f"{run.cpu_ms_per_execution(c):>9.1f}" for c in shown)
        total = sum(run.cpu_seconds.values()) * 1000 / run.executions
        print(f"{run.name:<28} {cells} {total:>9.1f}")


def report_one_at_a_time(runs: list[Run]) -> None:
    """Latency with nothing else in flight: what one customer waits for one transfer."""
    single = [run for run in runs if SINGLE in run.name]
    if not single:
        return
    print("\none at a time, submit to end (the saga's answer with Prefer: wait)")
    print(f"{'run':<28} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9}")
    for run in single:
        print(
            f"{run.name:<28} {run.percentile_ms(0.5):>9.0f} {run.percentile_ms(0.95):>9.0f} "
            f"{run.percentile_ms(1.0):>9.0f}"
        )


def report_tracing_cost(runs: list[Run]) -> None:
    """The saga's transfers/s with tracing exported beside without, and their ratio; the
    same of the bare races, whose difference is the machine's, not tracing's."""
    print("\ntracing exported (OTLP/HTTP to a sink) against not exported")
    print(f"{'race':<8} {'not exported/s':>15} {'exported/s':>11} {'ratio':>7}")
    for race in ("saga", "bare"):
        plain = [run.per_second for run in runs if run.name == race]
        traced = [run.per_second for run in runs if run.name == f"{race}{TRACED}"]
        for without, with_tracing in zip(plain, traced, strict=True):
            ratio = with_tracing / without
            print(f"{race:<8} {without:>15.1f} {with_tracing:>11.1f} {ratio:>7.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--transfers", type=int, default=500, help="executions per run")
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1, help="bare + saga pairs to run")
    parser.add_argument("--state-dir", type=Path, help="keep the banks' state here")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a sanity run: {QUICK_TRANSFERS} executions per run, {QUICK_IN_FLIGHT} in flight",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="sample the first bank's Python processes with py-spy during its saga race",
    )
    parser.add_argument(
        "--no-traced",
        action="store_true",
        help="run only the first bank (spans not exported): half the time",
    )
    parser.add_argument(
        "--one-at-a-time",
        type=int,
        default=ONE_AT_A_TIME,
        metavar="N",
        help=f"then N of each one at a time, for latency (0: none; --quick: {QUICK_ONE_AT_A_TIME})",
    )
    parser.add_argument("--bare-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--temporal-address", help=argparse.SUPPRESS)
    parser.add_argument("--task-queue", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    use_payload_keys()
    if arguments.bare_worker:
        asyncio.run(run_bare_worker(arguments.temporal_address, arguments.task_queue))
        return 0
    if arguments.quick:
        arguments.transfers, arguments.in_flight = QUICK_TRANSFERS, QUICK_IN_FLIGHT
        arguments.one_at_a_time = min(arguments.one_at_a_time, QUICK_ONE_AT_A_TIME)
    if not 1 <= arguments.transfers <= 100_000:
        parser.error("--transfers must be between 1 and 100000")
    if not 1 <= arguments.in_flight <= 500:
        parser.error("--in-flight must be between 1 and 500")
    if not 1 <= arguments.rounds <= 10:
        parser.error("--rounds must be between 1 and 10")
    if not 0 <= arguments.one_at_a_time <= 1_000:
        parser.error("--one-at-a-time must be between 0 and 1000")

    with contextlib.ExitStack() as stack:
        state_dir = arguments.state_dir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="sagabank-bench-"))
        )
        sink = stack.enter_context(running_otlp_receiver(keep_spans=False))
        runs: list[Run] = []
        banks: list[tuple[str, dict[str, str]]] = [("", {})]
        if not arguments.no_traced:
            banks.append((TRACED, {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint}))
        # One bank after the other: each runs alone on the machine, as production would.
        for suffix, settings in banks:
            with running_bank(state_dir / f"state{suffix.strip()}", settings) as bank:
                runs += asyncio.run(
                    benchmark(
                        bank,
                        arguments.transfers,
                        arguments.in_flight,
                        arguments.rounds,
                        one_at_a_time=arguments.one_at_a_time,
                        suffix=suffix,
                        profile_dir=arguments.profile if not suffix else None,
                    )
                )
        if not arguments.no_traced and sink.requests_received == 0:
            raise RuntimeError("the traced bank exported no span: tracing is not measured")
    report(runs, arguments.transfers, arguments.in_flight)
    if arguments.profile is not None:
        print(f"\ntop costs per process during the saga race (profiles in {arguments.profile})")
        print(profile_table.report(arguments.profile))
    return 0


if __name__ == "__main__":
    # The Temporal client's native threads can crash the interpreter's finalisation.
    exit_without_finalising(main)
