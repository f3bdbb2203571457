"""The worker process: its settings, `run_worker` on the real dev server, and `main()`."""

import asyncio
import os
import signal
import sys
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from contracts.transfers import QUERY_STATUS, TASK_QUEUE, TransferStatus
from workflows.config import Settings
from workflows.tests.saga import (
    POLL_INTERVAL_SECONDS,
    POLLS_MAX,
    WAIT_SECONDS_MAX,
    new_transfer,
    start_transfer,
)
from workflows.worker import run_worker

# Nothing listens on port 1: every call fails fast with a refused connection.
UNREACHABLE = "http://127.0.0.1:1"
SERVICE_URLS = {
    "WORKER_ACCOUNTS_URL": UNREACHABLE,
    "WORKER_TRANSACTIONS_URL": UNREACHABLE,
    "WORKER_FRAUD_URL": UNREACHABLE,
    "WORKER_NOTIFICATIONS_URL": UNREACHABLE,
}


def settings_for(env: WorkflowEnvironment, task_queue: str) -> Settings:
    return Settings(
        temporal_address=env.client.service_client.config.target_host,
        temporal_namespace=env.client.namespace,
        task_queue=task_queue,
        accounts_url=UNREACHABLE,
        transactions_url=UNREACHABLE,
        fraud_url=UNREACHABLE,
        notifications_url=UNREACHABLE,
        log_json=True,
    )


async def wait_for_failing_attempt(handle: WorkflowHandle[Any, Any], activity_type: str) -> str:
    """The last failure of `activity_type` once it has failed at least once (bounded wait)."""
    for _ in range(POLLS_MAX):
        description = await handle.describe()
        for pending in description.raw_description.pending_activities:
            if pending.activity_type.name == activity_type and pending.HasField("last_failure"):
                return str(pending.last_failure.message)
        await asyncio.sleep(POLL_INTERVAL_SECONDS)
    raise AssertionError(f"{activity_type} never failed")


class TestSettings:
    def test_valid(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name, value in SERVICE_URLS.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("WORKER_TEMPORAL_ADDRESS", "temporal:7233")
        monkeypatch.setenv("WORKER_ACTIVITY_CONCURRENCY_MAX", "8")
        settings = Settings()
        assert settings.temporal_address == "temporal:7233"
        assert settings.temporal_namespace == "default"
        assert settings.task_queue == TASK_QUEUE
        assert str(settings.accounts_url).startswith(UNREACHABLE)
        assert settings.activity_concurrency_max == 8

    def test_service_urls_are_required(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in SERVICE_URLS:
            monkeypatch.delenv(name, raising=False)
        with pytest.raises(ValidationError) as raised:
            Settings()
        missing = {error["loc"][0] for error in raised.value.errors()}
        assert missing == {"accounts_url", "transactions_url", "fraud_url", "notifications_url"}

    def test_concurrency_is_bounded(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name, value in SERVICE_URLS.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("WORKER_ACTIVITY_CONCURRENCY_MAX", "100000")
        with pytest.raises(ValidationError):
            Settings()

    def test_http_timeout_stays_below_the_activity_timeout(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name, value in SERVICE_URLS.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("WORKER_HTTP_TIMEOUT_SECONDS", "30")
        with pytest.raises(ValidationError):
            Settings()


class TestRunWorker:
    async def test_runs_the_saga_until_stopped(
        self, temporal_dev_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        stop = asyncio.Event()
        worker = asyncio.create_task(
            run_worker(settings_for(temporal_dev_env, task_queue), stop=stop)
        )
        handle = await start_transfer(temporal_dev_env, task_queue, new_transfer())
        try:
            # The worker runs the workflow (it answers queries) with the real activities,
            # whose HTTP calls fail retryably while accounts is unreachable.
            failure = await wait_for_failing_attempt(handle, "validate_transfer")
            assert "ConnectError" in failure
            status = await handle.query(QUERY_STATUS, result_type=TransferStatus)
            assert status is TransferStatus.pending
        finally:
            await handle.terminate("test over")
            stop.set()
            await asyncio.wait_for(worker, WAIT_SECONDS_MAX)
        assert worker.exception() is None


class TestMain:
    async def test_stops_gracefully_on_sigterm(
        self, temporal_dev_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        environment = {
            **os.environ,
            **SERVICE_URLS,
            "WORKER_TEMPORAL_ADDRESS": temporal_dev_env.client.service_client.config.target_host,
            "WORKER_TASK_QUEUE": task_queue,
            "WORKER_LOG_JSON": "true",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "workflows.worker",
            env=environment,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stderr is not None
        try:
            async with asyncio.timeout(WAIT_SECONDS_MAX * 3):
                while b"worker.started" not in (line := await process.stderr.readline()):
                    assert line, "the worker exited before it started"
            process.send_signal(signal.SIGTERM)
            remaining = await asyncio.wait_for(process.stderr.read(), WAIT_SECONDS_MAX)
            return_code = await asyncio.wait_for(process.wait(), WAIT_SECONDS_MAX)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert return_code == 0, remaining.decode()
        assert b"worker.stopped" in remaining
