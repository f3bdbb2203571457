"""The saga worker: runs TransferWorkflow and its activities on the transfers task queue."""

import asyncio
import signal
from contextlib import AsyncExitStack
from datetime import timedelta

import httpx
import structlog
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from kit.http import create_client
from kit.logging import configure_logging
from workflows.activities import TransferActivities
from workflows.config import Settings
from workflows.transfer import TransferWorkflow

log = structlog.get_logger()

# The sandbox still forbids what would break determinism (clocks, randomness, I/O) inside
# workflow code; it just no longer re-imports the modules behind the workflow for each new
# one, about a fifth of this worker's CPU per transfer (benchmarks/saga.py). Safe because
# neither the workflow module nor anything it imports keeps mutable module-level state.
# The replay tests still run the committed histories in the full sandbox.
WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_all_modules()
)


def create_activities(settings: Settings) -> TransferActivities:
    """The activities with one client per service; the caller closes them (`aclose`)."""

    def client(url: object) -> httpx.AsyncClient:
        return create_client(
            str(url),
            timeout_seconds=settings.http_timeout_seconds,
            connections_max=settings.http_requests_in_flight_max,
        )

    return TransferActivities(
        accounts=client(settings.accounts_url),
        transactions=client(settings.transactions_url),
        fraud=client(settings.fraud_url),
        notifications=client(settings.notifications_url),
        requests_in_flight_max=settings.http_requests_in_flight_max,
    )


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Poll the task queue until `stop` is set (forever without one), then drain and return."""
    stop = stop or asyncio.Event()
    client = await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
    )
    async with AsyncExitStack() as resources:
        activities = create_activities(settings)
        resources.push_async_callback(activities.aclose)
        worker = Worker(
            client,
            task_queue=settings.task_queue,
            workflows=[TransferWorkflow],
            activities=activities.all(),
            workflow_runner=WORKFLOW_RUNNER,
            max_concurrent_activities=settings.activity_concurrency_max,
            max_concurrent_workflow_tasks=settings.workflow_task_concurrency_max,
            graceful_shutdown_timeout=timedelta(seconds=settings.shutdown_grace_seconds),
        )
        async with worker:
            log.info(
                "worker.started",
                task_queue=settings.task_queue,
                namespace=settings.temporal_namespace,
                temporal_address=settings.temporal_address,
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


def main() -> None:
    """Entry point: settings from the WORKER_* environment, runs until SIGINT or SIGTERM."""
    settings = Settings()  # the service URLs come from the environment
    configure_logging(service="worker", level=settings.log_level, json=settings.log_json)
    asyncio.run(_run_until_signalled(settings))


if __name__ == "__main__":
    main()
