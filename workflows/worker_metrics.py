"""The worker's metrics: each activity attempt measured by an interceptor, and one scrape
target serving them with the Temporal SDK's own (docs/decisions/0024-metrics.md)."""

import socket
import time
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from prometheus_client import REGISTRY
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from temporalio import activity
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from kit.metrics_http import MetricsServer
from workflows.metrics import ACTIVITY_ATTEMPTS, ACTIVITY_RETRIES, SAGA_STEP_DURATION

log = structlog.get_logger()

# The SDK's exporter answers on the loopback only: the scraper reads it through ours.
_SDK_ADDRESS = "127.0.0.1"
_SDK_SCRAPE_TIMEOUT_SECONDS = 2.0


class StepMetricsInterceptor(Interceptor):
    """Measures every activity attempt, local activities included (they run through the
    same inbound interceptors): duration by step and outcome, attempts and retries."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _StepMetricsInbound(next)


class _StepMetricsInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        step = info.activity_type
        ACTIVITY_ATTEMPTS.labels(activity=step).inc()
        if info.attempt > 1:
            ACTIVITY_RETRIES.labels(activity=step).inc()
        started = time.perf_counter()
        outcome = "failed"
        try:
            result = await self.next.execute_activity(input)
            outcome = "succeeded"
            return result
        finally:
            # A cancelled attempt (BaseException) is an attempt that did not succeed.
            SAGA_STEP_DURATION.labels(step=step, outcome=outcome).observe(
                time.perf_counter() - started
            )


class TemporalSdkCollector(Collector):
    """The SDK runtime's Prometheus exposition, read at scrape time and served as ours, so
    the worker has one scrape target; a scrape without them beats a failed scrape."""

    def __init__(self, url: str) -> None:
        self.url = url

    def describe(self) -> Iterable[Metric]:
        # Names unknown before the SDK reports; an empty description skips the registry's
        # duplicate check, which would otherwise scrape the SDK at registration.
        return []

    def collect(self) -> Iterator[Metric]:
        try:
            with urllib.request.urlopen(  # noqa: S310 - our own loopback URL, http only
                self.url, timeout=_SDK_SCRAPE_TIMEOUT_SECONDS
            ) as response:
                text = response.read().decode()
        except OSError as error:
            log.warning("worker.sdk_metrics_unavailable", error=type(error).__name__)
            return
        yield from text_string_to_metric_families(text)


def _loopback_port() -> int:
    # The SDK takes an address, not a socket: a port free now, taken a moment later.
    with socket.socket() as probe:
        probe.bind((_SDK_ADDRESS, 0))
        port: int = probe.getsockname()[1]
    return port


def sdk_runtime_with_metrics() -> tuple[Runtime, str]:
    """A Temporal runtime exporting the SDK's metrics on a loopback port, and their URL."""
    address = f"{_SDK_ADDRESS}:{_loopback_port()}"
    runtime = Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=address,
                # Prometheus' conventions, as ours: `_total` counters, seconds, units named.
                counters_total_suffix=True,
                unit_suffix=True,
                durations_as_seconds=True,
            )
        )
    )
    return runtime, f"http://{address}/metrics"


@contextmanager
def served_metrics(port: int, *, sdk_metrics_url: str) -> Iterator[None]:
    """The process's registry, the SDK's metrics merged in, served on `port` meanwhile."""
    collector = TemporalSdkCollector(sdk_metrics_url)
    REGISTRY.register(collector)
    server = MetricsServer.start(port)
    try:
        yield
    finally:
        server.stop()
        REGISTRY.unregister(collector)
