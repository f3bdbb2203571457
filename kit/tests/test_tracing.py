"""Tracing and the logs that join it: W3C ids on log lines inside a span, none outside;
`extra=` fields of stdlib loggers kept; outgoing calls carry `traceparent`; database
queries traced only when spans leave the process."""

import json
import logging
import os
import re
import subprocess
import sys

import httpx
import pytest
import structlog
from opentelemetry import trace

from kit.http import create_client
from kit.logging import configure_logging
from kit.tracing import configure_tracing, current_trace_id

TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
SPAN_ID = re.compile(r"^[0-9a-f]{16}$")
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


@pytest.fixture(autouse=True)
def _tracing() -> None:
    configure_tracing("kit-tests")


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _line(captured: str, event: str) -> dict[str, object]:
    lines = [line for line in _json_lines(captured) if line.get("event") == event]
    assert len(lines) == 1, captured
    return lines[0]


class TestLogLinesCarryTheTrace:
    def test_a_structlog_line_inside_a_span(self, capsys: pytest.CaptureFixture[str]) -> None:
        configure_logging(service="kit-tests", json=True)
        tracer = trace.get_tracer(__name__)
        with tracer.start_as_current_span("work") as span:
            structlog.get_logger().info("inside.structlog")
            context = span.get_span_context()
        line = _line(capsys.readouterr().err, "inside.structlog")
        assert line["trace_id"] == format(context.trace_id, "032x")
        assert line["span_id"] == format(context.span_id, "016x")

    def test_a_foreign_line_inside_a_span(self, capsys: pytest.CaptureFixture[str]) -> None:
        configure_logging(service="kit-tests", json=True)
        tracer = trace.get_tracer(__name__)
        with tracer.start_as_current_span("work") as span:
            logging.getLogger("some.library").warning("inside.foreign")
            context = span.get_span_context()
        line = _line(capsys.readouterr().err, "inside.foreign")
        assert line["trace_id"] == format(context.trace_id, "032x")
        assert isinstance(line["span_id"], str)
        assert SPAN_ID.match(line["span_id"])

    def test_a_line_outside_any_span_carries_neither(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        configure_logging(service="kit-tests", json=True)
        logging.getLogger("some.library").warning("outside.foreign")
        line = _line(capsys.readouterr().err, "outside.foreign")
        assert "trace_id" not in line
        assert "span_id" not in line


def test_extra_fields_of_a_stdlib_logger_are_kept(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(service="kit-tests", json=True)
    # As temporalio's workflow and activity loggers pass them.
    logging.getLogger("temporalio.workflow").warning(
        "workflow.said", extra={"temporal_workflow": {"workflow_id": "transfer-1"}}
    )
    line = _line(capsys.readouterr().err, "workflow.said")
    assert line["temporal_workflow"] == {"workflow_id": "transfer-1"}


async def test_outgoing_calls_carry_traceparent() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    client = create_client("http://service.test", transport=httpx.MockTransport(answer))
    tracer = trace.get_tracer(__name__)
    async with client:
        with tracer.start_as_current_span("caller"):
            trace_id = current_trace_id()
            await client.get("/v1/anything")
    assert trace_id is not None
    assert TRACE_ID.match(trace_id)
    match = TRACEPARENT.match(seen[0].headers["traceparent"])
    assert match is not None, seen[0].headers
    assert match.group(1) == trace_id


def test_no_trace_id_outside_a_span() -> None:
    assert current_trace_id() is None


# A process of its own: the driver is instrumented once per process, at configuration.
DATABASE_TRACED_PROBE = (
    "import asyncpg.connection; from kit.tracing import configure_tracing; "
    "configure_tracing('probe'); "
    "print(hasattr(vars(asyncpg.connection.Connection)['execute'], '__wrapped__'))"
)
PROBE_TIMEOUT_SECONDS = 60.0


def _run_probe(source: str, *, exporting: bool) -> subprocess.CompletedProcess[str]:
    """Run `source` in a fresh interpreter, with spans exported or not (no OTEL_* inherited)."""
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("OTEL_")
    }
    if exporting:
        # Nothing listens there: the setting is all that counts.
        environment["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:9"
    return subprocess.run(
        [sys.executable, "-c", source],
        env=environment,
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT_SECONDS,
        check=True,
    )


@pytest.mark.parametrize(("exporting", "traced"), [(False, "False"), (True, "True")])
def test_database_queries_are_traced_only_when_spans_are_exported(
    exporting: bool, traced: str
) -> None:
    probe = _run_probe(DATABASE_TRACED_PROBE, exporting=exporting)
    assert probe.stdout.strip() == traced, probe.stderr


# A process of its own, as above; it leaves without flushing (nothing listens on port 9).
CLIENT_SPAN_PROBE = """
import asyncio, os, httpx
from opentelemetry import trace
from kit.http import create_client
from kit.tracing import configure_tracing

configure_tracing("probe")
seen = []

def answer(request):
    seen.append(request)
    return httpx.Response(200)

async def call():
    transport = httpx.MockTransport(answer)
    async with create_client("http://service.test", transport=transport) as client:
        with trace.get_tracer("probe").start_as_current_span("caller") as caller:
            await client.get("/v1/anything")
    return caller.get_span_context()

caller = asyncio.run(call())
_, trace_id, parent_id, _ = seen[0].headers["traceparent"].split("-")
assert trace_id == format(caller.trace_id, "032x"), seen[0].headers
print(parent_id != format(caller.span_id, "016x"), flush=True)
os._exit(0)
"""


@pytest.mark.parametrize(("exporting", "client_span"), [(False, "False"), (True, "True")])
def test_outgoing_calls_get_a_client_span_only_when_spans_are_exported(
    exporting: bool, client_span: str
) -> None:
    """Unexported, the caller's own span travels as the parent: the trace id is the same."""
    probe = _run_probe(CLIENT_SPAN_PROBE, exporting=exporting)
    assert probe.stdout.strip() == client_span, probe.stderr
