"""The saga worker: runs the transfer and reversal sagas and their activities on one task queue."""

import asyncio
import signal
import time
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import NoReturn

import httpx
import structlog
import uvloop
from temporalio.client import Client
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.envconfig import ClientConnectConfig
from temporalio.worker import Worker, WorkerDeploymentConfig
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from kit.http import create_client
from kit.logging import configure_logging
from kit.payloads import data_converter
from kit.process import exit_without_finalising
from kit.temporal_connection import TemporalSettingsError, described, temporal_connect_config
from kit.tokens import ClientCredentialsAuth
from kit.tracing import configure_tracing, shutdown_tracing
from workflows.activities import TransferActivities
from workflows.config import Settings
from workflows.reversal import ReversalWorkflow
from workflows.standing_order import StandingOrderOccurrenceWorkflow
from workflows.standing_order_activities import StandingOrderActivities
from workflows.transfer import TransferWorkflow
from workflows.worker_metrics import (
    StepMetricsInterceptor,
    sdk_runtime_with_metrics,
    served_metrics,
)

log = structlog.get_logger()

# The sandbox still forbids what would break determinism (clocks, randomness, I/O) inside
# workflow code; it just no longer re-imports the modules behind the workflow for each new
# one, about a fifth of this worker's CPU per transfer (benchmarks/saga.py). Safe because
# neither the workflow module nor anything it imports keeps mutable module-level state.
# The replay tests still run the committed histories in the full sandbox.
# OpenTelemetry is named although everything passes through: the tracing interceptor's
# workflow side needs the one, process-wide opentelemetry (its context and provider).
WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "opentelemetry"
    ).with_passthrough_all_modules()
)


# Between two token requests while the issuer does not answer yet.
_CREDENTIALS_POLL_SECONDS = 1.0


class CredentialsRefused(Exception):
    """The issuer refused the worker's client id or secret: a configuration error."""


_VERSIONING_BEHAVIORS = {
    "auto-upgrade": VersioningBehavior.AUTO_UPGRADE,
    "pinned": VersioningBehavior.PINNED,
}


def temporal_connection(settings: Settings) -> ClientConnectConfig:
    """Where the worker's client connects: the TEMPORAL_* standard settings, the worker's
    own address and namespace over them (kit.temporal_connection)."""
    return temporal_connect_config(
        address=settings.temporal_address, namespace=settings.temporal_namespace
    )


def deployment_config(settings: Settings) -> WorkerDeploymentConfig:
    """The deployment version the worker declares; routing by it only when versioning is on
    (a behaviour is then required: the SDK refuses one without versioning)."""
    behavior = (
        _VERSIONING_BEHAVIORS[settings.versioning_behavior]
        if settings.versioning_enabled
        else VersioningBehavior.UNSPECIFIED
    )
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(settings.deployment_name, settings.build_id),
        use_worker_versioning=settings.versioning_enabled,
        default_versioning_behavior=behavior,
    )


def create_auth(settings: Settings) -> ClientCredentialsAuth:
    return ClientCredentialsAuth(
        str(settings.auth_token_url),
        client_id=settings.auth_client_id,
        client_secret=settings.auth_client_secret.get_secret_value(),
    )


def create_activities(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> TransferActivities:
    """The activities with one client per service; the caller closes them (`aclose`).

    The four clients share one auth, hence one cached token, refreshed for all of them.
    `transport` is for tests.
    """
    auth = create_auth(settings)

    def client(url: object) -> httpx.AsyncClient:
        http = create_client(
            str(url),
            timeout_seconds=settings.http_timeout_seconds,
            connections_max=settings.http_requests_in_flight_max,
            transport=transport,
        )
        http.auth = auth
        return http

    return TransferActivities(
        accounts=client(settings.accounts_url),
        transactions=client(settings.transactions_url),
        fraud=client(settings.fraud_url),
        notifications=client(settings.notifications_url),
        requests_in_flight_max=settings.http_requests_in_flight_max,
    )


async def check_credentials(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> None:
    """Ask the issuer for a token once it answers; raise CredentialsRefused if it says no.

    An issuer still unreachable after `auth_check_timeout_seconds` is only logged: the
    activities retry on their own, and a worker that waits forever helps nobody.
    """
    deadline = time.monotonic() + settings.auth_check_timeout_seconds
    url = str(settings.auth_token_url)
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(settings.http_timeout_seconds),
        follow_redirects=False,
        transport=transport,
    ) as http:
        while True:
            try:
                response = await http.post(
                    url,
                    data={"grant_type": "client_credentials"},
                    auth=httpx.BasicAuth(
                        settings.auth_client_id, settings.auth_client_secret.get_secret_value()
                    ),
                    headers={"Accept": "application/json"},
                )
            except httpx.HTTPError as error:
                problem = type(error).__name__
            else:
                if response.status_code == httpx.codes.OK:
                    log.info("worker.credentials_accepted", client_id=settings.auth_client_id)
                    return
                if 400 <= response.status_code < 500 and response.status_code != 429:
                    raise CredentialsRefused(
                        f"the issuer at {url} refused client {settings.auth_client_id!r} "
                        f"with {response.status_code}: check WORKER_AUTH_CLIENT_ID and "
                        "WORKER_AUTH_CLIENT_SECRET against the issuer's clients"
                    )
                problem = f"HTTP {response.status_code}"
            if time.monotonic() >= deadline:
                log.warning("worker.credentials_unchecked", token_url=url, problem=problem)
                return
            await asyncio.sleep(_CREDENTIALS_POLL_SECONDS)


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Poll the task queue until `stop` is set (forever without one), then drain and return.

    Raises CredentialsRefused, before polling, if the issuer refuses the worker's client.
    """
    stop = stop or asyncio.Event()
    await check_credentials(settings)
    runtime, sdk_metrics_url = (
        sdk_runtime_with_metrics() if settings.metrics_enabled else (None, None)
    )
    connection = temporal_connection(settings)
    client = await Client.connect(
        **connection,
        data_converter=data_converter(settings.payload_key_ring()),
        runtime=runtime,
        # The worker and its client: RunWorkflow and every activity join the trace the
        # transactions service started (it travels in the workflow's headers).
        interceptors=[TracingInterceptor()],
    )
    async with AsyncExitStack() as resources:
        if sdk_metrics_url is not None:
            resources.enter_context(
                served_metrics(settings.metrics_port, sdk_metrics_url=sdk_metrics_url)
            )
        activities = create_activities(settings)
        resources.push_async_callback(activities.aclose)
        worker = Worker(
            client,
            task_queue=settings.task_queue,
            workflows=[TransferWorkflow, ReversalWorkflow, StandingOrderOccurrenceWorkflow],
            activities=[
                *activities.all(),
                *StandingOrderActivities(transfers=activities, client=client).all(),
            ],
            workflow_runner=WORKFLOW_RUNNER,
            max_concurrent_activities=settings.activity_concurrency_max,
            max_concurrent_workflow_tasks=settings.workflow_task_concurrency_max,
            graceful_shutdown_timeout=timedelta(seconds=settings.shutdown_grace_seconds),
            interceptors=[StepMetricsInterceptor()],
            deployment_config=deployment_config(settings),
        )
        async with worker:
            log.info(
                "worker.started",
                event_loop=type(asyncio.get_running_loop()).__module__.partition(".")[0],
                task_queue=settings.task_queue,
                temporal=described(connection),
                deployment_version=f"{settings.deployment_name}.{settings.build_id}",
                versioning_enabled=settings.versioning_enabled,
            )
            await stop.wait()
            log.info("worker.stopping")
    log.info("worker.stopped")


async def _run_until_signalled(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    await run_worker(settings, stop=stop)


def main() -> NoReturn:
    """Entry point: settings from the WORKER_* environment, runs until SIGINT or SIGTERM,
    then exits 0 (3 when the issuer refuses the worker's credentials, 2 when its Temporal
    connection settings cannot work)."""
    # The exit skips interpreter finalisation, which the Temporal client's native threads can
    # crash (SIGABRT) after a clean shutdown: kit.process.
    exit_without_finalising(_run)


def _run() -> int:
    settings = Settings()  # the service URLs and the credentials come from the environment
    configure_logging(service="worker", level=settings.log_level, json=settings.log_json)
    configure_tracing("worker")
    try:
        # uvloop, as the services run under uvicorn: the activities' HTTP calls cost about
        # a tenth less CPU on it than on asyncio's own loop (benchmarks/README.md, cut B).
        uvloop.run(_run_until_signalled(settings))
    except CredentialsRefused as error:
        log.error("worker.credentials_refused", error=str(error))
        return 3
    except TemporalSettingsError as error:
        log.error("worker.temporal_settings_invalid", error=str(error))
        return 2
    finally:
        # The exit below skips atexit, where the provider would flush its last spans.
        shutdown_tracing()
    return 0


if __name__ == "__main__":
    main()
