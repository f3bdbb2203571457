"""The SSRF guard, at registration and at every delivery.

No test here can open a connection outside 127.0.0.0/8 and ::1, even with the guard
broken: names resolve through a stub resolver, and the service's only network is
`LoopbackNetwork`, which refuses (and the fixture fails on) any other destination.
"""

import ipaddress
import uuid
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
from fastapi import FastAPI

from kit.sealing import parse_key_ring
from kit.testing import app_client, assert_problem
from notifications import repository, webhook_signatures
from notifications.models import WebhookEndpointRow
from notifications.ssrf import (
    GuardedTransport,
    TargetPolicy,
    TargetRefused,
    address_refusal,
    check_registration,
    parse_ipv4_literal,
)
from notifications.tests.conftest import SECRETS_KEYS, AppFactory
from notifications.tests.support import (
    PUBLIC_ADDRESS,
    PUBLIC_HOST,
    Clock,
    LoopbackNetwork,
    Reply,
    StubResolver,
    as_customer,
    as_worker,
    dispatcher_of,
    running_receiver,
    self_signed_certificate,
    transfer_event,
)

PRODUCTION = TargetPolicy()

# The suite, plus the forms an attacker tries next.
REFUSED_URLS = [
    "https://127.0.0.1/hook",
    "https://[::1]/hook",
    "https://10.0.0.1/hook",
    "https://172.16.0.1/hook",
    "https://192.168.1.1/hook",
    "https://169.254.169.254/latest/meta-data/",
    "https://100.64.0.1/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://2130706433/hook",
    "https://0x7f000001/hook",
    "file:///etc/passwd",
    "gopher://127.0.0.1:70/_GET%20/",
    # names and further spellings
    "https://localhost/hook",
    "https://127.1/hook",
    "https://0177.0.0.1/hook",
    "https://0.0.0.0/hook",
    "https://[::]/hook",
    "https://[fe80::1]/hook",
    "https://224.0.0.1/hook",
    "https://240.0.0.1/hook",
    "https://[fc00::1]/hook",
    "https://[64:ff9b::a00:1]/hook",  # NAT64 of 10.0.0.1
    "https://[2002:a00:1::]/hook",  # 6to4 of 10.0.0.1
    "https://[::127.0.0.1]/hook",  # IPv4-compatible
    "https://0x5db8d70e/hook",  # a public address, but no honest URL spells it so
    f"https://user:secret@{PUBLIC_HOST}/hook",
    f"http://{PUBLIC_HOST}/hook",
    "ftp://example.test/hook",
    "https:///hook",
    "not a url",
]

# Addresses a public name may suddenly resolve to (DNS rebinding) by the time we deliver.
REBOUND_ADDRESSES = [
    "127.0.0.1",
    "::1",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "0.0.0.0",  # noqa: S104 (an address refused, not one bound)
]


class TestAddresses:
    @pytest.mark.parametrize(
        ("address", "reason"),
        [
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("::1", "loopback"),
            ("10.0.0.1", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("fe80::1", "link-local"),
            ("100.64.0.1", "shared address space (CGNAT)"),
            ("100.127.255.255", "shared address space (CGNAT)"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("0.0.0.0", "unspecified"),  # noqa: S104 (refused, not bound)
            ("::", "unspecified"),
            ("240.0.0.1", "private"),
            ("255.255.255.255", "private"),
            ("192.0.2.1", "private"),
            ("fc00::1", "private"),
            ("2001:db8::1", "private"),
            ("::ffff:127.0.0.1", "loopback (as 127.0.0.1)"),
            ("::ffff:10.0.0.1", "private (as 10.0.0.1)"),
            ("64:ff9b::7f00:1", "loopback (as 127.0.0.1)"),
            ("::7f00:1", "loopback (as 127.0.0.1)"),
            ("2002:7f00:1::", "loopback (tunnelled to 127.0.0.1)"),
        ],
    )
    def test_non_public_refused(self, address: str, reason: str) -> None:
        assert address_refusal(ipaddress.ip_address(address)) == reason

    @pytest.mark.parametrize(
        "address", ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"]
    )
    def test_public_allowed(self, address: str) -> None:
        assert address_refusal(ipaddress.ip_address(address)) is None

    def test_dev_allows_loopback_and_nothing_more(self) -> None:
        assert address_refusal(ipaddress.ip_address("127.0.0.1"), allow_loopback=True) is None
        assert address_refusal(ipaddress.ip_address("::1"), allow_loopback=True) is None
        assert address_refusal(ipaddress.ip_address("10.0.0.1"), allow_loopback=True) == "private"

    @pytest.mark.parametrize(
        ("host", "address"),
        [
            ("2130706433", "127.0.0.1"),
            ("0x7f000001", "127.0.0.1"),
            ("0X7F000001", "127.0.0.1"),
            ("0177.0.0.1", "127.0.0.1"),
            ("127.1", "127.0.0.1"),
            ("127.0.1", "127.0.0.1"),
            ("0x7f.1", "127.0.0.1"),
            ("10.0.0.1.", "10.0.0.1"),
            ("93.184.215.14", "93.184.215.14"),
        ],
    )
    def test_every_inet_aton_form_is_read(self, host: str, address: str) -> None:
        assert parse_ipv4_literal(host) == ipaddress.IPv4Address(address)

    @pytest.mark.parametrize(
        "host", ["example.com", "1.2.3.4.5", "256.0.0.1", "08.0.0.1", "1e10", "0x", "1..1", ""]
    )
    def test_names_are_not_addresses(self, host: str) -> None:
        assert parse_ipv4_literal(host) is None


class TestRegistrationCheck:
    @pytest.mark.parametrize("url", REFUSED_URLS)
    async def test_refused(self, url: str, resolver: StubResolver) -> None:
        with pytest.raises(TargetRefused):
            await check_registration(url, policy=PRODUCTION, resolver=resolver)

    async def test_public_name_allowed(self, resolver: StubResolver) -> None:
        url = f"https://{PUBLIC_HOST}/hook?x=1"
        assert await check_registration(url, policy=PRODUCTION, resolver=resolver) == url

    async def test_any_private_address_of_a_name_refuses_it(self, resolver: StubResolver) -> None:
        resolver.point("mixed.example.test", str(PUBLIC_ADDRESS), "10.0.0.1")
        with pytest.raises(TargetRefused, match=r"10\.0\.0\.1"):
            await check_registration(
                "https://mixed.example.test/", policy=PRODUCTION, resolver=resolver
            )

    async def test_dev_mode_allows_local_http(self, resolver: StubResolver) -> None:
        dev = TargetPolicy(allow_http=True, allow_loopback=True)
        for url in ("http://127.0.0.1:8080/hook", "http://localhost:8080/", "http://[::1]/"):
            await check_registration(url, policy=dev, resolver=resolver)
        for url in ("http://10.0.0.1/", "https://169.254.169.254/", "file:///etc/passwd"):
            with pytest.raises(TargetRefused):
                await check_registration(url, policy=dev, resolver=resolver)


class TestRegistrationEndpoint:
    async def test_the_whole_suite_is_refused_and_nothing_stored(
        self, client: httpx.AsyncClient
    ) -> None:
        accepted = []
        for url in REFUSED_URLS:
            response = await client.post(
                "/v1/webhook-endpoints",
                headers=as_customer("alice"),
                json={"url": url, "event_types": ["transfer.completed"]},
            )
            if response.status_code != 400:
                accepted.append((url, response.status_code))
            else:
                assert_problem(response, 400, "webhook-url-not-allowed")
        assert accepted == []
        listed = await client.get("/v1/webhook-endpoints", headers=as_customer("alice"))
        assert listed.json()["items"] == []


async def _store_endpoint(app: FastAPI, url: str, clock: Clock) -> uuid.UUID:
    """An endpoint written straight to the database, as if registration had been fooled."""
    endpoint_id = uuid.uuid4()
    async with app.state.database.sessions() as session, session.begin():
        await repository.insert_endpoint(
            session,
            WebhookEndpointRow(
                id=endpoint_id,
                customer_id="alice",
                url=url,
                description=None,
                event_types=["transfer.completed"],
                enabled=True,
                disabled_reason=None,
                created_at=clock.now,
                updated_at=clock.now,
            ),
        )
        secret_id = uuid.uuid4()
        await repository.insert_secret(
            session,
            secret_id=secret_id,
            endpoint_id=endpoint_id,
            secret_sealed=parse_key_ring(SECRETS_KEYS).seal(
                webhook_signatures.new_secret().encode(), associated_data=secret_id.bytes
            ),
            now=clock.now,
        )
    return endpoint_id


async def _attempts(client: httpx.AsyncClient, endpoint_id: uuid.UUID) -> list[dict[str, Any]]:
    """The first attempt of each of the endpoint's deliveries, newest delivery first."""
    listed = await client.get(
        f"/v1/webhook-endpoints/{endpoint_id}/deliveries", headers=as_customer("alice")
    )
    attempts = []
    for delivery in listed.json()["items"]:
        detail = await client.get(f"/v1/deliveries/{delivery['id']}", headers=as_customer("alice"))
        assert detail.json()["status"] == "pending", "a refused attempt is retried on schedule"
        [attempt] = detail.json()["attempts"]
        attempts.append(attempt)
    return attempts


class TestDeliveryCheck:
    async def test_a_name_rebound_to_a_private_address_is_refused_without_connecting(
        self, make_app: AppFactory, resolver: StubResolver, network: LoopbackNetwork
    ) -> None:
        app = make_app(dispatcher_enabled=False)
        async with app_client(app) as client:
            created = await client.post(
                "/v1/webhook-endpoints",
                headers=as_customer("alice"),
                json={"url": f"https://{PUBLIC_HOST}/hook", "event_types": ["transfer.completed"]},
            )
            assert created.status_code == 201, created.text
            for address in REBOUND_ADDRESSES:  # DNS rebinding: the name now points inside
                resolver.point(PUBLIC_HOST, address)
                assert (
                    await client.post("/v1/events", json=transfer_event(), headers=as_worker())
                ).status_code == 201
                assert await dispatcher_of(app).run_once() == 1
            attempts = await _attempts(client, created.json()["id"])
        assert len(attempts) == len(REBOUND_ADDRESSES)
        assert {attempt["status_code"] for attempt in attempts} == {None}
        errors = [attempt["error"] for attempt in attempts]
        for address in REBOUND_ADDRESSES:
            refusal = f"resolves to {ipaddress.ip_address(address)}, which is not a public address"
            assert any(refusal in error for error in errors), (address, errors)
        assert network.connections == []

    async def test_a_stored_url_is_checked_again_before_connecting(
        self, make_app: AppFactory, network: LoopbackNetwork, clock: Clock
    ) -> None:
        """As if registration had been fooled: every delivery checks for itself."""
        urls = [url for url in REFUSED_URLS if "://" in url and "@" not in url]
        app = make_app(dispatcher_enabled=False)
        async with app_client(app) as client:
            endpoint_ids = [await _store_endpoint(app, url, clock) for url in urls]
            assert (
                await client.post("/v1/events", json=transfer_event(), headers=as_worker())
            ).status_code == 201
            assert await dispatcher_of(app).run_once() == len(urls)
            attempts = [(await _attempts(client, endpoint_id))[0] for endpoint_id in endpoint_ids]
        for url, attempt in zip(urls, attempts, strict=True):
            assert attempt["status_code"] is None, url
            assert attempt["error"], url
        assert network.connections == []

    async def test_redirect_to_loopback_is_not_followed(
        self,
        make_app: AppFactory,
        network: LoopbackNetwork,
        tmp_path: Path,
    ) -> None:
        """Production settings, https: the endpoint answers 307 to a loopback URL."""
        certificate = self_signed_certificate(tmp_path, PUBLIC_HOST)
        async with (
            running_receiver() as inside,
            running_receiver(certificate) as endpoint,
        ):
            endpoint.default = Reply(307, {"location": inside.url("/admin")})
            network.route(PUBLIC_ADDRESS, 443, to_local_port=endpoint.port)
            app = make_app(dispatcher_enabled=False, ssl_context=certificate.client_context())
            async with app_client(app) as client:
                created = await client.post(
                    "/v1/webhook-endpoints",
                    headers=as_customer("alice"),
                    json={
                        "url": f"https://{PUBLIC_HOST}/hook",
                        "event_types": ["transfer.completed"],
                    },
                )
                assert created.status_code == 201, created.text
                assert (
                    await client.post("/v1/events", json=transfer_event(), headers=as_worker())
                ).status_code == 201
                assert await dispatcher_of(app).run_once() == 1
                [attempt] = await _attempts(client, created.json()["id"])
        assert attempt["status_code"] == 307
        assert attempt["outcome"] == "failed"
        assert len(endpoint.requests) == 1, "the endpoint itself was reached over TLS"
        assert inside.requests == []
        assert network.connections == [(str(PUBLIC_ADDRESS), 443)]

    async def test_even_a_client_following_redirects_is_stopped(
        self, resolver: StubResolver, network: LoopbackNetwork, tmp_path: Path
    ) -> None:
        """Defence in depth: every hop goes through the guard, should redirects be followed."""
        certificate = self_signed_certificate(tmp_path, PUBLIC_HOST)
        async with running_receiver() as inside, running_receiver(certificate) as endpoint:
            network.route(PUBLIC_ADDRESS, 443, to_local_port=endpoint.port)
            for location in (
                inside.url("/admin"),
                f"https://127.0.0.1:{inside.port}/admin",
                "https://169.254.169.254/latest/meta-data/",
            ):
                endpoint.queue(Reply(302, {"location": location}))
                transport = GuardedTransport(
                    policy=PRODUCTION,
                    resolver=resolver,
                    network_backend=network,
                    ssl_context=certificate.client_context(),
                )
                async with httpx.AsyncClient(
                    transport=transport, follow_redirects=True, timeout=5
                ) as client:
                    with pytest.raises(TargetRefused):
                        await client.post(f"https://{PUBLIC_HOST}/hook", content=b"{}")
        assert inside.requests == []


class TestTheTestNetwork:
    async def test_it_refuses_everything_but_loopback_even_unguarded(self) -> None:
        """The net under the guard: a client with no guard at all still cannot leave."""
        network = LoopbackNetwork()
        transport = httpx.AsyncHTTPTransport()
        transport._pool = httpcore.AsyncConnectionPool(network_backend=network)
        async with httpx.AsyncClient(transport=transport, timeout=2) as client:
            for url in ("http://10.0.0.1/", "http://169.254.169.254/", "http://93.184.215.14/"):
                with pytest.raises(httpx.ConnectError):
                    await client.get(url)
        assert network.violations == [
            ("10.0.0.1", 80),
            ("169.254.169.254", 80),
            ("93.184.215.14", 80),
        ]
