"""The SSRF guard: a webhook reaches only public addresses, over https.

Checked twice: when a URL is registered (its name resolved then), and on every connection
the dispatcher opens. There the network backend resolves the name itself, refuses when any
address is not public, and connects to the very address it checked, so a DNS answer that
changes between check and use (rebinding) cannot slip through.
"""

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) → the addresses the name resolves to; tests pass a stub.
Resolver = Callable[[str, int], Awaitable[Sequence[IPAddress]]]

RESOLVE_TIMEOUT_SECONDS: Final = 5.0
# A name with more addresses than this is cut short; every kept one must be public.
ADDRESSES_MAX: Final = 16
# Addresses tried in turn when connecting; the rest only had to pass the check.
CONNECT_ADDRESSES_MAX: Final = 3

_SHARED_ADDRESS_SPACE: Final = ipaddress.IPv4Network("100.64.0.0/10")  # CGNAT, RFC 6598
_NAT64_WELL_KNOWN: Final = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052
_IPV4_COMPATIBLE: Final = ipaddress.IPv6Network("::/96")  # deprecated, RFC 4291
_LOW_32_BITS: Final = 0xFFFFFFFF


@dataclass(frozen=True)
class TargetPolicy:
    """Where webhooks may go. Both relaxations are for local demos only."""

    allow_http: bool = False
    allow_loopback: bool = False

    @property
    def schemes(self) -> frozenset[str]:
        return frozenset({"https", "http"}) if self.allow_http else frozenset({"https"})


class TargetRefused(Exception):
    """A URL or an address it resolves to is not a permitted webhook target."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _ipv4_part(part: str) -> int | None:
    """One dot-separated part as inet_aton reads it: decimal, 0x-hex or 0-octal."""
    if part[:2].lower() == "0x":
        digits, base = part[2:], 16
    elif len(part) > 1 and part.startswith("0"):
        digits, base = part[1:], 8
    else:
        digits, base = part, 10
    try:
        return int(digits, base) if digits.isalnum() and digits.isascii() else None
    except ValueError:
        return None


def parse_ipv4_literal(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a resolver would read in `host`, in any of inet_aton's forms:
    `127.0.0.1`, `2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1`. None for a name."""
    parts = host.removesuffix(".").split(".")
    if not 1 <= len(parts) <= 4 or any(not part for part in parts):
        return None
    numbers = [_ipv4_part(part) for part in parts]
    values = [number for number in numbers if number is not None]
    if len(values) != len(parts):
        return None
    *leading, last = values
    if any(value > 0xFF for value in leading) or last >= 1 << (8 * (5 - len(parts))):
        return None
    value = last
    for index, byte in enumerate(leading):
        value |= byte << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def ip_literal(host: str) -> IPAddress | None:
    """The address `host` spells out (IPv6 with or without brackets, IPv4 in any form)."""
    candidate = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if ":" in candidate:
        try:
            return ipaddress.IPv6Address(candidate)
        except ValueError:
            return None
    return parse_ipv4_literal(candidate)


def _translated_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a packet to `address` actually reaches, for forms that embed one."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(address) & _LOW_32_BITS)
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # not :: or ::1
        return ipaddress.IPv4Address(int(address) & _LOW_32_BITS)
    return None


def _tunnelled_ipv4s(address: ipaddress.IPv6Address) -> Iterable[ipaddress.IPv4Address]:
    if address.sixtofour is not None:
        yield address.sixtofour
    if address.teredo is not None:
        yield from address.teredo


def address_refusal(address: IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why `address` may not be a webhook target, or None when it is a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        translated = _translated_ipv4(address)
        if translated is not None:
            reason = address_refusal(translated, allow_loopback=allow_loopback)
            return None if reason is None else f"{reason} (as {translated})"
        for tunnelled in _tunnelled_ipv4s(address):
            reason = address_refusal(tunnelled, allow_loopback=allow_loopback)
            if reason is not None:
                return f"{reason} (tunnelled to {tunnelled})"
    if address.is_loopback:
        return None if allow_loopback else "loopback"
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if address.is_link_local:
        return "link-local"
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED_ADDRESS_SPACE:
        return "shared address space (CGNAT)"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "site-local"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "not globally routable"
    return None


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """The operating system's resolver, bounded in time; [] when the name does not resolve."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
            infos = await loop.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
    except (OSError, TimeoutError):  # socket.gaierror is an OSError
        return []
    addresses: list[IPAddress] = []
    for family, _type, _proto, _name, socket_address in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(socket_address[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


async def resolve_target(
    host: str, port: int, *, policy: TargetPolicy, resolver: Resolver
) -> list[IPAddress]:
    """The addresses to connect to for `host`; TargetRefused unless every one is allowed."""
    literal = ip_literal(host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        addresses = list(await resolver(host, port))[:ADDRESSES_MAX]
        if not addresses:
            raise TargetRefused(f"{host} does not resolve")
    for address in addresses:
        reason = address_refusal(address, allow_loopback=policy.allow_loopback)
        if reason is not None:
            named = host if literal is not None else f"{host} resolves to {address}, which"
            raise TargetRefused(f"{named} is not a public address: {reason}")
    if isinstance(literal, ipaddress.IPv4Address) and host.removesuffix(".") != str(literal):
        # `0x5db8d70e` is a public address, but no honest URL writes one like that.
        raise TargetRefused(f"{host} is an unusual form of {literal}; write it as {literal}")
    return addresses


def check_url(url: str, *, policy: TargetPolicy) -> httpx.URL:
    """Parse `url` as the dispatcher's client will, and check what needs no lookup."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise TargetRefused(f"not a valid URL: {error}") from error
    if parsed.scheme not in policy.schemes:
        allowed = " or ".join(sorted(policy.schemes, reverse=True))
        raise TargetRefused(f"the URL scheme must be {allowed}, not {parsed.scheme or 'empty'}")
    if not parsed.raw_host:
        raise TargetRefused("the URL names no host")
    if parsed.userinfo:
        raise TargetRefused("the URL may not carry credentials")
    return parsed


async def check_registration(url: str, *, policy: TargetPolicy, resolver: Resolver) -> str:
    """The URL to store, once its scheme and every address its host resolves to pass."""
    parsed = check_url(url, policy=policy)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    await resolve_target(parsed.raw_host.decode("ascii"), port, policy=policy, resolver=resolver)
    return str(parsed)


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks, then connects to the checked address itself (never re-resolves)."""

    def __init__(
        self,
        *,
        policy: TargetPolicy,
        resolver: Resolver,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._policy = policy
        self._resolver = resolver
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await resolve_target(host, port, policy=self._policy, resolver=self._resolver)
        failure: Exception | None = None
        for address in addresses[:CONNECT_ADDRESSES_MAX]:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
        assert failure is not None, "resolve_target returns at least one address"
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise TargetRefused("a webhook never connects to a unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with the guard on every request and connection (redirects too,
    should a caller ever follow them). Never reads proxy settings from the environment."""

    def __init__(
        self,
        *,
        policy: TargetPolicy,
        resolver: Resolver = system_resolver,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
        ssl_context: ssl.SSLContext | None = None,
        connections_max: int = 32,
    ) -> None:
        context = ssl_context or httpx.create_ssl_context()
        super().__init__(verify=context, trust_env=False)
        self._policy = policy
        # httpx has no public hook for the network backend, where connections are made, so
        # the pool is rebuilt with the guard inside (httpx is pinned below 0.29).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=connections_max,
            max_keepalive_connections=connections_max,
            keepalive_expiry=5.0,
            network_backend=GuardedNetworkBackend(
                policy=policy, resolver=resolver, inner=network_backend
            ),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme not in self._policy.schemes:
            raise TargetRefused(f"the URL scheme {request.url.scheme} is not allowed")
        return await super().handle_async_request(request)
