"""A small world for the notifications tests: a clock they move, a real HTTP receiver on
127.0.0.1, a resolver stub, and a network that never leaves the machine."""

import asyncio
import datetime as dt
import ipaddress
import socket
import ssl
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpcore
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from contracts.auth import PrincipalKind
from contracts.auth import Scope as AuthScope
from kit.resources import resources_of
from kit.testing import TestIssuer
from notifications.dispatcher import Dispatcher
from notifications.resources import NotificationsResources
from notifications.ssrf import IPAddress

# A public address (it is example.com's); the test network routes it to a local server.
PUBLIC_ADDRESS = ipaddress.ip_address("93.184.215.14")
PUBLIC_HOST = "hooks.example.test"
WAIT_SECONDS = 10.0


class Clock:
    """The service's clock, standing still until a test moves it."""

    def __init__(self, now: dt.datetime) -> None:
        assert now.tzinfo is not None
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


class SenderDied(BaseException):
    """A sender's death seen from inside it: not an Exception, so no `except Exception`
    turns it into an outcome; nothing after it runs and nothing is recorded."""


async def wait_until(
    condition: Callable[[], bool], *, timeout_seconds: float = WAIT_SECONDS, what: str = ""
) -> None:
    """Poll `condition` until it holds; fail after `timeout_seconds` (never sleep-and-hope)."""
    deadline = asyncio.get_running_loop().time() + timeout_seconds
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.01)


async def wait_for(
    probe: Callable[[], Awaitable[bool]], *, timeout_seconds: float = WAIT_SECONDS, what: str = ""
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_seconds
    while not await probe():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or probe}")
        await asyncio.sleep(0.02)


# --- tokens ------------------------------------------------------------------------------

# One issuer for the whole test session (an RSA key is slow to make); every app verifies
# its tokens (conftest passes `ISSUER.verifier`).
ISSUER = TestIssuer()


def as_customer(customer_id: str) -> dict[str, str]:
    """Headers of a customer holding every customer scope (webhooks:manage among them)."""
    return ISSUER.customer(customer_id)


def as_worker() -> dict[str, str]:
    """Headers of the saga's worker (notifications:publish)."""
    return ISSUER.worker()


def as_operator(operator_id: str = "operator-1") -> dict[str, str]:
    """Headers of an operator (accounts:admin, audit:read, ...)."""
    return ISSUER.operator(operator_id)


def as_principal(subject: str, kind: PrincipalKind, *scopes: AuthScope) -> dict[str, str]:
    return ISSUER.headers(subject, kind, frozenset(scopes))


# --- resolving and connecting ------------------------------------------------------------


class StubResolver:
    """Names resolve only to what a test says; an unknown name does not resolve."""

    def __init__(self, names: dict[str, Sequence[str]] | None = None) -> None:
        self.names: dict[str, list[IPAddress]] = {}
        self.lookups: list[str] = []
        for name, addresses in (names or {}).items():
            self.point(name, *addresses)

    def point(self, name: str, *addresses: str) -> None:
        self.names[name] = [ipaddress.ip_address(address) for address in addresses]

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.lookups.append(host)
        return list(self.names.get(host, []))


class LoopbackNetwork(httpcore.AsyncNetworkBackend):
    """The only network the service gets in these tests. It connects to 127.0.0.0/8 and
    ::1 only: a route maps a public (address, port) to a local port, and any other
    destination is a violation — recorded, refused, and failed by the fixture — so no
    test can reach the outside even if the SSRF guard were broken."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()
        self.routes: dict[tuple[str, int], int] = {}
        self.connections: list[tuple[str, int]] = []
        self.violations: list[tuple[str, int]] = []

    def route(self, address: IPAddress, port: int, *, to_local_port: int) -> None:
        self.routes[(str(address), port)] = to_local_port

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connections.append((host, port))
        local_port = self.routes.get((host, port))
        if local_port is not None:
            host, port = "127.0.0.1", local_port
        else:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                address = None
            if address is None or not address.is_loopback:
                self.violations.append((host, port))
                raise httpcore.ConnectError(f"test network: refusing to connect to {host}:{port}")
        return await self._inner.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.violations.append((path, 0))
        raise httpcore.ConnectError("test network: no unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


# --- a real HTTP receiver ------------------------------------------------------------------


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay_seconds: float = 0.0


class Receiver:
    """An ASGI app recording every request; it answers with the queued replies in order,
    then with `default`."""

    def __init__(self) -> None:
        self.requests: list[ReceivedRequest] = []
        self.replies: deque[Reply] = deque()
        self.default = Reply()
        self.port = 0

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def queue(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        headers = {
            key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]
        }
        self.requests.append(ReceivedRequest(scope["method"], scope["path"], headers, body))
        reply = self.replies.popleft() if self.replies else self.default
        if reply.delay_seconds:
            await asyncio.sleep(reply.delay_seconds)
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [(k.encode(), v.encode()) for k, v in reply.headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": reply.body})


@dataclass(frozen=True)
class Certificate:
    certificate_path: Path
    key_path: Path
    pem: str

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this certificate and nothing else."""
        return ssl.create_default_context(cadata=self.pem)


def self_signed_certificate(directory: Path, hostname: str) -> Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    certificate_path = directory / "receiver.pem"
    key_path = directory / "receiver.key"
    certificate_path.write_text(pem)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificate(certificate_path=certificate_path, key_path=key_path, pem=pem)


@asynccontextmanager
async def serving(app: Any, *, certificate: Certificate | None = None) -> AsyncIterator[int]:
    """Run `app` under uvicorn on a free 127.0.0.1 port; stopped on exit, also on failure."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port: int = listener.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=2,
        ssl_certfile=None if certificate is None else str(certificate.certificate_path),
        ssl_keyfile=None if certificate is None else str(certificate.key_path),
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        await wait_until(lambda: server.started or task.done(), what="the receiver to start")
        if task.done():
            task.result()
            raise AssertionError("the receiver stopped at once")
        yield port
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, 10)
        except TimeoutError:
            task.cancel()
        listener.close()


@asynccontextmanager
async def running_receiver(certificate: Certificate | None = None) -> AsyncIterator[Receiver]:
    receiver = Receiver()
    async with serving(receiver, certificate=certificate) as port:
        receiver.port = port
        yield receiver


# --- events ---------------------------------------------------------------------------------


def transfer_event(
    event_type: str = "transfer.completed",
    *,
    source_customer_id: str | None = "alice",
    target_customer_id: str | None = "bob",
    amount_minor: int = 2550,
    currency: str = "EUR",
    occurred_at: dt.datetime | None = None,
    **data: Any,
) -> dict[str, Any]:
    """A `POST /v1/events` body shaped as the saga publishes it."""
    body_data: dict[str, Any] = {
        "transfer_id": str(uuid.uuid4()),
        "status": event_type.removeprefix("transfer."),
        "amount_minor": amount_minor,
        "currency": currency,
        "source_account_id": str(uuid.uuid4()),
        "target_account_id": str(uuid.uuid4()),
        "failure_reason": None,
    }
    if source_customer_id is not None:
        body_data["source_customer_id"] = source_customer_id
    if target_customer_id is not None:
        body_data["target_customer_id"] = target_customer_id
    body_data.update(data)
    return {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "timestamp": (occurred_at or dt.datetime.now(dt.UTC)).isoformat(),
        "data": body_data,
    }


def dispatcher_of(app: FastAPI) -> Dispatcher:
    """The app's dispatcher (running only while its lifespan is)."""
    return resources_of(app, NotificationsResources).dispatcher
