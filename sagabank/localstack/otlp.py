"""A minimal OTLP/HTTP trace receiver: the system tests and benchmarks/saga.py point a bank's
OTEL_EXPORTER_OTLP_ENDPOINT at it, to read the spans it exports or just to absorb them.

It speaks what the standard exporter sends: `POST /v1/traces` with a protobuf
`ExportTraceServiceRequest`, gzip-compressed when OTEL_EXPORTER_OTLP_COMPRESSION says so,
answered 200 with an empty `ExportTraceServiceResponse`.
"""

import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

TRACES_PATH = "/v1/traces"
# A batch of the exporter is 512 spans at most by default: far below this.
_BODY_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as a trace backend shows it: ids in lowercase hex, the component's name."""

    service_name: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    kind: int
    attributes: dict[str, str]
    # When it began and ended, in nanoseconds since the epoch (the process's clock).
    start_unix_nano: int = 0
    end_unix_nano: int = 0


@dataclass
class OtlpReceiver:
    """Collects the spans exported to it (none when `keep_spans` is False: a sink)."""

    keep_spans: bool = True
    # Where it listens (`http://host:port`), for OTEL_EXPORTER_OTLP_ENDPOINT.
    endpoint: str = ""
    spans: list[ReceivedSpan] = field(default_factory=list)
    requests_received: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)

    def take(self, body: bytes) -> None:
        # A sink does not even decode: its CPU would be counted against the bank's.
        spans = _spans_of(ExportTraceServiceRequest.FromString(body)) if self.keep_spans else []
        with self._lock:
            self.requests_received += 1
            self.spans.extend(spans)


def _spans_of(request: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = {
            attribute.key: attribute.value.string_value
            for attribute in resource_spans.resource.attributes
        }
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        service_name=resource.get("service.name", ""),
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() or None,
                        kind=span.kind,
                        attributes={
                            attribute.key: _text(attribute.value) for attribute in span.attributes
                        },
                        start_unix_nano=span.start_time_unix_nano,
                        end_unix_nano=span.end_time_unix_nano,
                    )
                )
    return spans


def _text(value: AnyValue) -> str:
    kind = value.WhichOneof("value")
    return "" if kind is None else str(getattr(value, kind))


def _handler_of(receiver: OtlpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if self.path != TRACES_PATH or not 0 < length <= _BODY_MAX_BYTES:
                self.send_error(404 if self.path != TRACES_PATH else 400)
                return
            body = self.rfile.read(length)
            if self.headers.get("content-encoding", "").lower() == "gzip":
                body = gzip.decompress(body)
            try:
                receiver.take(body)
            except Exception:  # a body that does not decode: the exporter's bug, not ours
                self.send_error(400)
                return
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            return  # one line per export would drown the test's output

    return Handler


@contextmanager
def running_otlp_receiver(
    *, host: str = "127.0.0.1", keep_spans: bool = True
) -> Iterator[OtlpReceiver]:
    """A receiver on a free port (its `endpoint`), served from a thread until the block ends."""
    receiver = OtlpReceiver(keep_spans=keep_spans)
    server = ThreadingHTTPServer((host, 0), _handler_of(receiver))
    server.daemon_threads = True
    receiver.endpoint = f"http://{host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
