"""The worker process: its settings, `run_worker` on the real dev server, and `main()`."""

import asyncio
import json
import os
import signal
import socket
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    SetWorkerDeploymentCurrentVersionRequest,
)
from temporalio.client import WorkflowHandle
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.service import RPCError, RPCStatusCode
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
from workflows.tests.worker_process import worker_process
from workflows.worker import deployment_config, run_worker, temporal_connection

# Nothing listens on port 1: every call fails fast with a refused connection.
UNREACHABLE = "http://127.0.0.1:1"
SERVICE_URLS = {
    "WORKER_ACCOUNTS_URL": UNREACHABLE,
    "WORKER_TRANSACTIONS_URL": UNREACHABLE,
    "WORKER_FRAUD_URL": UNREACHABLE,
    "WORKER_NOTIFICATIONS_URL": UNREACHABLE,
}
CREDENTIALS = {
    "WORKER_AUTH_TOKEN_URL": f"{UNREACHABLE}/v1/oauth/token",
    "WORKER_AUTH_CLIENT_SECRET": "worker-test-secret",
    # Nobody issues tokens here: start at once instead of waiting for an issuer.
    "WORKER_AUTH_CHECK_TIMEOUT_SECONDS": "0",
}
REQUIRED = {**SERVICE_URLS, **CREDENTIALS}
# No Temporal profile file: the SDK would otherwise read the user's default one.
NO_PROFILE_FILE = os.path.join(os.path.dirname(__file__), "no-such-temporal.toml")


def settings_for(env: WorkflowEnvironment, task_queue: str) -> Settings:
    return Settings(
        temporal_address=env.client.service_client.config.target_host,
        temporal_namespace=env.client.namespace,
        task_queue=task_queue,
        accounts_url=UNREACHABLE,
        transactions_url=UNREACHABLE,
        fraud_url=UNREACHABLE,
        notifications_url=UNREACHABLE,
        auth_token_url=CREDENTIALS["WORKER_AUTH_TOKEN_URL"],
        auth_client_secret=CREDENTIALS["WORKER_AUTH_CLIENT_SECRET"],
        auth_check_timeout_seconds=0,
        log_json=True,
        # The default port (9464) is the deployed worker's; a test that scrapes picks one.
        metrics_enabled=False,
    )


async def wait_for_failing_attempt(handle: WorkflowHandle[Any, Any], activity_type: str) -> str:
    """The failure of `activity_type`, a local activity, once an attempt has failed and is
    waiting to be retried: the history's marker of that attempt carries it (bounded wait)."""
    for _ in range(POLLS_MAX):
        history = await handle.fetch_history()
        for event in history.events:
            if event.event_type != EventType.EVENT_TYPE_MARKER_RECORDED:
                continue
            marker = event.marker_recorded_event_attributes
            if "data" not in marker.details:  # a patch marker, not a local activity's
                continue
            data = json.loads(marker.details["data"].payloads[0].data)
            if data["activity_type"] == activity_type and marker.HasField("failure"):
                return str(marker.failure.message)
        await asyncio.sleep(POLL_INTERVAL_SECONDS)
    raise AssertionError(f"{activity_type} never failed")


class TestSettings:
    def test_valid(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name, value in REQUIRED.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("WORKER_TEMPORAL_ADDRESS", "temporal:7233")
        monkeypatch.setenv("WORKER_ACTIVITY_CONCURRENCY_MAX", "8")
        settings = Settings()
        assert settings.temporal_address == "temporal:7233"
        assert temporal_connection(settings)["namespace"] == "default"
        assert settings.task_queue == TASK_QUEUE
        assert str(settings.accounts_url).startswith(UNREACHABLE)
        assert settings.activity_concurrency_max == 8
        assert settings.auth_client_id == "sagabank-worker"
        # The secret never shows in a repr (logs, tracebacks).
        assert "worker-test-secret" not in repr(settings)

    def test_temporal_cloud_through_the_standard_variables(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name, value in REQUIRED.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("TEMPORAL_CONFIG_FILE", NO_PROFILE_FILE)
        monkeypatch.setenv("TEMPORAL_ADDRESS", "sagabank.a1b2c.tmprl.cloud:7233")
        monkeypatch.setenv("TEMPORAL_NAMESPACE", "sagabank.a1b2c")
        monkeypatch.setenv("TEMPORAL_API_KEY", "worker-api-key")

        connection = temporal_connection(Settings())

        assert connection["target_host"] == "sagabank.a1b2c.tmprl.cloud:7233"
        assert connection["namespace"] == "sagabank.a1b2c"
        assert connection["api_key"] == "worker-api-key"
        assert connection["tls"] is True

    def test_worker_address_wins_over_the_standard_variable(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name, value in REQUIRED.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("TEMPORAL_CONFIG_FILE", NO_PROFILE_FILE)
        monkeypatch.setenv("TEMPORAL_ADDRESS", "elsewhere:7233")
        monkeypatch.setenv("WORKER_TEMPORAL_ADDRESS", "temporal:7233")

        assert temporal_connection(Settings())["target_host"] == "temporal:7233"

    def test_declares_its_deployment_version(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name, value in REQUIRED.items():
            monkeypatch.setenv(name, value)

        config = deployment_config(Settings())

        assert config.version == WorkerDeploymentVersion("sagabank-saga", "0.1.0")
        assert config.use_worker_versioning is False
        assert config.default_versioning_behavior == VersioningBehavior.UNSPECIFIED

    def test_versioning_on_with_a_build_id_and_behaviour(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name, value in REQUIRED.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("WORKER_BUILD_ID", "2026.12.06-abc123")
        monkeypatch.setenv("WORKER_VERSIONING_ENABLED", "true")
        monkeypatch.setenv("WORKER_VERSIONING_BEHAVIOR", "pinned")

        config = deployment_config(Settings())

        assert config.version.build_id == "2026.12.06-abc123"
        assert config.use_worker_versioning is True
        assert config.default_versioning_behavior == VersioningBehavior.PINNED

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("WORKER_BUILD_ID", "has space"),
            ("WORKER_DEPLOYMENT_NAME", "with.dot"),
            ("WORKER_VERSIONING_BEHAVIOR", "sometimes"),
        ],
    )
    def test_bad_versioning_settings(
        self, monkeypatch: pytest.MonkeyPatch, name: str, value: str
    ) -> None:
        for required, required_value in REQUIRED.items():
            monkeypatch.setenv(required, required_value)
        monkeypatch.setenv(name, value)
        with pytest.raises(ValidationError):
            Settings()

    def test_service_urls_and_credentials_are_required(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name in REQUIRED:
            monkeypatch.delenv(name, raising=False)
        with pytest.raises(ValidationError) as raised:
            Settings()
        missing = {error["loc"][0] for error in raised.value.errors()}
        assert missing == {
            "accounts_url",
            "transactions_url",
            "fraud_url",
            "notifications_url",
            "auth_token_url",
            "auth_client_secret",
        }

    def test_concurrency_is_bounded(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name, value in REQUIRED.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("WORKER_ACTIVITY_CONCURRENCY_MAX", "100000")
        with pytest.raises(ValidationError):
            Settings()

    def test_requests_in_flight_are_bounded(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name, value in REQUIRED.items():
            monkeypatch.setenv(name, value)
        assert Settings().http_requests_in_flight_max == 8
        monkeypatch.setenv("WORKER_HTTP_REQUESTS_IN_FLIGHT_MAX", "0")
        with pytest.raises(ValidationError):
            Settings()

    def test_http_timeout_stays_below_the_activity_timeout(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name, value in REQUIRED.items():
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


class TestWorkerVersioning:
    async def test_a_versioned_worker_runs_the_saga_it_is_current_for(
        self, temporal_dev_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        """The dev server routes by deployment version: the worker's version is registered,
        made current, and the saga it starts is stamped with it, auto-upgrading."""
        deployment_name = f"test-{uuid.uuid4().hex[:12]}"
        settings = settings_for(temporal_dev_env, task_queue).model_copy(
            update={
                "deployment_name": deployment_name,
                "build_id": "build-1",
                "versioning_enabled": True,
            }
        )
        namespace = temporal_dev_env.client.namespace
        service = temporal_dev_env.client.workflow_service
        stop = asyncio.Event()
        worker = asyncio.create_task(run_worker(settings, stop=stop))
        try:
            await _wait_for_deployment_version(temporal_dev_env, deployment_name, "build-1")
            await service.set_worker_deployment_current_version(
                SetWorkerDeploymentCurrentVersionRequest(
                    namespace=namespace, deployment_name=deployment_name, build_id="build-1"
                )
            )
            handle = await start_transfer(temporal_dev_env, task_queue, new_transfer())
            try:
                await wait_for_failing_attempt(handle, "validate_transfer")
                versioning = (
                    await handle.describe()
                ).raw_description.workflow_execution_info.versioning_info
            finally:
                await handle.terminate("test over")
        finally:
            stop.set()
            await asyncio.wait_for(worker, WAIT_SECONDS_MAX)
        assert versioning.deployment_version.deployment_name == deployment_name
        assert versioning.deployment_version.build_id == "build-1"
        assert versioning.behavior == VersioningBehavior.AUTO_UPGRADE.value


async def _wait_for_deployment_version(
    env: WorkflowEnvironment, deployment_name: str, build_id: str
) -> None:
    """Until the server lists `build_id` in the deployment (its worker polled; bounded)."""
    request = DescribeWorkerDeploymentRequest(
        namespace=env.client.namespace, deployment_name=deployment_name
    )
    for _ in range(POLLS_MAX):
        try:
            described = await env.client.workflow_service.describe_worker_deployment(request)
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:  # not yet polled
                raise
        else:
            summaries = described.worker_deployment_info.version_summaries
            if any(s.deployment_version.build_id == build_id for s in summaries):
                return
        await asyncio.sleep(POLL_INTERVAL_SECONDS)
    raise AssertionError(f"{deployment_name}.{build_id} never registered")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def _scrape_until(
    url: str, ready: Callable[[dict[tuple[str, frozenset[tuple[str, str]]], float]], bool]
) -> tuple[dict[tuple[str, frozenset[tuple[str, str]]], float], set[str]]:
    """The samples and family names at `url` once `ready(samples)` holds (bounded wait)."""
    async with httpx.AsyncClient(timeout=WAIT_SECONDS_MAX) as http:
        for _ in range(POLLS_MAX):
            try:
                response = await http.get(url)
            except httpx.ConnectError:  # the worker is still starting
                await asyncio.sleep(POLL_INTERVAL_SECONDS)
                continue
            assert response.status_code == 200, response.text
            families = list(text_string_to_metric_families(response.text))
            samples = {
                (sample.name, frozenset(sample.labels.items())): sample.value
                for family in families
                for sample in family.samples
            }
            if ready(samples):
                return samples, {family.name for family in families}
            await asyncio.sleep(POLL_INTERVAL_SECONDS)
    raise AssertionError(f"{url} never showed what was awaited")


class TestWorkerMetrics:
    async def test_step_attempts_and_the_sdk_metrics_on_one_port(
        self, temporal_dev_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        port = _free_port()
        settings = settings_for(temporal_dev_env, task_queue).model_copy(
            update={"metrics_enabled": True, "metrics_port": port}
        )
        stop = asyncio.Event()
        worker = asyncio.create_task(run_worker(settings, stop=stop))
        handle = await start_transfer(temporal_dev_env, task_queue, new_transfer())
        validate = frozenset({("activity", "validate_transfer")})
        failed = frozenset({("step", "validate_transfer"), ("outcome", "failed")})
        try:
            # validate_transfer, a local activity, fails while accounts is unreachable and
            # is retried a second later: the interceptor sees local activities too.
            samples, families = await _scrape_until(
                f"http://127.0.0.1:{port}/metrics",
                lambda samples: samples.get(("sagabank_activity_retries_total", validate), 0) >= 1,
            )
        finally:
            await handle.terminate("test over")
            stop.set()
            await asyncio.wait_for(worker, WAIT_SECONDS_MAX)
        assert samples[("sagabank_activity_attempts_total", validate)] >= 2
        assert samples[("sagabank_saga_step_duration_seconds_count", failed)] >= 1
        # The Temporal SDK's own metrics come on the same port.
        assert any(name.startswith("temporal_") for name in families), sorted(families)
        # And the port closes with the worker.
        async with httpx.AsyncClient() as http:
            with pytest.raises(httpx.ConnectError):
                await http.get(f"http://127.0.0.1:{port}/metrics")


class TestMain:
    async def test_exits_2_on_temporal_settings_that_cannot_work(self) -> None:
        environment = {
            **os.environ,
            **REQUIRED,
            "WORKER_LOG_JSON": "true",
            "WORKER_METRICS_ENABLED": "false",
            "TEMPORAL_ADDRESS": "sagabank.a1b2c.tmprl.cloud:7233",
            "TEMPORAL_API_KEY": "worker-api-key",
            "TEMPORAL_TLS": "false",
        }
        async with worker_process(environment) as process:
            _, errors = await asyncio.wait_for(process.communicate(), WAIT_SECONDS_MAX)
        assert process.returncode == 2, errors.decode()
        assert b"worker.temporal_settings_invalid" in errors
        assert b"worker-api-key" not in errors

    async def test_stops_gracefully_on_sigterm(
        self, temporal_dev_env: WorkflowEnvironment, task_queue: str
    ) -> None:
        environment = {
            **os.environ,
            **REQUIRED,
            "WORKER_TEMPORAL_ADDRESS": temporal_dev_env.client.service_client.config.target_host,
            "WORKER_TASK_QUEUE": task_queue,
            "WORKER_LOG_JSON": "true",
            "WORKER_METRICS_PORT": str(_free_port()),
        }
        async with worker_process(environment) as process:
            assert process.stderr is not None
            async with asyncio.timeout(WAIT_SECONDS_MAX * 3):
                while b"worker.started" not in (line := await process.stderr.readline()):
                    assert line, "the worker exited before it started"
            # The worker runs on uvloop, as the services do (benchmarks/worker_http.py).
            assert json.loads(line)["event_loop"] == "uvloop", line
            process.send_signal(signal.SIGTERM)
            remaining = await asyncio.wait_for(process.stderr.read(), WAIT_SECONDS_MAX)
            return_code = await asyncio.wait_for(process.wait(), WAIT_SECONDS_MAX)
        assert return_code == 0, remaining.decode()
        assert b"worker.stopped" in remaining
