"""OpenTelemetry tracing, configured once per process from the standard OTEL_* variables.

Spans always get real W3C ids (logs and problems name them); they leave the process only
when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set, over
OTLP/HTTP protobuf. See docs/decisions/0023-tracing-and-logs.md.
"""

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import httpx
from fastapi import FastAPI
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import INVALID_SPAN, Link, Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

# The service.name of a component when the operator names none: `sagabank-accounts`, ...
SERVICE_NAME_PREFIX = "sagabank-"
# Probes and scrapes would be most of the spans and say nothing about a transfer.
UNTRACED_PATHS = "/metrics,/healthz,/readyz"
# Only the W3C headers, whatever OTEL_PROPAGATORS says: this is what leaves for places
# that are not ours (webhook endpoints) and what the outbox stores.
W3C_PROPAGATOR = TraceContextTextMapPropagator()

_provider: TracerProvider | None = None
_exporting = False


def exporting_configured(environment: Mapping[str, str]) -> bool:
    """Whether the standard variables ask for spans to be exported."""
    if environment.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(
        environment.get(name, "").strip()
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def component_resource(component: str) -> Resource:
    """The Resource naming a component: OTEL_SERVICE_NAME or a `service.name` in
    OTEL_RESOURCE_ATTRIBUTES win; otherwise `sagabank-<component>`."""
    resource = Resource.create({"sagabank.component": component})
    named = str(resource.attributes.get(SERVICE_NAME, ""))
    if named and not named.startswith("unknown_service"):
        return resource
    return resource.merge(Resource({SERVICE_NAME: f"{SERVICE_NAME_PREFIX}{component}"}))


def configure_tracing(component: str) -> TracerProvider:
    """Install the process's tracer provider (once: later calls return the first) and, when
    spans are exported, instrument the database driver. Settings come from OTEL_*."""
    global _provider, _exporting
    if _provider is not None:
        return _provider
    # The SDK reads OTEL_TRACES_SAMPLER(_ARG) and OTEL_SDK_DISABLED itself; flushed at exit
    # (atexit), and by shutdown_tracing where a process skips atexit (the worker).
    provider = TracerProvider(resource=component_resource(component))
    exporting = exporting_configured(os.environ)
    if exporting:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _provider = provider
    _exporting = exporting
    # A span per query was the largest cost tracing added to a transfer (benchmarks/README.md,
    # issue 17: about 13 CPU ms of 250); no log line is written inside one, so when nothing
    # leaves the process those spans are only cost. Decision 0027.
    instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    if exporting and not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=_ChildSpansOnly(provider))
    return provider


def shutdown_tracing() -> None:
    """Export what is buffered and stop; for processes that exit without atexit."""
    if _provider is not None:
        _provider.shutdown()


def instrument_app(app: FastAPI) -> None:
    """One server span per request (not for probes and scrapes), current for the whole
    middleware stack, so the access log line and problems carry its ids."""
    FastAPIInstrumentor.instrument_app(
        app, excluded_urls=UNTRACED_PATHS, exclude_spans=["receive", "send"]
    )


def instrument_client(client: httpx.AsyncClient) -> None:
    """Every outgoing request carries the trace (`traceparent`); it gets a client span of
    its own only when spans are exported (configure_tracing came first)."""
    if _exporting:
        HTTPXClientInstrumentor.instrument_client(client)
        return
    # The client span cost 130 to 400 CPU µs per call (issue 17, benchmarks/worker_http.py)
    # and, unexported, its id is in no log line: the caller's span is then the parent the
    # next service continues, in the same trace. Decision 0029.
    client.event_hooks["request"].append(_inject_trace_context)


async def _inject_trace_context(request: httpx.Request) -> None:
    # The global propagator, as the httpx instrumentation injects it (OTEL_PROPAGATORS).
    propagate.inject(request.headers)


def current_trace_id() -> str | None:
    """The current span's W3C trace id (32 lowercase hex), None outside any span."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None


def current_trace_context() -> dict[str, str]:
    """The current span as W3C headers (`traceparent`, `tracestate` if any); empty outside
    any span."""
    carrier: dict[str, str] = {}
    W3C_PROPAGATOR.inject(carrier)
    return carrier


@contextmanager
def span_continuing(
    name: str, carrier: Mapping[str, str], *, kind: SpanKind, attributes: Attributes = None
) -> Iterator[Span]:
    """A current span whose parent is the W3C context in `carrier` (a new trace if it
    holds none)."""
    parent = W3C_PROPAGATOR.extract(dict(carrier))
    tracer = trace.get_tracer(__name__)
    with tracer.start_as_current_span(
        name, context=parent, kind=kind, attributes=attributes
    ) as span:
        yield span


class _ChildSpansOnly(trace.TracerProvider):
    """Tracers that record a span only under a parent: the database driver's queries join
    a request's or an activity's trace, while background polling (the outbox dispatcher,
    jobs' advisory locks) starts no trace of its own."""

    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> Tracer:
        return _ChildTracer(
            self._provider.get_tracer(
                instrumenting_module_name, instrumenting_library_version, schema_url, attributes
            )
        )


class _ChildTracer(Tracer):
    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        if not trace.get_current_span(context).get_span_context().is_valid:
            return INVALID_SPAN
        return self._tracer.start_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )

    # The API types this with its private context-manager decorator; a plain one behaves
    # the same for the instrumentation's `with`.
    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[Span]:
        span = self.start_span(name, context, kind, attributes, links, start_time)
        with trace.use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ):
            yield span
