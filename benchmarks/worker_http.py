"""CPU the saga worker spends per outgoing HTTP call, layer by layer, on each event loop.

Starts a minimal keep-alive HTTP/1.1 server in a child process (its CPU is not counted:
it answers every request with a token-shaped JSON body), then, in this process, sends
`--requests` POSTs, `--in-flight` at a time, through httpx clients built up layer by
layer the way kit/http.py and workflows/worker.py build the worker's: a bare client, the
request-id event hook, the shared client-credentials auth, the OpenTelemetry client span
(tracer provider installed, nothing exported, as in `saga.py --no-traced`), and the whole
of `create_client` plus the activities' `send_to_service`. Each variant runs on asyncio's default
loop and on uvloop, alternately, `--rounds` times; it prints the median CPU microseconds
(`time.process_time`, this process only) per request.

    .venv/bin/python benchmarks/worker_http.py
    .venv/bin/python benchmarks/worker_http.py --requests 4000 --rounds 5
"""

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import structlog
import uvloop
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from pydantic import BaseModel

from kit.http import create_client
from kit.tokens import ClientCredentialsAuth
from kit.tracing import configure_tracing, instrument_client
from workflows.activities import _Service, send_to_service

_BODY = b'{"access_token":"token","expires_in":3600,"valid":true}'
_RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(_BODY)).encode()
    + b"\r\n\r\n"
    + _BODY
)

_SERVER = r"""
import asyncio, sys, uvloop
RESPONSE = %r

async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            writer.write(RESPONSE)
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()

async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    async with server:
        await server.serve_forever()

uvloop.run(main())
"""


class _Body(BaseModel):
    transfer_id: str
    amount_minor: int
    currency: str


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _auth(base_url: str) -> ClientCredentialsAuth:
    # The server hands any client a token: the secret is a placeholder.
    return ClientCredentialsAuth(
        f"{base_url}/token",
        client_id="worker",
        client_secret="any",  # noqa: S106
    )


async def _hook(request: httpx.Request) -> None:
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if isinstance(request_id, str) and "X-Request-ID" not in request.headers:
        request.headers["X-Request-ID"] = request_id


def _bare(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=10.0)


def _with_hook(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=10.0, event_hooks={"request": [_hook]})


def _with_auth(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=10.0, auth=_auth(base_url))


def _with_span(base_url: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=base_url, timeout=10.0)
    HTTPXClientInstrumentor.instrument_client(client)
    return client


def _with_traceparent(base_url: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=base_url, timeout=10.0)
    instrument_client(client)  # spans are not exported here: the traceparent hook alone
    return client


def _worker_client(base_url: str) -> httpx.AsyncClient:
    client = create_client(base_url, connections_max=8)
    client.auth = _auth(base_url)
    return client


def _worker_client_with_span(base_url: str) -> httpx.AsyncClient:
    """The worker's client as it was before issue 17's cut B: a client span per request."""
    client = httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(10.0, connect=3.0),
        limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
        event_hooks={"request": [_hook]},
        follow_redirects=False,
        auth=_auth(base_url),
    )
    HTTPXClientInstrumentor.instrument_client(client)
    return client


_VARIANTS: dict[str, Callable[[str], httpx.AsyncClient]] = {
    "bare httpx.AsyncClient": _bare,
    "+ request-id event hook": _with_hook,
    "+ client-credentials auth": _with_auth,
    "+ OpenTelemetry client span": _with_span,
    "+ traceparent hook (kit.tracing, unexported)": _with_traceparent,
    "worker, with a client span: + send_to_service": _worker_client_with_span,
    "worker: create_client + auth + send_to_service": _worker_client,
}
_WORKER_VARIANTS = frozenset(
    {
        "worker, with a client span: + send_to_service",
        "worker: create_client + auth + send_to_service",
    }
)


async def _drive(client: httpx.AsyncClient, requests: int, in_flight: int, worker: bool) -> float:
    """CPU seconds this process spent on `requests` POSTs, `in_flight` at a time."""
    body = _Body(
        transfer_id="7d3c1f0e-5a57-4d0c-9d49-0f7e3b8f1a2b", amount_minor=1250, currency="EUR"
    )
    service = _Service(client, asyncio.Semaphore(in_flight), 10.0)
    gate = asyncio.Semaphore(in_flight)

    async def one() -> None:
        if worker:
            with structlog.contextvars.bound_contextvars(request_id="wf:activity:1"):
                await send_to_service(service, "/v1/things", body)
            return
        async with gate:
            response = await client.post("/v1/things", json=body.model_dump(mode="json"))
            response.raise_for_status()

    await asyncio.gather(*(one() for _ in range(in_flight * 2)))  # warm: connections, token
    started = time.process_time()
    await asyncio.gather(*(one() for _ in range(requests)))
    return time.process_time() - started


def _measure(loop_name: str, variant: str, base_url: str, requests: int, in_flight: int) -> float:
    async def run() -> float:
        async with AsyncExitStack() as stack:
            client = await stack.enter_async_context(_VARIANTS[variant](base_url))
            return await _drive(client, requests, in_flight, variant in _WORKER_VARIANTS)

    if loop_name == "uvloop":
        return uvloop.run(run())
    return asyncio.run(run())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--variants",
        help="comma-separated numbers (1-based) of the clients to measure; all by default",
    )
    args = parser.parse_args(argv)
    names = list(_VARIANTS)
    variants = (
        [names[int(number) - 1] for number in args.variants.split(",")] if args.variants else names
    )
    configure_tracing("worker")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER % _RESPONSE, str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready", "the server did not start"
        base_url = f"http://127.0.0.1:{port}"
        results: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.rounds):
            for variant in variants:
                for loop_name in ("asyncio", "uvloop"):
                    seconds = _measure(loop_name, variant, base_url, args.requests, args.in_flight)
                    results.setdefault((variant, loop_name), []).append(seconds)
        print(
            f"CPU µs per request, least and median of {args.rounds} rounds of "
            f"{args.requests} ({args.in_flight} in flight)"
        )
        print("| client | asyncio | uvloop |\n|---|---|---|")
        for variant in variants:
            cells: list[Any] = []
            for name in ("asyncio", "uvloop"):
                per_request = [
                    seconds / args.requests * 1e6 for seconds in results[(variant, name)]
                ]
                cells.append(f"{min(per_request):.0f}, {statistics.median(per_request):.0f}")
            print(f"| {variant} | {' | '.join(cells)} |")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
