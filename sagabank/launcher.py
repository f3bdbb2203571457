"""`sagabank up`: the whole bank on one machine, in one terminal.

Starts PostgreSQL (embedded, unless an external server is configured), creates and
migrates each service's database, starts the Temporal dev server with its web UI (unless
an external Temporal is configured), the four services and the worker; prefixes every
output line with its source; waits until everything is healthy; and on Ctrl-C or SIGTERM
stops every child in reverse order, escalating to SIGKILL after a bounded wait.

Each child runs in its own session, so a Ctrl-C in the terminal reaches only the launcher:
it then stops the worker and the services before Temporal and PostgreSQL they depend on.
"""

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import httpx

from contracts.auth import (
    CLI_CLIENT_ID,
    CLI_REDIRECT_URI,
    CUSTOMER_SCOPES,
    DOCS_CLIENT_ID,
    DOCS_REDIRECT_PATH,
    JWKS_PATH,
    OPERATOR_SCOPES,
    TOKEN_PATH,
    WORKER_SCOPES,
    audience_of_service,
)
from contracts.transfers import TASK_QUEUE
from kit.migrations import application_role, owner_role, upgrade_to_head
from kit.settings import with_database, with_user
from sagabank.config import (
    CONSOLE,
    CONSOLE_CLIENT_ID,
    SERVICES,
    WORKER_CLIENT_ID,
    LauncherSettings,
)
from sagabank.localstack.databases import (
    SERVICE_DATABASES,
    adopt_database,
    ensure_database,
    ensure_login_role,
)
from sagabank.localstack.postgres import EmbeddedPostgres, port_is_free
from sagabank.localstack.secrets import dev_key_ring, dev_secret, dev_signing_keys_dir
from sagabank.localstack.temporal import TemporalDevServer, ensure_search_attributes
from sagabank.status import metrics_urls

if TYPE_CHECKING:
    from temporalio.envconfig import ClientConnectConfig

STATE_FILE_NAME = "up.json"
CODEC_SERVER = "codec"
# The dev secret (under the state directory) the local payload key ring is made of.
PAYLOAD_KEY_NAME = "temporal-payload-key"
CHECKPOINTS_DIR_NAME = "audit-checkpoints"
# Temporal's standard connection variables (kit.temporal_connection).
TEMPORAL_VARIABLE_PREFIX = "TEMPORAL_"
DEV_SERVER_PROFILE_NAME = "temporal-dev-server.toml"
_POLL_INTERVAL_SECONDS = 0.25
# A crashed worker or service is restarted (its work is idempotent and Temporal retries
# what it was doing), but a component that keeps crashing stops the bank: at most this
# many restarts within the window, with a growing pause between them.
RESTARTS_MAX = 5
RESTART_WINDOW_SECONDS = 60.0
RESTART_BACKOFF_MAX_SECONDS = 5.0
_COLOURS = ("36", "33", "35", "32", "34", "91", "96", "93")


class LaunchError(Exception):
    """A reason the bank cannot start, worded for the person at the terminal."""


@dataclass
class Child:
    """One supervised child process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    # PostgreSQL treats SIGINT as its "fast" shutdown; everything else stops on SIGTERM.
    stop_signal: signal.Signals = signal.SIGTERM
    user: int | None = None
    group: int | None = None
    # Stateless components come back after a crash; PostgreSQL and Temporal do not.
    restartable: bool = False
    process: asyncio.subprocess.Process | None = None
    pump: asyncio.Task[None] | None = None
    expected_exit: bool = False
    restarts: list[float] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid


def migrations_path(service: str) -> Path:
    spec = importlib.util.find_spec(service)
    assert spec is not None, f"service package {service!r} is not installed"
    assert spec.origin is not None
    return Path(spec.origin).parent / "migrations"


class Launcher:
    def __init__(self, settings: LauncherSettings, *, out: TextIO = sys.stdout) -> None:
        self.settings = settings
        self.out = out
        self.colour = out.isatty()
        self.children: list[Child] = []
        self.stop_requested = asyncio.Event()
        self.child_died = asyncio.Event()
        self.state_dir = settings.state_dir.resolve()
        self.state_file = self.state_dir / STATE_FILE_NAME

    # -- output ------------------------------------------------------------------------

    def say(self, source: str, line: str) -> None:
        index = sum(source.encode()) % len(_COLOURS)
        prefix = f"{source:<13}|"
        if self.colour:
            prefix = f"\033[{_COLOURS[index]}m{prefix}\033[0m"
        self.out.write(f"{prefix} {line}\n")
        self.out.flush()

    async def _pump(self, child: Child) -> None:
        assert child.process is not None
        assert child.process.stdout is not None
        async for raw in child.process.stdout:
            self.say(child.name, raw.decode("utf-8", "replace").rstrip())
        returncode = await child.process.wait()
        if child.expected_exit or self.stop_requested.is_set():
            return
        self.say("sagabank", f"{child.name} exited unexpectedly with status {returncode}")
        now = time.monotonic()
        child.restarts = [at for at in child.restarts if now - at < RESTART_WINDOW_SECONDS]
        if not child.restartable or len(child.restarts) >= RESTARTS_MAX:
            self.child_died.set()
            return
        child.restarts.append(now)
        pause = min(0.25 * 2 ** (len(child.restarts) - 1), RESTART_BACKOFF_MAX_SECONDS)
        self.say(
            "sagabank",
            f"restarting {child.name} in {pause:.2f}s "
            f"({len(child.restarts)}/{RESTARTS_MAX} within "
            f"{RESTART_WINDOW_SECONDS:.0f}s)",
        )
        await asyncio.sleep(pause)
        # stop_child marks the child while we slept: then it must stay down.
        if not self.stop_requested.is_set() and not child.expected_exit:
            await self._spawn(child)

    # -- children ----------------------------------------------------------------------

    async def start_child(self, child: Child) -> None:
        self.children.append(child)
        await self._spawn(child)

    async def _spawn(self, child: Child) -> None:
        child.process = await asyncio.create_subprocess_exec(
            *child.argv,
            env=child.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            user=child.user,
            group=child.group,
            # A JSON log line of a long traceback can exceed asyncio's 64 KiB default.
            limit=1024 * 1024,
        )
        child.pump = asyncio.create_task(self._pump(child))
        self._write_state()

    async def stop_child(self, child: Child) -> None:
        child.expected_exit = True
        process = child.process
        if process is None or process.returncode is not None:
            if child.pump is not None and child.pump is not asyncio.current_task():
                child.pump.cancel()  # e.g. pausing before a restart
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(child.stop_signal)
        try:
            await asyncio.wait_for(process.wait(), self.settings.stop_timeout_seconds)
        except TimeoutError:
            self.say("sagabank", f"{child.name} did not stop in time; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        if child.pump is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(child.pump, 5)

    async def stop_all(self) -> None:
        """Reverse order: the worker and the console, then the services, then Temporal,
        then PostgreSQL."""
        order = ["worker", CONSOLE, *SERVICES, CODEC_SERVER, "temporal", "postgres"]
        for names in (order[:2], order[2:6], order[6:7], order[7:]):
            group = [child for child in self.children if child.name in names]
            await asyncio.gather(*(self.stop_child(child) for child in group))
        for child in self.children:
            # Belt and braces: a grandchild left in a child's process group goes too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if child.pid is not None:
                    os.killpg(child.pid, signal.SIGKILL)

    # -- state file --------------------------------------------------------------------

    def _write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "children": {child.name: child.pid for child in self.children},
            "urls": self.urls(),
            # Base URLs, for the commands that talk to this bank (`token`, `audit`, ...).
            "services": self.service_urls(),
            # Where each child serves its metrics, from the environment it was given.
            "metrics": metrics_urls(self.settings, self.service_urls(), os.environ),
        }
        self.state_file.write_text(json.dumps(state, indent=2))

    def service_urls(self) -> dict[str, str]:
        """Each service's base URL by name."""
        return {name: self.settings.service_url(name) for name in SERVICES}

    def urls(self) -> dict[str, str]:
        urls = {name: f"{self.settings.service_url(name)}/docs" for name in SERVICES}
        urls[CONSOLE] = self.settings.console_url
        urls["worker metrics"] = (
            f"http://{self.settings.host}:{self.settings.worker_metrics_port}/metrics"
        )
        if self.settings.temporal_ui_url is not None:
            urls["temporal-ui"] = self.settings.temporal_ui_url
            urls["payload codec"] = self.settings.codec_url
        return urls

    # -- steps -------------------------------------------------------------------------

    def check_ports(self) -> None:
        wanted: list[tuple[int, str]] = []
        if self.settings.embedded_postgres:
            wanted.append((self.settings.postgres_port, "postgres"))
        if self.settings.embedded_temporal:
            wanted.append((self.settings.temporal_port, "temporal"))
            wanted.append((self.settings.temporal_ui_port, "temporal-ui"))
            wanted.append((self.settings.codec_port, "codec"))
        wanted += [(self.settings.service_port(name), name) for name in SERVICES]
        wanted.append((self.settings.console_port, CONSOLE))
        wanted.append((self.settings.worker_metrics_port, "worker-metrics"))
        for port, owner in wanted:
            if not port_is_free(self.settings.host, port):
                variable = f"SAGABANK_{owner.upper().replace('-', '_')}_PORT"
                raise LaunchError(
                    f"port {port} ({owner}) is already in use on {self.settings.host}. "
                    f"Stop what holds it (`sagabank down` if it is an earlier bank) "
                    f"or choose another port with {variable}."
                )

    def check_not_running(self) -> None:
        if not self.state_file.exists():
            return
        with contextlib.suppress(ValueError, KeyError, OSError):
            pid = int(json.loads(self.state_file.read_text())["pid"])
            if pid != os.getpid() and _pid_alive(pid):
                raise LaunchError(
                    f"a bank is already running from {self.state_dir} (pid {pid}); "
                    "`sagabank down` stops it"
                )

    async def start_postgres(self) -> str:
        """Start the embedded server (or use the external one); returns the server URL."""
        if not self.settings.embedded_postgres:
            self.say("sagabank", "using the external PostgreSQL from SAGABANK_DATABASE_URL")
            return self.settings.postgres_server_url()
        server = EmbeddedPostgres(
            data_dir=self.state_dir / "postgres",
            port=self.settings.postgres_port,
            host=self.settings.host,
        )
        await asyncio.to_thread(server.prepare)
        child = Child(
            name="postgres",
            argv=server.command(),
            env=dict(os.environ),
            stop_signal=signal.SIGINT,
            user=server.uid,
            group=server.gid,
        )
        await self.start_child(child)
        await self._wait_for("postgres", lambda: asyncio.to_thread(server.is_accepting))
        return server.admin_url

    async def prepare_databases(self, server_url: str) -> dict[str, str]:
        """Per service: its database, owned by its owner role and migrated as it; returns
        the URLs the services connect with, as their application roles."""
        urls: dict[str, str] = {}
        for service in SERVICES:
            database = SERVICE_DATABASES[service]
            owner, application = owner_role(service), application_role(service)
            # Generated once, like every dev secret: the embedded server trusts local
            # connections and ignores them, an external one needs them.
            passwords = {
                role: dev_secret(self.state_dir, f"database-password-{role}")
                for role in (owner, application)
            }
            for role, password in passwords.items():
                await ensure_login_role(server_url, role, password=password)
            await ensure_database(server_url, database, owner=owner)
            await adopt_database(server_url, database, owner)
            database_url = with_database(server_url, database)
            await asyncio.to_thread(
                upgrade_to_head,
                migrations_path(service),
                with_user(database_url, owner, passwords[owner]),
                application_role=application,
            )
            urls[service] = with_user(database_url, application, passwords[application])
            self.say("sagabank", f"database {database}: migrations at head, as {owner}")
        return urls

    async def start_temporal(self) -> None:
        from temporalio.client import Client

        settings = self.settings
        if settings.embedded_temporal:
            server = TemporalDevServer(
                db_path=self.state_dir / "temporal.db",
                host=settings.host,
                port=settings.temporal_port,
                ui_port=settings.temporal_ui_port,
                namespace=settings.temporal_namespace,
                ui_codec_endpoint=settings.codec_url,
            )
            await self.start_child(
                Child(name="temporal", argv=server.command(), env=dict(os.environ))
            )

        async def connected() -> bool:
            try:
                client = await asyncio.wait_for(Client.connect(**self.temporal_connection()), 5)
            except Exception:
                return False
            if not settings.embedded_temporal:
                added = await ensure_search_attributes(client, settings.temporal_namespace)
                if added:
                    self.say("sagabank", f"registered search attributes: {', '.join(added)}")
            return True

        await self._wait_for("temporal", connected)

    def worker_client_secret(self) -> str:
        return dev_secret(self.state_dir, "worker-client-secret")

    def bootstrap_clients(self) -> str:
        """ACCOUNTS_BOOTSTRAP_CLIENTS: the worker's client, the operator's, and the public
        ones of the console, the docs pages and the CLI, as JSON."""
        clients = [
            {
                "client_id": WORKER_CLIENT_ID,
                "client_secret": self.worker_client_secret(),
                "kind": "service",
                "scopes": sorted(WORKER_SCOPES),
            },
            {
                "client_id": self.settings.operator_client_id,
                "client_secret": self.settings.operator_client_secret.get_secret_value(),
                "kind": "operator",
                "scopes": sorted(OPERATOR_SCOPES),
            },
            {
                "client_id": CONSOLE_CLIENT_ID,
                "kind": "public",
                "scopes": sorted(OPERATOR_SCOPES),
                "redirect_uris": [self.settings.console_redirect_uri],
                # Its sign-in page asks for a TOTP code and its tokens are staff's.
                "signs_in": "staff",
            },
            {
                # Swagger UI's Authorize on each service's /docs (kit.openapi): customers
                # sign in with the code flow and PKCE, back to the page they started from.
                "client_id": DOCS_CLIENT_ID,
                "kind": "public",
                "scopes": sorted(CUSTOMER_SCOPES),
                "redirect_uris": [
                    f"{url}{DOCS_REDIRECT_PATH}" for url in self.service_urls().values()
                ],
            },
            {
                # `sagabank login`: the browser comes back to a port the CLI listens on.
                "client_id": CLI_CLIENT_ID,
                "kind": "public",
                "scopes": sorted(CUSTOMER_SCOPES),
                "redirect_uris": [CLI_REDIRECT_URI],
                "signs_in": "customers",
            },
        ]
        return json.dumps(clients)

    def docs_origins(self) -> list[str]:
        """The origins of the other services' /docs, whose Authorize asks the issuer for
        tokens from the browser (CORS)."""
        return [url for name, url in self.service_urls().items() if name != "accounts"]

    @property
    def jwks_url(self) -> str:
        return f"{self.settings.service_url('accounts')}{JWKS_PATH}"

    def temporal_connection(self) -> "ClientConnectConfig":
        """Where the launcher's own Temporal client connects: the dev server it started, in
        clear; or the external cluster, with the standard TEMPORAL_* TLS and API key."""
        from kit.temporal_connection import temporal_connect_config  # temporalio: lazily

        if self.settings.embedded_temporal:
            return {
                "target_host": self.settings.temporal_target,
                "namespace": self.settings.temporal_namespace,
            }
        return temporal_connect_config(
            address=self.settings.temporal_target, namespace=self.settings.temporal_namespace
        )

    def _environ_for_temporal(self) -> dict[str, str]:
        """The launcher's environment for a Temporal client it starts. The TEMPORAL_*
        variables describe another cluster (a shell set up for Temporal Cloud, say): the
        dev server the launcher started takes neither its API key nor its certificates."""
        env = dict(os.environ)
        if self.settings.embedded_temporal:
            for name in [name for name in env if name.startswith(TEMPORAL_VARIABLE_PREFIX)]:
                del env[name]
            # Else the SDK reads the user's default profile file (~/.config/temporalio/),
            # which may hold a Cloud API key: this file names the dev server instead.
            env["TEMPORAL_CONFIG_FILE"] = str(self._dev_server_profile())
        return env

    def _dev_server_profile(self) -> Path:
        """A Temporal client config file whose default profile is the dev server (what
        `temporal --config-file` reads too), written once per start."""
        path = self.state_dir / DEV_SERVER_PROFILE_NAME
        path.write_text(
            "[profile.default]\n"
            f'address = "{self.settings.temporal_target}"\n'
            f'namespace = "{self.settings.temporal_namespace}"\n',
            encoding="utf-8",
        )
        return path

    def _service_env(self, service: str, database_url: str) -> dict[str, str]:
        """The environment of a service: the launcher's own (OTEL_* included) plus its
        settings for this bank."""
        prefix = service.upper()
        env = self._environ_for_temporal()
        name_component(env, service)
        env[f"{prefix}_DATABASE_URL"] = database_url
        # Every service verifies tokens against the issuer's published keys.
        env[f"{prefix}_AUTH_JWKS_URL"] = self.jwks_url
        # Each service accepts only tokens addressed to it (the issuer names the services
        # a token's scopes are for).
        env.setdefault(f"{prefix}_AUTH_AUDIENCE", audience_of_service(service))
        # Each service keys its own audit chain and checkpoints its head outside its
        # database; values from the environment (the operator's) win over the dev ones.
        env.setdefault(
            f"{prefix}_AUDIT_CHAIN_KEY", dev_secret(self.state_dir, f"{service}-audit-chain-key")
        )
        env.setdefault(
            f"{prefix}_AUDIT_CHECKPOINT_DIR", str(self.state_dir / CHECKPOINTS_DIR_NAME / service)
        )
        if service == "accounts":
            # The dev signing key, generated once; a directory from the environment (the
            # operator's own keys) wins.
            env.setdefault("ACCOUNTS_SIGNING_KEYS_DIR", str(dev_signing_keys_dir(self.state_dir)))
            env["ACCOUNTS_BOOTSTRAP_CLIENTS"] = self.bootstrap_clients()
            env.setdefault("ACCOUNTS_CORS_ALLOW_ORIGINS", json.dumps(self.docs_origins()))
        if service == "transactions":
            env["TRANSACTIONS_ACCOUNTS_URL"] = self.settings.service_url("accounts")
            env["TRANSACTIONS_TEMPORAL_ADDRESS"] = self.settings.temporal_target
            env["TRANSACTIONS_TEMPORAL_NAMESPACE"] = self.settings.temporal_namespace
            env["TRANSACTIONS_PAYLOAD_KEYS"] = self.payload_keys()
            # Seals the callback clients' signing secrets at rest; a ring (or the older
            # single key) from the environment wins over the generated dev key, which is
            # the one the single-key setting used, so earlier sealed values still open.
            if not {"TRANSACTIONS_SECRETS_KEYS", "TRANSACTIONS_CALLBACK_SECRETS_KEY"} & set(env):
                env["TRANSACTIONS_SECRETS_KEYS"] = dev_key_ring(
                    self.state_dir, "callback-secrets-key"
                )
        if service == "accounts":
            # Seals the staff's TOTP secrets at rest.
            env.setdefault(
                "ACCOUNTS_SECRETS_KEYS", dev_key_ring(self.state_dir, "staff-secrets-key")
            )
        if service == "notifications":
            env.setdefault(
                "NOTIFICATIONS_SECRETS_KEYS",
                dev_key_ring(self.state_dir, "notifications-secrets-key"),
            )
        self._log_format(env, prefix)
        return env

    def _log_format(self, env: dict[str, str], prefix: str) -> None:
        # Children write to a pipe, so they would choose JSON; on a terminal the person
        # reading wants the console format (an explicit SAGABANK_LOG_JSON wins).
        json_logs = self.settings.log_json
        if json_logs is None:
            json_logs = not self.out.isatty()
        env.setdefault(f"{prefix}_LOG_JSON", "true" if json_logs else "false")

    async def start_services(self, database_urls: dict[str, str]) -> None:
        for service in SERVICES:
            argv = [
                sys.executable,
                "-m",
                "sagabank",
                "serve",
                service,
                "--host",
                self.settings.host,
                "--port",
                str(self.settings.service_port(service)),
            ]
            env = self._service_env(service, database_urls[service])
            await self.start_child(Child(name=service, argv=argv, env=env, restartable=True))

    async def start_console(self) -> None:
        argv = [sys.executable, "-m", "sagabank", "serve", CONSOLE, "--host", self.settings.host]
        argv += ["--port", str(self.settings.console_port)]
        await self.start_child(
            Child(name=CONSOLE, argv=argv, env=self.console_env(), restartable=True)
        )

    def console_env(self) -> dict[str, str]:
        """The console's environment: the launcher's own plus the bank's URLs. A restart
        signs every member out (its sessions live in its memory: decision 0038)."""
        env = dict(os.environ)
        name_component(env, CONSOLE)
        env["CONSOLE_PUBLIC_URL"] = self.settings.console_url
        for service in SERVICES:
            env[f"CONSOLE_{service.upper()}_URL"] = self.settings.service_url(service)
        # On one machine the browser and the console reach the issuer at the same address.
        env["CONSOLE_ISSUER_URL"] = self.settings.service_url("accounts")
        env["CONSOLE_ISSUER_PUBLIC_URL"] = self.settings.service_url("accounts")
        env["CONSOLE_CLIENT_ID"] = CONSOLE_CLIENT_ID
        env["CONSOLE_REDIRECT_URI"] = self.settings.console_redirect_uri
        if self.settings.temporal_ui_url is not None:
            env.setdefault("CONSOLE_TEMPORAL_UI_URL", self.settings.temporal_ui_url)
        env["CONSOLE_TEMPORAL_NAMESPACE"] = self.settings.temporal_namespace
        self._log_format(env, "CONSOLE")
        return env

    async def start_worker(self) -> None:
        argv = [sys.executable, "-m", "sagabank", "worker"]
        await self.start_child(
            Child(name="worker", argv=argv, env=self.worker_env(), restartable=True)
        )

    def worker_env(self) -> dict[str, str]:
        """The worker's environment: the launcher's own (OTEL_* included) plus its settings."""
        env = self._environ_for_temporal()
        name_component(env, "worker")
        env["WORKER_TEMPORAL_ADDRESS"] = self.settings.temporal_target
        env["WORKER_TEMPORAL_NAMESPACE"] = self.settings.temporal_namespace
        env["WORKER_PAYLOAD_KEYS"] = self.payload_keys()
        for service in SERVICES:
            env[f"WORKER_{service.upper()}_URL"] = self.settings.service_url(service)
        env["WORKER_AUTH_TOKEN_URL"] = f"{self.settings.service_url('accounts')}{TOKEN_PATH}"
        env["WORKER_AUTH_CLIENT_ID"] = WORKER_CLIENT_ID
        env["WORKER_AUTH_CLIENT_SECRET"] = self.worker_client_secret()
        env["WORKER_METRICS_PORT"] = str(self.settings.worker_metrics_port)
        self._log_format(env, "WORKER")
        return env

    def payload_keys(self) -> str:
        """The one ring of the bank's Temporal payloads: SAGABANK_PAYLOAD_KEYS, else a dev
        key generated once (payloads sealed before a restart must still open after it)."""
        configured = self.settings.payload_keys
        if configured is not None:
            return configured.get_secret_value()
        return dev_key_ring(self.state_dir, PAYLOAD_KEY_NAME)

    async def start_codec_server(self) -> None:
        """The codec endpoint the local Temporal UI decodes payloads through (loopback)."""
        ui_url = self.settings.temporal_ui_url
        if ui_url is None:
            return  # an external Temporal's UI is configured by its operator
        argv = [sys.executable, "-m", "sagabank", "codec-server", "--host", self.settings.host]
        argv += ["--port", str(self.settings.codec_port)]
        # The browser may name the UI either way; both are this machine.
        argv += ["--ui-origin", ui_url, "--ui-origin", ui_url.replace("localhost", "127.0.0.1")]
        await self.start_child(
            Child(name=CODEC_SERVER, argv=argv, env=self.codec_env(), restartable=True)
        )

    def codec_env(self) -> dict[str, str]:
        env = dict(os.environ)
        name_component(env, CODEC_SERVER)
        env["SAGABANK_PAYLOAD_KEYS"] = self.payload_keys()
        return env

    async def wait_until_ready(self) -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(2.0)) as http:

            async def all_ready() -> bool:
                base_urls = [self.settings.service_url(service) for service in SERVICES]
                for base_url in [*base_urls, self.settings.console_url]:
                    try:
                        response = await http.get(f"{base_url}/readyz")
                    except httpx.HTTPError:
                        return False
                    if response.status_code != 200:
                        return False
                if self.settings.temporal_ui_url is not None:
                    try:
                        ui = await http.get(self.settings.temporal_ui_url)
                    except httpx.HTTPError:
                        return False
                    if ui.status_code != 200:
                        return False
                    try:
                        codec = await http.post(
                            f"{self.settings.codec_url}/decode", json={"payloads": []}
                        )
                    except httpx.HTTPError:
                        return False
                    if codec.status_code != 200:
                        return False
                return await self._worker_polling()

            await self._wait_for("the bank", all_ready)

    async def _worker_polling(self) -> bool:
        from temporalio.api.enums.v1 import TaskQueueType
        from temporalio.api.taskqueue.v1 import TaskQueue
        from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
        from temporalio.client import Client

        try:
            client = await asyncio.wait_for(Client.connect(**self.temporal_connection()), 5)
            description = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=self.settings.temporal_namespace,
                    task_queue=TaskQueue(name=TASK_QUEUE),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                )
            )
        except Exception:
            return False
        return len(description.pollers) > 0

    async def _wait_for(self, what: str, check: Callable[[], Awaitable[bool]]) -> None:
        deadline = time.monotonic() + self.settings.ready_timeout_seconds
        while True:
            if self.stop_requested.is_set():
                raise LaunchError(f"stopped while waiting for {what}")
            if self.child_died.is_set():
                raise LaunchError(f"a component exited while waiting for {what}")
            if await check():
                return
            if time.monotonic() > deadline:
                raise LaunchError(
                    f"{what} not ready after {self.settings.ready_timeout_seconds:.0f}s"
                )
            await asyncio.sleep(_POLL_INTERVAL_SECONDS)

    def print_table(self, elapsed_seconds: float) -> None:
        rows = [(name, url) for name, url in self.urls().items()]
        rows.append(("temporal", self.settings.temporal_target))
        if self.settings.embedded_postgres:
            rows.append(("postgres", self.settings.postgres_server_url()))
        rows.append(("state", str(self.state_dir)))
        # Printed on purpose: the local operator needs them, and they are dev values.
        rows.append(("operator id", self.settings.operator_client_id))
        rows.append(("operator secret", self.settings.operator_client_secret.get_secret_value()))
        width = max(len(name) for name, _ in rows)
        self.say("sagabank", f"Sagabank is ready ({elapsed_seconds:.1f}s). Ctrl-C stops it.")
        for name, url in rows:
            self.say("sagabank", f"  {name:<{width}}  {url}")
        self.say("sagabank", f"  an operator token: TOKEN=$({_command()} token --operator)")
        self.say(
            "sagabank",
            f"  the first console user: {_command()} staff add --email you@example.com "
            "--role admin",
        )

    # -- the whole run -----------------------------------------------------------------

    async def run(self) -> int:
        started = time.monotonic()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.check_not_running()
            self.check_ports()
        except LaunchError as error:
            self.say("sagabank", f"error: {error}")
            return 1
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.stop_requested.set)
        self._write_state()
        status = 0
        try:
            server_url = await self.start_postgres()
            database_urls = await self.prepare_databases(server_url)
            await self.start_codec_server()
            await self.start_temporal()
            await self.start_services(database_urls)
            await self.start_console()
            await self.start_worker()
            await self.wait_until_ready()
            self.print_table(time.monotonic() - started)
            stop = asyncio.create_task(self.stop_requested.wait())
            died = asyncio.create_task(self.child_died.wait())
            await asyncio.wait({stop, died}, return_when=asyncio.FIRST_COMPLETED)
            for task in (stop, died):
                task.cancel()
            if self.child_died.is_set() and not self.stop_requested.is_set():
                status = 1
        except LaunchError as error:
            self.say("sagabank", f"error: {error}")
            status = 0 if self.stop_requested.is_set() else 1
        except Exception as error:
            self.say("sagabank", f"error: {type(error).__name__}: {error}")
            status = 1
        finally:
            self.say("sagabank", "stopping")
            await self.stop_all()
            with contextlib.suppress(FileNotFoundError):
                self.state_file.unlink()
            self.say("sagabank", "stopped")
        return status


def name_component(env: dict[str, str], component: str) -> None:
    """Suffix the operator's service name (OTEL_SERVICE_NAME, or `service.name` among
    OTEL_RESOURCE_ATTRIBUTES) with the component's: one environment feeds five processes,
    and a trace whose spans all carried one name could not tell them apart. Unnamed, each
    component names itself `sagabank-<component>` (kit.tracing)."""
    named = env.get("OTEL_SERVICE_NAME", "").strip()
    if not named:
        for pair in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
            key, _, value = pair.partition("=")
            if key.strip() == "service.name" and value.strip():
                named = value.strip()
    if named:
        env["OTEL_SERVICE_NAME"] = f"{named}-{component}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_state(state_dir: Path) -> dict[str, object] | None:
    path = state_dir.resolve() / STATE_FILE_NAME
    try:
        state: dict[str, object] = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return state


def down(state_dir: Path, *, timeout_seconds: float = 30.0) -> str:
    """Stop a bank started from `state_dir`: ask the launcher, or clean up after it."""
    state = read_state(state_dir)
    if state is None:
        return "no bank is running from this state directory"
    pid = state.get("pid")
    assert isinstance(pid, int), "state file without a launcher pid"
    if _pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_seconds
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(_POLL_INTERVAL_SECONDS)
        if not _pid_alive(pid):
            return f"stopped the bank (launcher pid {pid})"
    # The launcher is gone (killed) or stuck: stop what it left behind.
    children = state.get("children")
    stopped: list[str] = []
    if isinstance(children, dict):
        for name, child_pid in children.items():
            if isinstance(child_pid, int) and _pid_alive(child_pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child_pid, signal.SIGKILL)
                stopped.append(str(name))
    with contextlib.suppress(FileNotFoundError):
        (state_dir.resolve() / STATE_FILE_NAME).unlink()
    return "killed leftovers: " + ", ".join(stopped) if stopped else "nothing was left running"


def _command() -> str:
    """How to call `sagabank` from here: the virtualenv's script, as a newcomer who ran
    `make run` has it (`.venv/bin/sagabank`), or plain `sagabank` where it is not found."""
    script = Path(sys.executable).parent / "sagabank"
    if not script.is_file():
        return "sagabank"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)
