"""Outbound HTTP: every client states its timeouts and passes the request id and the
trace (`traceparent`) on."""

import httpx
import structlog

from kit.tracing import instrument_client


async def _propagate_request_id(request: httpx.Request) -> None:
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if isinstance(request_id, str) and "X-Request-ID" not in request.headers:
        request.headers["X-Request-ID"] = request_id


def create_client(
    base_url: str,
    *,
    timeout_seconds: float = 10.0,
    connect_timeout_seconds: float = 3.0,
    connections_max: int = 32,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    client = httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout_seconds, connect=connect_timeout_seconds),
        limits=httpx.Limits(
            max_connections=connections_max, max_keepalive_connections=connections_max
        ),
        event_hooks={"request": [_propagate_request_id]},
        transport=transport,
        follow_redirects=False,
    )
    instrument_client(client)
    return client
