"""Serving the process's metrics (`GET /metrics`, or a port of their own) and measuring
the HTTP requests a service answers (docs/decisions/0024-metrics.md)."""

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest, start_http_server
from sqlalchemy.pool import Pool
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kit.metrics import DATABASE_POOL_IN_USE, DATABASE_POOL_SIZE, HTTP_REQUEST_DURATION

METRICS_PATH = "/metrics"
# The route label of a request no route matched: scanners' paths must not become series.
UNMATCHED_ROUTE = "unmatched"
# A separate metrics port is for a scraper inside the cluster, which reaches the pod's
# address, not the loopback; the port is never published by the Service or ingress.
METRICS_BIND_ADDRESS = "0.0.0.0"  # noqa: S104 - see above


class HttpMetricsMiddleware:
    """Observes sagabank_http_request_duration_seconds per request, labelled by the matched
    route's template (`/v1/transfers/{transfer_id}`), never the raw path; /metrics is not
    observed (a scrape every 15 s would drown the rest in the service's own overhead)."""

    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == METRICS_PATH:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording_status)
        finally:
            HTTP_REQUEST_DURATION.labels(
                service=self.service,
                route=_route_template(scope.get("route")),
                method=scope["method"],
                status=str(status),
            ).observe(time.perf_counter() - started)


def _route_template(route: BaseRoute | None) -> str:
    # Starlette's router sets scope["route"] on a match, a wrong method's partial one too.
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED_ROUTE


def add_metrics_route(app: FastAPI) -> None:
    """`GET /metrics` on the service's own port: no token, no rate limit, not in OpenAPI."""

    @app.get(METRICS_PATH, include_in_schema=False)
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


@dataclass
class MetricsServer:
    """The metrics on a port of their own (prometheus_client's server, in a thread)."""

    server: WSGIServer
    thread: threading.Thread

    @classmethod
    def start(cls, port: int, *, address: str = METRICS_BIND_ADDRESS) -> "MetricsServer":
        server, thread = start_http_server(port, addr=address, registry=REGISTRY)
        return cls(server, thread)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@dataclass(frozen=True)
class _PoolSource:
    in_use: Callable[[], int]
    connections_max: int


# A service's pools (the SQLAlchemy engine's; accounts' asyncpg ledger pool too): the
# gauges' only label is the service, so they report the sum of its pools.
_POOL_SOURCES: dict[str, list[_PoolSource]] = {}


def watch_pool(
    service: str, *, in_use: Callable[[], int], connections_max: int
) -> Callable[[], None]:
    """Add a pool to the service's pool gauges, read at scrape time (no bookkeeping on the
    request path); returns the function that takes it out again (at shutdown)."""
    source = _PoolSource(in_use=in_use, connections_max=connections_max)
    sources = _POOL_SOURCES.setdefault(service, [])
    sources.append(source)
    _feed_pool_gauges(service)

    def stop_watching() -> None:
        with contextlib.suppress(ValueError):
            sources.remove(source)
        _feed_pool_gauges(service)

    return stop_watching


def _feed_pool_gauges(service: str) -> None:
    sources = list(_POOL_SOURCES.get(service, []))
    if not sources:
        for gauge in (DATABASE_POOL_IN_USE, DATABASE_POOL_SIZE):
            # Another app of this service (tests) may have stopped first.
            with contextlib.suppress(KeyError):
                gauge.remove(service)
        return
    DATABASE_POOL_IN_USE.labels(service=service).set_function(
        lambda: float(sum(source.in_use() for source in sources))
    )
    DATABASE_POOL_SIZE.labels(service=service).set(
        sum(source.connections_max for source in sources)
    )


def watch_database_pool(service: str, pool: Pool, *, connections_max: int) -> Callable[[], None]:
    """Add the SQLAlchemy pool to the service's pool gauges; returns what takes it out."""
    checked_out = getattr(pool, "checkedout", None)
    assert callable(checked_out), f"{type(pool).__name__} cannot tell its checked-out count"
    return watch_pool(service, in_use=checked_out, connections_max=connections_max)
