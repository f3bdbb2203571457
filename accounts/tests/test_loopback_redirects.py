"""Native apps' loopback redirects (RFC 8252 7.3, 8.3): a public client registered with a
loopback IP literal and no port accepts the same URI on any port, and nothing else relaxes."""

import pytest

from accounts.identity.authorize import SIGNS_IN_CUSTOMERS, ClientRefused, PublicClient
from accounts.identity.authorize import check_redirect_uri as checked
from contracts.auth import CUSTOMER_SCOPES

IPV4 = "http://127.0.0.1/callback"
IPV6 = "http://[::1]/callback"
LOCALHOST = "http://localhost/callback"
WITH_PORT = "http://127.0.0.1:8005/auth/callback"


def client(*redirect_uris: str) -> PublicClient:
    return PublicClient(
        client_id="native-app",
        redirect_uris=redirect_uris,
        scopes=CUSTOMER_SCOPES,
        signs_in=SIGNS_IN_CUSTOMERS,
    )


NATIVE = client(IPV4, IPV6, LOCALHOST, WITH_PORT)


@pytest.mark.parametrize(
    "requested",
    [
        "http://127.0.0.1:51234/callback",
        "http://127.0.0.1:1/callback",
        "http://127.0.0.1:65535/callback",
        "http://[::1]:51234/callback",
        IPV4,
        IPV6,
        LOCALHOST,
        WITH_PORT,
    ],
)
def test_a_port_less_loopback_ip_accepts_any_port(requested: str) -> None:
    assert checked(NATIVE, requested) is NATIVE


@pytest.mark.parametrize(
    "requested",
    [
        "http://127.0.0.1:51234/other",
        "http://127.0.0.1:51234/callback/",
        "http://127.0.0.1:51234/Callback",
        "http://127.0.0.1:51234/%63allback",
        "http://127.0.0.1:51234/callback?next=/",
        "http://127.0.0.1:51234/callback#fragment",
        "http://127.0.0.1:51234/callback#",
        "https://127.0.0.1:51234/callback",
        "HTTP://127.0.0.1:51234/callback",
        "http://localhost:51234/callback",
        "http://127.0.0.2:51234/callback",
        "http://127.1:51234/callback",
        "http://[::1]:51234/other",
        "http://[0:0:0:0:0:0:0:1]:51234/callback",
        "http://user@127.0.0.1:51234/callback",
        "http://127.0.0.1:51234@evil.example/callback",
        "http://127.0.0.1:51234:80/callback",
        "http://127.0.0.1:/callback",
        "http://127.0.0.1:0/callback",
        "http://127.0.0.1:65536/callback",
        "http://127.0.0.1:051234/callback",
        "http://127.0.0.1:+5/callback",
        "http://127.0.0.1:\u0665/callback",  # ARABIC-INDIC DIGIT FIVE: isdigit() is true
        "http://127.0.0.1:8006/auth/callback",
        "http://127.0.0.1/auth/callback",
    ],
    ids=[
        "other-path",
        "trailing-slash",
        "path-case",
        "path-encoded",
        "query-added",
        "fragment",
        "empty-fragment",
        "https",
        "scheme-case",
        "localhost",
        "other-loopback-address",
        "short-address",
        "ipv6-other-path",
        "ipv6-spelled-out",
        "userinfo",
        "port-then-userinfo",
        "two-ports",
        "empty-port",
        "port-zero",
        "port-too-high",
        "port-leading-zero",
        "port-signed",
        "port-non-ascii-digit",
        "registered-port-is-exact",
        "registered-port-left-out",
    ],
)
def test_nothing_else_relaxes(requested: str) -> None:
    with pytest.raises(ClientRefused, match="not registered"):
        checked(NATIVE, requested)


def test_each_address_relaxes_only_itself() -> None:
    with pytest.raises(ClientRefused):
        checked(client(IPV4), "http://[::1]:51234/callback")
    with pytest.raises(ClientRefused):
        checked(client(IPV6), "http://127.0.0.1:51234/callback")


def test_a_registered_query_must_be_there_exactly() -> None:
    registered = client("http://127.0.0.1/callback?app=cli")
    assert checked(registered, "http://127.0.0.1:5000/callback?app=cli") is registered
    with pytest.raises(ClientRefused):
        checked(registered, "http://127.0.0.1:5000/callback?app=other")
    with pytest.raises(ClientRefused):
        checked(registered, "http://127.0.0.1:5000/callback")


def test_no_client() -> None:
    with pytest.raises(ClientRefused, match="no public client"):
        checked(None, "http://127.0.0.1:51234/callback")
