"""Start and stop the whole bank exactly as `make run` does (`sagabank up`), for system tests;
and act in it as its users do: customers registered through the real issuer, with their
own tokens, and the operator client the launcher registers."""

import base64
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from temporalio.converter import DataConverter

from contracts.audit import AUDIT_EVENTS_PATH, AUDIT_VERIFY_PATH
from contracts.auth import TOKEN_PATH
from kit.payloads import data_converter
from kit.sealing import parse_key_ring
from sagabank.localstack.postgres import free_port

SERVICES = ("accounts", "transactions", "fraud", "notifications")
# The operator console: a process of the bank with a port of its own, but no service (no
# database, no API of its own).
CONSOLE = "console"
READY_LINE = "Sagabank is ready"
# `sagabank up` prefixes each line with its component's name in this width, then "| ".
_NAME_WIDTH = 13
_LAUNCHER_PREFIX = f"{'sagabank':<{_NAME_WIDTH}}|"
_EXITED = re.compile(rf"{re.escape(_LAUNCHER_PREFIX)} (?P<name>\S+) exited unexpectedly")
_REPORT_LINES = 40
CUSTOMERS_PATH = "/v1/customers"
OPERATOR_CLIENT_ID = "system-test-operator"
# A token is reused for this long (tokens live 15 minutes; sessions can outlast one).
_OPERATOR_TOKEN_REUSE_SECONDS = 600.0
# System tests register customers and move money far faster than a person: the rate
# limits (tested by the services' own tests) must not turn the scenario into 429s.
_RATE_UNLIMITED = "100000/minute"
_AUDIT_PAGES_MAX = 50


@dataclass(frozen=True)
class Customer:
    """A registered customer with a token from the password grant."""

    id: str
    email: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Bank:
    process: subprocess.Popen[bytes]
    state_dir: Path
    log_path: Path
    ports: dict[str, int]
    # What `sagabank up` ran with: the same for `sagabank token` / `sagabank audit`.
    environment: dict[str, str]
    operator_client_secret: str
    _operator_token: tuple[str, float] | None = field(default=None, repr=False)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.ports['temporal']}"

    @property
    def temporal_ui_url(self) -> str:
        return f"http://localhost:{self.ports['temporal_ui']}"

    @property
    def codec_url(self) -> str:
        return f"http://127.0.0.1:{self.environment['SAGABANK_CODEC_PORT']}"

    def data_converter(self) -> DataConverter:
        """The converter of the bank's worker: its Temporal clients in tests use it."""
        return data_converter(parse_key_ring(self.environment["SAGABANK_PAYLOAD_KEYS"]))

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def why_it_stopped(self) -> str:
        """What the launcher said, and the last lines of the first component it saw exit
        before its end: the other components' shutdown would push both out of a tail."""
        lines = self.output().splitlines()
        said = [line for line in lines if line.startswith(_LAUNCHER_PREFIX)]
        exited = next(filter(None, map(_EXITED.match, said)), None)
        report = ["the launcher said:", *said[-_REPORT_LINES:]]
        if exited is not None:
            prefix = f"{exited['name']:<{_NAME_WIDTH}}|"
            last = [line for line in lines if line.startswith(prefix)][-_REPORT_LINES:]
            report += [f"{exited['name']} before it exited:", *last]
        return "\n".join(report)

    async def operator_headers(self, http: httpx.AsyncClient) -> dict[str, str]:
        """The operator's bearer header, from the real token endpoint (client_credentials)."""
        cached = self._operator_token
        if cached is None or time.monotonic() - cached[1] > _OPERATOR_TOKEN_REUSE_SECONDS:
            response = await http.post(
                f"{self.url('accounts')}{TOKEN_PATH}",
                data={"grant_type": "client_credentials"},
                auth=(OPERATOR_CLIENT_ID, self.operator_client_secret),
            )
            assert response.status_code == 200, response.text
            cached = (response.json()["access_token"], time.monotonic())
            self._operator_token = cached
        return {"Authorization": f"Bearer {cached[0]}"}

    async def customer_token(self, http: httpx.AsyncClient, email: str, password: str) -> str:
        response = await http.post(
            f"{self.url('accounts')}{TOKEN_PATH}",
            data={"grant_type": "password", "username": email, "password": password},
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    async def register_customer(self, http: httpx.AsyncClient, name: str = "customer") -> Customer:
        """A new customer (unique email), registered and logged in through the issuer."""
        email = f"{name}-{uuid.uuid4().hex[:10]}@example.com"
        password = secrets.token_urlsafe(18)
        response = await http.post(
            f"{self.url('accounts')}{CUSTOMERS_PATH}",
            json={"email": email, "password": password, "display_name": name[:40]},
        )
        assert response.status_code == 201, response.text
        customer_id: str = response.json()["id"]
        token = await self.customer_token(http, email, password)
        return Customer(id=customer_id, email=email, password=password, token=token)

    async def open_account(
        self, http: httpx.AsyncClient, customer: Customer, currency: str = "EUR"
    ) -> str:
        """An account the customer opens for themselves (the token names the owner)."""
        response = await http.post(
            f"{self.url('accounts')}/v1/accounts",
            json={"currency": currency},
            headers=customer.headers,
        )
        assert response.status_code == 201, response.text
        account_id: str = response.json()["id"]
        return account_id

    async def deposit(
        self, http: httpx.AsyncClient, account_id: str, amount_minor: int, currency: str = "EUR"
    ) -> None:
        """The operator pays money in (a deposit needs accounts:admin)."""
        response = await http.post(
            f"{self.url('accounts')}/v1/accounts/{account_id}/deposits",
            json={"amount_minor": amount_minor, "currency": currency},
            headers={
                **await self.operator_headers(http),
                "Idempotency-Key": str(uuid.uuid4()),
            },
        )
        assert response.status_code == 201, response.text

    async def audit_events(
        self, http: httpx.AsyncClient, service: str, **filters: str
    ) -> list[dict[str, Any]]:
        """Every audit event of `service` matching `filters`, oldest first (the operator's
        admin query, cursors followed; at most _AUDIT_PAGES_MAX pages)."""
        events: list[dict[str, Any]] = []
        params = {**filters, "limit": "500"}
        for _ in range(_AUDIT_PAGES_MAX):
            response = await http.get(
                f"{self.url(service)}{AUDIT_EVENTS_PATH}",
                params=params,
                headers=await self.operator_headers(http),
            )
            assert response.status_code == 200, response.text
            page = response.json()
            events.extend(page["items"])
            if page["next_cursor"] is None:
                return events
            params["cursor"] = page["next_cursor"]
        raise AssertionError(f"{service} has more than {_AUDIT_PAGES_MAX} pages of events")

    async def verify_audit(self, http: httpx.AsyncClient, service: str) -> dict[str, Any]:
        response = await http.get(
            f"{self.url(service)}{AUDIT_VERIFY_PATH}", headers=await self.operator_headers(http)
        )
        assert response.status_code == 200, response.text
        verification: dict[str, Any] = response.json()
        return verification

    def sagabank(
        self, *arguments: str, timeout_seconds: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a `sagabank` command against this bank, as its operator would in a shell."""
        return subprocess.run(
            [sys.executable, "-m", "sagabank", *arguments],
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=timeout_seconds,
            check=False,
        )

    def wait_until_ready(self, timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        while READY_LINE not in self.output():
            if self.process.poll() is not None:
                raise AssertionError(f"sagabank up exited early:\n{self.why_it_stopped()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"not ready in {timeout_seconds}s:\n{self.output()[-6000:]}")
            time.sleep(0.2)

    def stop(self, timeout_seconds: float = 60.0) -> int:
        """SIGINT (a Ctrl-C) and wait; SIGKILL the launcher if it does not finish in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout_seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout_seconds)
        return self.process.returncode


def bank_environment(
    state_dir: Path, ports: dict[str, int], *, operator_client_secret: str | None = None
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "SAGABANK_STATE_DIR": str(state_dir),
            "SAGABANK_POSTGRES_PORT": str(ports["postgres"]),
            "SAGABANK_TEMPORAL_PORT": str(ports["temporal"]),
            "SAGABANK_TEMPORAL_UI_PORT": str(ports["temporal_ui"]),
            "SAGABANK_CODEC_PORT": str(ports["codec"] if "codec" in ports else free_port()),
            "SAGABANK_WORKER_METRICS_PORT": str(free_port()),
            # Its own payload key ring, which the tests' Temporal clients read back.
            "SAGABANK_PAYLOAD_KEYS": f"system:{base64.b64encode(secrets.token_bytes(32)).decode()}",
            "SAGABANK_LOG_JSON": "true",
            "SAGABANK_OPERATOR_CLIENT_ID": OPERATOR_CLIENT_ID,
            "SAGABANK_OPERATOR_CLIENT_SECRET": operator_client_secret or secrets.token_urlsafe(24),
            **{f"SAGABANK_{name.upper()}_PORT": str(ports[name]) for name in SERVICES},
            "SAGABANK_CONSOLE_PORT": str(ports[CONSOLE] if CONSOLE in ports else free_port()),
            **{f"{name.upper()}_RATE_LIMIT_MONEY": _RATE_UNLIMITED for name in SERVICES},
            "ACCOUNTS_RATE_LIMIT_TOKEN": _RATE_UNLIMITED,
            "ACCOUNTS_LOGIN_FAILURE_RATE": _RATE_UNLIMITED,
            # Webhook receivers in system tests listen on this machine, over plain http.
            "NOTIFICATIONS_WEBHOOK_ALLOW_HTTP": "true",
            "NOTIFICATIONS_WEBHOOK_ALLOW_LOOPBACK": "true",
        }
    )
    # The bank under test is the embedded one, whatever the developer's shell points at,
    # with its own signing key (from its state directory).
    for variable in ("SAGABANK_DATABASE_URL", "SAGABANK_TEMPORAL_ADDRESS", "SAGABANK_TOKEN"):
        env.pop(variable, None)
    for variable in [name for name in env if name.startswith("ACCOUNTS_SIGNING_KEY")]:
        env.pop(variable)
    # ...and its own audit chain keys and checkpoints; a checkpoint at least every half
    # second, so a test need not wait long for one to cover its events.
    for variable in [name for name in env if "_AUDIT_CHAIN_KEY" in name]:
        env.pop(variable)
    for service in SERVICES:
        env[f"{service.upper()}_AUDIT_CHECKPOINT_INTERVAL_SECONDS"] = "0.5"
    return env


def start_bank(
    state_dir: Path,
    ports: dict[str, int] | None = None,
    *,
    settings: dict[str, str] | None = None,
) -> Bank:
    """Launch `sagabank up` on free ports with its state under `state_dir`; `settings` are
    extra environment variables for its components (e.g. short timeouts)."""
    names = ("postgres", "temporal", "temporal_ui", "codec", *SERVICES, CONSOLE)
    ports = ports or {name: free_port() for name in names}
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "up.log"
    environment = {**bank_environment(state_dir, ports), **(settings or {})}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "sagabank", "up"],
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return Bank(
        process=process,
        state_dir=state_dir,
        log_path=log_path,
        ports=ports,
        environment=environment,
        operator_client_secret=environment["SAGABANK_OPERATOR_CLIENT_SECRET"],
    )
